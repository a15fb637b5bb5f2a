package safefs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Measure sums what the tree at root allocates: the bytes of its regular
// files (sparse holes excluded) plus a block per other entry, and the number
// of entries below the root. It stays on the root's mount (mounts are not
// copied either) and out of the directories in prune (relative paths; each
// counts as one entry), and skips what it can't read below the root: it is
// the estimate a copy checks the destination's room against. Its errors
// leave root for the caller to name.
func Measure(root string, prune []string) (bytes, files int64, err error) {
	d, err := OpenRoot(root)
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return 0, 0, fmt.Errorf("opening it: %w", pe.Err)
	} else if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	fd := int(d.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, fmt.Errorf("reading it: %w", err)
	}
	m := &measure{mounts: NewMountRoots(uint64(st.Dev)), prune: set(prune)}
	if err := m.dir(fd, "."); err != nil {
		return 0, 0, fmt.Errorf("listing it: %w", err)
	}
	return m.bytes, m.files, nil
}

type measure struct {
	mounts       *MountRoots
	prune        map[string]bool
	bytes, files int64
}

// dir adds the entries of the directory fd (the tree's rel).
func (m *measure) dir(fd int, rel string) error {
	names, err := listAt(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		m.files++
		m.bytes += st.Blocks * 512
		p := JoinRel(rel, n)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || m.prune[p] || m.mounts.At(fd, n, &st) {
			continue
		}
		sub, err := OpenDir(fd, n, &st)
		if err != nil {
			continue
		}
		m.dir(int(sub.Fd()), p) // unreadable below the root: skipped
		sub.Close()
	}
	return nil
}
