package statemigrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// renameNoReplace renames oldpath to newpath, failing with EEXIST when
// newpath exists (safefs.RenameNoReplace: callers hold the lock).
func renameNoReplace(oldpath, newpath string) error {
	return safefs.RenameNoReplace(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath)
}

// syncDirs fsyncs each distinct directory.
func syncDirs(dirs ...string) error {
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			continue
		}
		seen[d] = true
		if err := safefs.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// writeFileSync creates path exclusively (never through a symlink), writes
// data and fsyncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readSmall reads a marker file without following a symlink; "" when absent.
func readSmall(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return "", nil
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// lock is an exclusive flock on a lock file.
type lock struct{ f *os.File }

// lockPath names the lock file for target: beside it, or in lockDir.
func lockPath(target, lockDir string) string {
	if lockDir == "" {
		return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".moltctl-lock")
	}
	name := strings.ReplaceAll(strings.Trim(target, "/"), "/", "_")
	return filepath.Join(lockDir, "moltctl-statemigrate-"+name+".lock")
}

// acquire takes the lock, polling so ctx can cancel the wait. The file is
// opened read-only (flock needs no write access), so a lock file left by
// another user still works; it is never removed, since removing a lock file
// races with a process about to lock it.
func acquire(ctx context.Context, path string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %q: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %q: %w", path, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func (l *lock) release() { l.f.Close() }

// sameFile reports whether a and b, followed, are the same inode.
func sameFile(a, b string) bool {
	ai, err := os.Stat(a)
	if err != nil {
		return false
	}
	bi, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(ai, bi)
}
