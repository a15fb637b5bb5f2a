package migrate

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/statefile"
)

// crash runs `moltctl migrate` killed (SIGKILL) right after journal recorded step.
func (l *live) crash(tb testing.TB, journal, step string) {
	tb.Helper()
	cmd := exec.Command(staticMoltctl(tb), "-f", l.file, "migrate", "--yes", "--quiet", "--wait-timeout", "1s")
	cmd.Env = append(os.Environ(), crashAfter(journal, step))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		tb.Fatalf("got %v (%s), want the child killed after %s", err, out, step)
	}
}

// checkUnchanged fails unless a refused migration left everything as it was:
// the compose file, no journal, no volume, the same container running.
func (l *live) checkUnchanged(tb testing.TB, before []byte, id string) {
	tb.Helper()
	if got, _ := os.ReadFile(l.file); string(got) != string(before) {
		tb.Errorf("got the compose file changed")
	}
	if _, err := os.Stat(JournalPath(l.name)); err == nil {
		tb.Errorf("got a journal written by a refused migration")
	}
	if _, err := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); err == nil {
		tb.Errorf("got volume %s_state created by a refused migration", l.name)
	}
	if got := l.containerID(tb); got != id {
		tb.Errorf("got container %s, want %s", got, id)
	}
}

func (l *live) status(tb testing.TB) string {
	tb.Helper()
	id := strings.TrimSpace(l.compose(tb, "ps", "-a", "-q", "app"))
	return strings.TrimSpace(dockertest.Docker(tb, "inspect", "-f", "{{.State.Status}}", id))
}

// TestRunRefusesPaused: a paused service is refused before any change
// (migrating it reported success and left it exited).
func TestRunRefusesPaused(t *testing.T) {
	l := newLive(t)
	before, _ := os.ReadFile(l.file)
	id := l.containerID(t)
	dockertest.Docker(t, "pause", id)
	t.Cleanup(func() { dockertest.Run("docker", "unpause", id) })
	_, err := Run(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if !errors.Is(err, remount.ErrUnsupported) || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("got %v, want remount.ErrUnsupported saying paused", err)
	}
	l.checkUnchanged(t, before, id)
	if got := l.status(t); got != "paused" {
		t.Errorf("got the service %s, want it left paused", got)
	}
}

// TestRunRefusesStdin: -f - is refused before anything happens.
func TestRunRefusesStdin(t *testing.T) {
	opts := RunOptions{Project: selecting("-")}
	for name, fn := range map[string]func(context.Context, RunEngine, RunOptions) (*Report, error){
		"run": Run, "resume": Resume, "rollback": Rollback,
	} {
		if _, err := fn(context.Background(), nil, opts); !errors.Is(err, compose.ErrStdin) {
			t.Errorf("%s: got %v, want compose.ErrStdin", name, err)
		}
	}
}

// TestRunSymlinkedCompose: a compose file that is a symlink is written through
// to its target and stays a link; the backup beside the link holds the
// original, also after a rollback; the journal of the done migration holds
// no compose content.
func TestRunSymlinkedCompose(t *testing.T) {
	l := newLive(t)
	before, _ := os.ReadFile(l.file)
	real := filepath.Join(l.dir, "real.yaml")
	os.WriteFile(real, before, 0o644)
	os.Remove(l.file)
	if err := os.Symlink("real.yaml", l.file); err != nil {
		t.Fatal(err)
	}
	eng := dockertest.Engine(t)
	if _, err := Run(context.Background(), eng, fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(l.file); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("got %v, want %s still a symlink", err, l.file)
	}
	if got, _ := os.ReadFile(real); string(got) == string(before) {
		t.Errorf("got the target unchanged, want the rewrite")
	}
	l.checkRunning(t, "volume")
	// The journal of a done migration keeps no compose content (it may hold
	// secrets); the rollback reads it from the backup.
	if j, _ := os.ReadFile(JournalPath(l.name)); len(j) == 0 || strings.Contains(string(j), base64.StdEncoding.EncodeToString(before)) {
		t.Errorf("got journal %q, want it without the compose content", j)
	}
	if _, err := Rollback(context.Background(), eng, fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(real); string(got) != string(before) {
		t.Errorf("got the target after rollback\n%s\nwant\n%s", got, before)
	}
	if got, _ := os.ReadFile(l.file + compose.BackupSuffix); string(got) != string(before) {
		t.Errorf("got the backup after rollback\n%s\nwant the pre-migrate content", got)
	}
	l.checkRunning(t, "bind")
}

// TestRunReadOnlyComposeDir: a compose directory no file can be created in is
// refused before the stop (it was found at the rewrite, services stopped).
func TestRunReadOnlyComposeDir(t *testing.T) {
	l := newLive(t)
	before, _ := os.ReadFile(l.file)
	id := l.containerID(t)
	if out, err := exec.Command("chattr", "+i", l.dir).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", l.dir).Run() })
	_, err := Run(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if !errors.Is(err, compose.ErrNotReplaceable) {
		t.Fatalf("got %v, want compose.ErrNotReplaceable", err)
	}
	l.checkUnchanged(t, before, id)
	if got := l.status(t); got != "running" {
		t.Errorf("got the service %s, want it running", got)
	}
}

// TestRunSourceGone: the bind directory moved away after the full pass: the
// delta fails, and the volume (the only full copy) is kept, the service stays
// stopped (not started on an empty directory), the error names the volume;
// with the directory back, --resume finishes.
func TestRunSourceGone(t *testing.T) {
	l := newLive(t)
	eng := dockertest.Engine(t)
	l.opts.Progress = func(e progress.Event) {
		if e.Step == progress.Stop {
			os.Rename(l.state, l.state+".moved")
		}
	}
	_, err := Run(context.Background(), eng, fresh(t, l.opts))
	if !errors.Is(err, ErrOnlyCopy) || errors.Is(err, ErrAborted) || !strings.Contains(err.Error(), l.name+"_state") {
		t.Fatalf("got %v, want ErrOnlyCopy naming volume %s_state", err, l.name)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("got a multi-line error %q", err)
	}
	if got := strings.TrimSpace(dockertest.Docker(t, "run", "--rm", "-v", l.name+"_state:/v", dockertest.Busybox(t), "cat", "/v/a.txt")); got != "alpha" {
		t.Errorf("got %q in the volume, want the full copy kept", got)
	}
	if got := l.status(t); got != "exited" {
		t.Errorf("got the service %s, want it kept stopped", got)
	}
	if _, err := os.Stat(l.state); err == nil {
		t.Errorf("got %s created, want nothing on the source path", l.state)
	}
	os.Rename(l.state+".moved", l.state)
	l.opts.Progress = nil
	if _, err := Resume(context.Background(), eng, fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	l.checkRunning(t, "volume")
}

// TestRollbackCopyBackSourceGone: killed after the rewrite, before any
// service ran on the volumes, with the bind directory gone since: a rollback
// with CopyBack refuses it (the copy back fills only the directories of
// volumes a service wrote to), and the volume, the only full copy, stays.
func TestRollbackCopyBackSourceGone(t *testing.T) {
	l := newLive(t)
	eng := dockertest.Engine(t)
	l.crash(t, "migrate", StepApplied)
	os.Rename(l.state, l.state+".moved")
	opts := l.opts
	opts.CopyBack = true
	if _, err := Rollback(context.Background(), eng, fresh(t, opts)); !errors.Is(err, ErrOnlyCopy) {
		t.Errorf("rollback with copy back onto a directory that is gone: got %v, want ErrOnlyCopy", err)
	}
	if got := strings.TrimSpace(dockertest.Docker(t, "run", "--rm", "-v", l.name+"_state:/v", dockertest.Busybox(t), "cat", "/v/a.txt")); got != "alpha" {
		t.Errorf("got %q in the volume, want the full copy kept", got)
	}
	os.RemoveAll(l.state) // what an old rollback's bind made, if any
	os.Rename(l.state+".moved", l.state)
	if _, err := Rollback(context.Background(), eng, fresh(t, opts)); err != nil {
		t.Fatal(err)
	}
	l.checkRunning(t, "bind")
}

// TestRunEngineRestartBeforeStop: a private engine crashes (the daemon and
// its containers killed) right after the full pass, with moltctl: after its
// restart resume and rollback both leave the service running, as it was
// before the migration.
func TestRunEngineRestartBeforeStop(t *testing.T) {
	for _, mode := range []string{"resume", "rollback"} {
		t.Run(mode, func(t *testing.T) {
			pe := dockertest.NewPrivateEngine(t)
			l := newLive(t)
			l.crash(t, "migrate", StepCopied)
			pe.Crash(t)
			pe.Start(t)
			eng := dockertest.Engine(t)
			if got := l.status(t); got != "exited" {
				t.Fatalf("got the service %s after the engine's crash, want exited", got)
			}
			if mode == "resume" {
				if _, err := Resume(context.Background(), eng, fresh(t, l.opts)); err != nil {
					t.Fatal(err)
				}
				l.checkRunning(t, "volume")
				return
			}
			if _, err := Rollback(context.Background(), eng, fresh(t, l.opts)); err != nil {
				t.Fatal(err)
			}
			l.checkRunning(t, "bind")
		})
	}
}

// TestResumeEngineRestartAfterStart: a private engine crashes (the daemon and
// its containers killed) after the service was started on its volume, with
// moltctl (after the remount's step started): --resume starts it and checks
// it (every --resume said "the new container exited" without starting it).
func TestResumeEngineRestartAfterStart(t *testing.T) {
	pe := dockertest.NewPrivateEngine(t)
	l := newLive(t)
	l.crash(t, "remount", "started")
	pe.Crash(t)
	pe.Start(t)
	if got := l.status(t); got != "exited" {
		t.Fatalf("got the service %s after the engine's crash, want exited", got)
	}
	if _, err := Resume(context.Background(), dockertest.Engine(t), fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	l.checkRunning(t, "volume")
}

// TestRunStateDirFull: a state directory without room for the run's journals
// is refused before anything changes (it filled up after the stop and left
// the services stopped).
func TestRunStateDirFull(t *testing.T) {
	l := newLive(t)
	before, _ := os.ReadFile(l.file)
	id := l.containerID(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	t.Setenv("MOLTCTL_STATE_DIR", dir)
	_, err := Run(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if !errors.Is(err, statefile.ErrNoRoom) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("got %v, want statefile.ErrNoRoom naming %s", err, dir)
	}
	l.checkUnchanged(t, before, id)
}

// TestRollbackUnusedVolume: a migration interrupted inside the remount before
// the service ran on its volume (killed after the remount's step created):
// the rollback removes the volume without a warning, and migrating again works.
func TestRollbackUnusedVolume(t *testing.T) {
	l := newLive(t)
	eng := dockertest.Engine(t)
	l.crash(t, "remount", "created")
	rep, err := Rollback(context.Background(), eng, fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("got warnings %q, want none: no service ran on the volume", rep.Warnings)
	}
	if _, err := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); err == nil {
		t.Errorf("got volume %s_state left by the rollback, want it removed", l.name)
	}
	l.checkRunning(t, "bind")
	if _, err := Run(context.Background(), eng, fresh(t, l.opts)); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	l.checkRunning(t, "volume")
}

// TestRollbackSourceGone: a rollback after the migration when a bind directory
// is gone (removed once its data was in the volume) is refused with nothing
// changed: the service would run on an empty directory.
func TestRollbackSourceGone(t *testing.T) {
	l := newLive(t)
	eng := dockertest.Engine(t)
	if _, err := Run(context.Background(), eng, fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(l.file)
	os.Rename(l.state, l.state+".moved")
	_, err := Rollback(context.Background(), eng, fresh(t, l.opts))
	if !errors.Is(err, ErrOnlyCopy) || !strings.Contains(err.Error(), l.name+"_state") {
		t.Fatalf("got %v, want ErrOnlyCopy naming volume %s_state", err, l.name)
	}
	if got, _ := os.ReadFile(l.file); string(got) != string(after) {
		t.Errorf("got the compose file changed by the refused rollback")
	}
	l.checkRunning(t, "volume")
	if _, err := os.Stat(l.state); err == nil {
		t.Errorf("got %s created, want nothing at the source path", l.state)
	}
}

// TestRunStateDirFillsAfterStop: the state directory fills up after the stop
// (past the check before it): the error says the services may be stopped and
// names the directory.
func TestRunStateDirFillsAfterStop(t *testing.T) {
	l := newLive(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	t.Setenv("MOLTCTL_STATE_DIR", dir)
	l.opts.Progress = func(e progress.Event) {
		if e.Step == progress.Stop {
			f, _ := os.Create(filepath.Join(dir, "filler"))
			f.Write(make([]byte, 8<<20)) // ENOSPC at the tmpfs' size
			f.Close()
		}
	}
	_, err := Run(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if err == nil || !strings.Contains(err.Error(), "services may be stopped (app)") || !strings.Contains(err.Error(), "state directory "+strconv.Quote(filepath.Join(dir, l.name))) {
		t.Fatalf("got %v, want it to say app may be stopped and name the state directory", err)
	}
	os.Remove(filepath.Join(dir, "filler"))
	l.opts.Progress = nil
	if _, err := Resume(context.Background(), dockertest.Engine(t), fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	l.checkRunning(t, "volume")
}
