package statefile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked: another moltctl run holds the project's lock.
var ErrLocked = errors.New("another moltctl run holds the project's lock")

// Dir returns the directory moltctl keeps its state in: $MOLTCTL_STATE_DIR,
// else $XDG_STATE_HOME/moltctl, else ~/.local/state/moltctl.
func Dir() string {
	if d := os.Getenv("MOLTCTL_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "moltctl")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".local", "state", "moltctl")
}

// ProjectDir returns the directory of project's journals and lock: Dir()/project.
func ProjectDir(project string) string { return filepath.Join(Dir(), project) }

// Lock takes the project's lock (an flock on ProjectDir(project)/lock)
// without waiting, and returns the function that releases it. It returns an
// error wrapping ErrLocked when another process holds it.
func Lock(project string) (unlock func(), err error) {
	f, err := openLock(ProjectDir(project), "lock")
	if err != nil {
		return nil, fmt.Errorf("locking project %s: %w", project, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("project %s: %w", project, ErrLocked)
		}
		return nil, fmt.Errorf("locking project %s: %w", project, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// LockWait takes the host-wide lock name (an flock on Dir()/name), waiting
// for it until ctx ends, and returns the function that releases it.
func LockWait(ctx context.Context, name string) (unlock func(), err error) {
	f, err := openLock(Dir(), name)
	if err != nil {
		return nil, fmt.Errorf("taking the lock %s: %w", name, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("taking the lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another moltctl run to release the lock %s: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// openLock opens (creating it and dir, 0700, when missing) the lock file name in dir.
func openLock(dir, name string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	return os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}
