package remount

import (
	"context"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/statefile"
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

// lockCommits takes the process's commit mutex and the host's commit flock
// (statefile.LockWait), waiting for both (until ctx ends), and returns the
// function that releases them.
func lockCommits(ctx context.Context) (func(), error) {
	commitMu.Lock()
	unlock, err := statefile.LockWait(ctx, "commit.lock")
	if err != nil {
		commitMu.Unlock()
		return nil, err
	}
	return func() { unlock(); commitMu.Unlock() }, nil
}
