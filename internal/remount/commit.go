package remount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"
)

// Commits are serialised. On the containerd image store (Docker 29's default) two
// commits at once from the same base can fail with "snapshot already exists": both
// prepare the same snapshot key. moltctl therefore commits one container at a time:
// a mutex within the process, an flock on <StateDir>/commit.lock between moltctl
// processes, and, for commits of other clients (docker commit by hand, a second
// state dir), a few retries of a commit the engine refused as already existing.

var commitMu sync.Mutex

// commitRetries and commitBackoff bound the retries of a colliding commit: at
// most about 4 s of waiting in all.
const commitRetries = 4

var commitBackoff = 250 * time.Millisecond

// commit commits container id as ContainerCommit does, one commit at a time on
// this host (see above). A commit still refused as already existing after the
// retries returns the engine's error.
func commit(ctx context.Context, eng Engine, id string, opts client.ContainerCommitOptions) (client.ContainerCommitResult, error) {
	unlock, err := lockCommits(ctx)
	if err != nil {
		return client.ContainerCommitResult{}, err
	}
	defer unlock()
	for try := 0; ; try++ {
		res, err := eng.ContainerCommit(ctx, id, opts)
		if err == nil || !collided(err) || try == commitRetries {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(commitBackoff << try):
		}
	}
}

// collided reports whether a commit failed because another one prepared the same
// snapshot at the same time.
func collided(err error) bool {
	return cerrdefs.IsAlreadyExists(err) || cerrdefs.IsConflict(err)
}

// lockCommits takes the process's commit mutex and the host's commit flock,
// waiting for both (until ctx ends), and returns the function that releases them.
func lockCommits(ctx context.Context) (func(), error) {
	commitMu.Lock()
	dir := StateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		commitMu.Unlock()
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "commit.lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		commitMu.Unlock()
		return nil, fmt.Errorf("opening the commit lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			commitMu.Unlock()
			return nil, fmt.Errorf("taking the commit lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			commitMu.Unlock()
			return nil, fmt.Errorf("waiting for another moltctl's commit: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
		commitMu.Unlock()
	}, nil
}
