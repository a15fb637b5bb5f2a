package helperfs

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

const stateFile = "state.gob"

// state is what persists in the volume's StateDir between passes (and across
// a kill -9 of moltctl): the source manifest of the last completed pass and
// every path a delta pass copied since the full pass.
type state struct {
	Version  int
	Manifest map[string]*safefs.Entry
	Touched  []string
}

// openState creates the state directory when missing and reads the state.
// A missing state file gives an empty state.
func openState(dstRoot int) (*state, error) {
	if err := unix.Mkdirat(dstRoot, StateDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("creating the copy state in the volume: %w", err)
	}
	return readState(dstRoot)
}

func readState(dstRoot int) (*state, error) {
	d, err := safefs.OpenDir(dstRoot, StateDir, nil)
	if safefs.IsNotExist(err) {
		return &state{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening the copy state in the volume: %w", err)
	}
	defer d.Close()
	fd, err := unix.Openat(int(d.Fd()), stateFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return &state{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the copy state in the volume: %w", err)
	}
	f := os.NewFile(uintptr(fd), stateFile)
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading the copy state in the volume: %w", err)
	}
	var st state
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&st); err != nil {
		return nil, fmt.Errorf("reading the copy state in the volume: %w", err)
	}
	return &st, nil
}

// saveState writes the state atomically (temporary file, fsync, rename) and
// puts back the root directory's mtime.
func saveState(dstRoot int, st *state, rootAtime, rootMtime int64) error {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(st); err != nil {
		return fmt.Errorf("encoding the copy state: %w", err)
	}
	d, err := safefs.OpenDir(dstRoot, StateDir, nil)
	if err != nil {
		return fmt.Errorf("writing the copy state in the volume: %w", err)
	}
	defer d.Close()
	if err := safefs.WriteFileAt(int(d.Fd()), stateFile, b.Bytes(), safefs.WriteOptions{Perm: 0o600}); err != nil {
		return fmt.Errorf("writing the copy state in the volume: %w", noSpace(err))
	}
	return safefs.SetFdTimes(dstRoot, rootAtime, rootMtime)
}

// dropState deletes the state file (durably), keeping the directory.
func dropState(dstRoot int) error {
	d, err := safefs.OpenDir(dstRoot, StateDir, nil)
	if err != nil {
		return fmt.Errorf("resetting the copy state in the volume: %w", err)
	}
	defer d.Close()
	if err := unix.Unlinkat(int(d.Fd()), stateFile, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("resetting the copy state in the volume: %w", err)
	}
	if err := safefs.SyncFd(int(d.Fd())); err != nil {
		return fmt.Errorf("resetting the copy state in the volume: %w", err)
	}
	return nil
}

// removeState deletes the state directory, keeping the root's mtime.
func removeState(dstRoot int) error {
	var st unix.Stat_t
	if err := unix.Fstat(dstRoot, &st); err != nil {
		return fmt.Errorf("reading the volume root: %w", err)
	}
	var sst unix.Stat_t
	if err := unix.Fstatat(dstRoot, StateDir, &sst, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err := safefs.RemoveAt(dstRoot, StateDir); err != nil {
		return fmt.Errorf("removing the copy state from the volume: %w", err)
	}
	return safefs.SetFdTimes(dstRoot, st.Atim.Nano(), st.Mtim.Nano())
}

// noSpace wraps ErrNoSpace around an ENOSPC or EDQUOT.
func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
