package remount_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// holdEngineLock starts a child process that takes the project's locks with
// its own state directory and holds them until release is called.
func (f *fixture) holdEngineLock(tb testing.TB) (cmd *exec.Cmd, release func()) {
	tb.Helper()
	cmd = exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "REMOUNT_TEST_CHILD=hold-engine-lock", "REMOUNT_TEST_PROJECT="+f.name,
		"REMOUNT_TEST_FILE="+f.copts.Files[0], "MOLTCTL_STATE_DIR="+tb.TempDir())
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		tb.Fatalf("lock holder: got %q, %v", buf, err)
	}
	return cmd, func() { stdin.Close(); cmd.Wait() }
}

// TestEngineLock: the project's lock is seen by every run against the engine
// whatever its state directory; released at the end; a lock whose process
// on this host is gone is stale and taken over; one of another host is not.
func TestEngineLock(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	name := remount.LockContainer(f.name)
	t.Cleanup(func() { dockertest.Run("docker", "rm", "-f", name) })
	old := f.containerID(t)
	cmd, release := f.holdEngineLock(t)
	_, err := remount.Run(ctx, f.eng, f.options(t))
	release()
	if !errors.Is(err, remount.ErrLocked) || !strings.Contains(err.Error(), name) ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("got %v, want ErrLocked naming %s and pid %d", err, name, cmd.Process.Pid)
	}
	if got := f.containerID(t); got != old {
		t.Errorf("got container %s, want %s untouched", got, old)
	}
	if _, err := dockertest.Run("docker", "inspect", name); err == nil {
		t.Errorf("got the lock container %s left after its holder released it", name)
	}

	// Stale: the holder was killed (kill -9 leaves the container).
	cmd, _ = f.holdEngineLock(t)
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := dockertest.Run("docker", "inspect", name); err != nil {
		t.Fatalf("got no lock container after the holder was killed: %v", err)
	}
	unlock, err := remount.LockEngine(ctx, f.eng, f.name)
	if err != nil {
		t.Fatalf("got %v, want the stale lock taken over", err)
	}
	unlock()
	if _, err := dockertest.Run("docker", "inspect", name); err == nil {
		t.Errorf("got the lock container %s left after unlock", name)
	}

	// Another host's lock is never stale.
	dockertest.Docker(t, "create", "--name", name, "--label", remount.LabelLockHost+"=elsewhere",
		"--label", remount.LabelLockPID+"=1", "--label", remount.LabelLockOwner+"=admin@elsewhere", "moltctl-lock:1", "/x")
	if _, err := remount.LockEngine(ctx, f.eng, f.name); !errors.Is(err, remount.ErrLocked) || !strings.Contains(err.Error(), "admin@elsewhere") {
		t.Errorf("got %v, want ErrLocked naming admin@elsewhere", err)
	}
}
