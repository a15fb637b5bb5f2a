package remount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// commitRecorder is an Engine whose ContainerCommit takes a while, records how
// many run at once, and fails the first collide calls as the containerd image
// store does when two commits prepare the same snapshot.
type commitRecorder struct {
	Engine
	mu            sync.Mutex
	running, most int
	calls         atomic.Int32
	collide       int32
}

func (e *commitRecorder) ContainerCommit(ctx context.Context, id string, _ client.ContainerCommitOptions) (client.ContainerCommitResult, error) {
	n := e.calls.Add(1)
	e.mu.Lock()
	e.running++
	e.most = max(e.most, e.running)
	e.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	e.mu.Lock()
	e.running--
	e.mu.Unlock()
	if n <= e.collide {
		return client.ContainerCommitResult{}, fmt.Errorf("snapshot sha256:x: %w", cerrdefs.ErrAlreadyExists)
	}
	return client.ContainerCommitResult{ID: id}, nil
}

func TestCommitSerialised(t *testing.T) {
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	e := &commitRecorder{}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if _, err := commit(context.Background(), e, fmt.Sprint(i), client.ContainerCommitOptions{}); err != nil {
				t.Errorf("commit %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if e.most != 1 {
		t.Errorf("commits at once: got %d, want 1", e.most)
	}
}

func TestCommitRetriesACollision(t *testing.T) {
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	defer func(b time.Duration) { commitBackoff = b }(commitBackoff)
	commitBackoff = time.Millisecond
	for _, tc := range []struct {
		collide   int32
		wantCalls int32
		wantErr   bool
	}{
		{0, 1, false},
		{2, 3, false},
		{commitRetries + 1, commitRetries + 1, true},
	} {
		t.Run(fmt.Sprint(tc.collide), func(t *testing.T) {
			e := &commitRecorder{collide: tc.collide}
			_, err := commit(context.Background(), e, "c", client.ContainerCommitOptions{})
			if (err != nil) != tc.wantErr || e.calls.Load() != tc.wantCalls {
				t.Errorf("got %d calls and %v, want %d calls, error %v", e.calls.Load(), err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}

// TestCommitLockHeldElsewhere holds the commit flock through a second open file
// (flock locks belong to the open file, as another process's would): the commit
// waits for it and gives up with its context.
func TestCommitLockHeldElsewhere(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MOLTCTL_STATE_DIR", dir)
	other, err := os.OpenFile(filepath.Join(dir, "commit.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := unix.Flock(int(other.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	e := &commitRecorder{}
	if _, err := commit(ctx, e, "c", client.ContainerCommitOptions{}); !errors.Is(err, context.DeadlineExceeded) || e.calls.Load() != 0 {
		t.Errorf("commit while another holds the lock: got %v after %d calls, want the deadline and no call", err, e.calls.Load())
	}
	unix.Flock(int(other.Fd()), unix.LOCK_UN)
	if _, err := commit(context.Background(), e, "c", client.ContainerCommitOptions{}); err != nil || e.calls.Load() != 1 {
		t.Errorf("commit after the lock was released: got %v after %d calls, want one call", err, e.calls.Load())
	}
}

// TestCommitConcurrentOnTheEngine commits containers of one base image from
// several goroutines at once on the real engine (on the containerd image store
// such commits can collide): every commit succeeds and holds its own
// container's layer, two empty layers included.
func TestCommitConcurrentOnTheEngine(t *testing.T) {
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	eng := dockertest.Engine(t)
	dockertest.Busybox(t)
	name := dockertest.Name("commits")
	writes := []string{"one", "two", "three", "", ""}
	ids := make([]string, len(writes))
	for i, w := range writes {
		cmd := "sleep 300"
		if w != "" {
			cmd = "echo " + w + " > /f; sleep 300"
		}
		ids[i] = dockertest.Docker(t, "run", "-d", "--name", fmt.Sprintf("%s-%d", name, i), dockertest.BusyboxImage, "sh", "-c", cmd)
		t.Cleanup(func() { dockertest.Run("docker", "rm", "-f", ids[i]) })
	}
	for i, w := range writes {
		for w != "" && dockertest.Docker(t, "exec", ids[i], "sh", "-c", "cat /f 2>/dev/null || true") != w {
			time.Sleep(50 * time.Millisecond)
		}
	}
	images := make([]string, len(writes))
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i := range writes {
		wg.Go(func() {
			res, err := commit(context.Background(), eng, ids[i], client.ContainerCommitOptions{Reference: fmt.Sprintf("%s:%d", name, i)})
			images[i], errs[i] = res.ID, err
		})
	}
	wg.Wait()
	for i := range images {
		if images[i] != "" {
			t.Cleanup(func() { dockertest.Run("docker", "rmi", "-f", images[i]) })
		}
	}
	for i, w := range writes {
		if errs[i] != nil {
			t.Errorf("commit %d: %v", i, errs[i])
			continue
		}
		got, _ := dockertest.Run("docker", "run", "--rm", images[i], "sh", "-c", "cat /f 2>/dev/null || echo none")
		if want := w; want == "" && got != "none" || want != "" && got != want {
			t.Errorf("image of commit %d: got /f %q, want %q", i, got, w)
		}
	}
}
