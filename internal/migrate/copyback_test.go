package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/progress"
)

// migrated is newLive after a completed migration in which the service wrote
// a file into its volume.
func migrated(tb testing.TB) *live {
	tb.Helper()
	l := newLive(tb)
	if _, err := Run(context.Background(), dockertest.Engine(tb), fresh(tb, l.opts)); err != nil {
		tb.Fatal(err)
	}
	l.compose(tb, "exec", "-T", "app", "sh", "-c", "echo from the service >/data/new.txt")
	return l
}

// checkCopiedBack fails unless the rollback with copy-back is complete: the
// service runs on its bind with its writable layer and reads the file it wrote
// into the volume from it; the file is in the bind directory with the
// service's owner; the bind directory's previous content is kept aside, whole,
// and named in the report's warnings; the compose file is restored; no journal
// is left.
func (l *live) checkCopiedBack(tb testing.TB, warnings []string, before []byte) {
	tb.Helper()
	l.checkRunning(tb, "bind")
	if got := strings.TrimSpace(l.compose(tb, "exec", "-T", "app", "cat", "/data/new.txt")); got != "from the service" {
		tb.Errorf("got %q from /data/new.txt on the bind, want the service's file", got)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(l.state, "new.txt"), &st); err != nil || st.Uid != 1000 || st.Gid != 1000 {
		tb.Errorf("got new.txt in the bind directory %v, owner %d:%d, want it there owned by 1000:1000", err, st.Uid, st.Gid)
	}
	kept, _ := filepath.Glob(l.state + ".moltctl-before-copyback-*")
	if len(kept) != 1 {
		tb.Fatalf("got kept directories %v, want one", kept)
	}
	old := &live{state: kept[0]}
	old.checkSource(tb)
	if _, err := os.Lstat(filepath.Join(kept[0], "new.txt")); !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("got new.txt in the kept previous content (%v), want it only in the bind directory", err)
	}
	if w := strings.Join(warnings, "\n"); !strings.Contains(w, kept[0]) || strings.Contains(w, "stays in the volumes") {
		tb.Errorf("got warnings %q, want the kept directory %s named and no data left in the volumes", w, kept[0])
	}
	if got, _ := os.ReadFile(l.file); string(got) != string(before) {
		tb.Errorf("got compose file after rollback\n%s\nwant\n%s", got, before)
	}
	for _, p := range []string{JournalPath(l.name), CopyBackPath(l.name)} {
		if _, err := os.Stat(p); err == nil {
			tb.Errorf("got %s left after the rollback", p)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(l.state), ".state.moltctl-copyback-*")); len(left) > 0 {
		tb.Errorf("got the staging directory %v left", left)
	}
}

func TestRollbackCopyBack(t *testing.T) {
	l := migrated(t)
	eng := dockertest.Engine(t)
	before, _ := os.ReadFile(l.file + ".moltctl-backup")
	l.opts.CopyBack = true
	var steps []string
	l.opts.Progress = func(e progress.Event) {
		if e.Phase == progress.Started {
			steps = append(steps, fmt.Sprintf("%s %s -> %s", e.Step, e.Target, e.Source))
		}
	}
	rep, err := Rollback(context.Background(), eng, fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(steps, "\n"); !strings.Contains(s, "copy back "+l.name+"_state -> "+l.state) {
		t.Errorf("got steps\n%s\nwant the copy back of %s_state among them", s, l.name)
	}
	l.checkCopiedBack(t, rep.Warnings, before)
	// The volume is kept, with the data.
	if got := strings.TrimSpace(dockertest.Docker(t, "run", "--rm", "-v", l.name+"_state:/v", dockertest.Busybox(t), "cat", "/v/new.txt")); got != "from the service" {
		t.Errorf("got %q in the volume, want its data kept", got)
	}
}

// TestRollbackCopyBackNothingWritten: before any service ran on the volumes,
// --copy-back changes nothing: the bind directory is the source, untouched,
// no directory is kept aside, the volume is removed.
func TestRollbackCopyBackNothingWritten(t *testing.T) {
	l := newLive(t)
	cmd := exec.Command(staticMoltctl(t), "-f", l.file, "migrate", "--yes", "--quiet")
	cmd.Env = append(os.Environ(), crashAfter("migrate", StepVerified))
	cmd.Run()
	l.opts.CopyBack = true
	rep, err := Rollback(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("got warnings %v, want none", rep.Warnings)
	}
	l.checkSource(t)
	l.checkRunning(t, "bind")
	if kept, _ := filepath.Glob(l.state + ".moltctl-before-copyback-*"); len(kept) > 0 {
		t.Errorf("got %v kept aside, want nothing copied back", kept)
	}
	if _, err := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); err == nil {
		t.Errorf("got volume %s_state left by the rollback of a migration no service used", l.name)
	}
}

// TestRollbackCopyBackRefused: a bind directory that can't be copied back
// (replaced by a symlink) is refused with one line; the service runs again as
// it did (on the volume), nothing is journaled; a rollback without --copy-back
// still works.
func TestRollbackCopyBackRefused(t *testing.T) {
	l := migrated(t)
	eng := dockertest.Engine(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Rename(l.state, l.state+".real"))
	must(os.Symlink(l.state+".real", l.state))
	l.opts.CopyBack = true
	_, err := Rollback(context.Background(), eng, fresh(t, l.opts))
	if err == nil || !strings.Contains(err.Error(), "is a symlink, not a directory") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v, want one line refusing the symlink", err)
	}
	l.checkRunning(t, "volume")
	if _, err := os.Stat(CopyBackPath(l.name)); err == nil {
		t.Errorf("got the copy-back journal left by a refused copy-back")
	}
	if fi, err := os.Lstat(l.state); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("got %v, %v at the bind path, want the symlink untouched", fi, err)
	}
	l.opts.CopyBack = false
	must(os.Remove(l.state))
	must(os.Rename(l.state+".real", l.state))
	rep, err := Rollback(context.Background(), eng, fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "stays in the volumes") {
		t.Errorf("got warnings %v, want one saying data stays in the volumes", rep.Warnings)
	}
	l.checkRunning(t, "bind")
	l.checkSource(t)
}

// TestRollbackCopyBackCrash kills `moltctl migrate --rollback --copy-back`
// (SIGKILL from the journal hooks) after the copy-back's steps, then rolls
// back again (once without --copy-back: a copy-back begun is finished).
func TestRollbackCopyBackCrash(t *testing.T) {
	for _, tt := range []struct {
		step     string
		copyBack bool
	}{
		{StepCopyBackStopping, true},
		{StepCopyBackStopping, false},
		{StepCopiedBack, true},
	} {
		t.Run(tt.step+map[bool]string{true: "/copy-back", false: "/plain"}[tt.copyBack], func(t *testing.T) {
			l := migrated(t)
			eng := dockertest.Engine(t)
			before, _ := os.ReadFile(l.file + ".moltctl-backup")
			cmd := exec.Command(staticMoltctl(t), "-f", l.file, "migrate", "--rollback", "--copy-back", "--quiet", "--wait-timeout", "1s")
			cmd.Env = append(os.Environ(), crashAfter("migrate-copyback", tt.step))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("got %v (%s), want the child killed after %s", err, out, tt.step)
			}
			l.opts.CopyBack = tt.copyBack
			rep, err := Rollback(context.Background(), eng, fresh(t, l.opts))
			if err != nil {
				t.Fatal(err)
			}
			l.checkCopiedBack(t, rep.Warnings, before)
		})
	}
}

// TestRollbackCopyBackVolumes: a kill -9 between two volumes; the rerun copies
// back only the second.
func TestRollbackCopyBackVolumes(t *testing.T) {
	name, file := newProject(t, "migcb", []string{"s1", "s2"}, `  app:
    image: `+dockertest.Busybox(t)+`
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes: [./s1:/s1, ./s2:/s2]
`)
	dir := filepath.Dir(file)
	eng := dockertest.Engine(t)
	bin := staticMoltctl(t)
	for _, k := range []string{"s1", "s2"} {
		os.MkdirAll(filepath.Join(dir, k), 0o755)
		os.WriteFile(filepath.Join(dir, k, "old"), []byte(k+"\n"), 0o644)
	}
	dockertest.Docker(t, "compose", "-f", file, "up", "-d")
	l := &live{name: name, file: file}
	l.opts.Project = selecting(file)
	l.opts.Helper.Binary = bin
	l.opts.WaitTimeout = time.Second
	if _, err := Run(context.Background(), eng, fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	l.compose(t, "exec", "-T", "app", "sh", "-c", "echo new1 >/s1/new && echo new2 >/s2/new")
	cmd := exec.Command(bin, "-f", file, "migrate", "--rollback", "--copy-back", "--quiet", "--wait-timeout", "1s")
	cmd.Env = append(os.Environ(), crashAfter("migrate-copyback", StepCopiedBack))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("got the rollback done (%s), want it killed after the first volume", out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "s1", "new")); err != nil || string(b) != "new1\n" {
		t.Errorf("got %q, %v in s1 after the kill, want the first volume copied back", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s2", "new")); err == nil {
		t.Errorf("got s2 copied back before the kill, want the kill between the volumes")
	}
	var copies []string
	l.opts.CopyBack = true
	l.opts.Progress = func(e progress.Event) {
		if e.Phase == progress.Started && e.Step == progress.CopyBack {
			copies = append(copies, e.Target)
		}
	}
	rep, err := Rollback(context.Background(), eng, fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(copies, ","); got != name+"_s2" {
		t.Errorf("got volumes %q copied back by the rerun, want only %s_s2", got, name)
	}
	for _, k := range []string{"s1", "s2"} {
		got := strings.TrimSpace(l.compose(t, "exec", "-T", "app", "cat", "/"+k+"/new", "/"+k+"/old"))
		if want := "new" + k[1:] + "\n" + k; got != want {
			t.Errorf("got %q in /%s on the bind, want %q", got, k, want)
		}
		kept, _ := filepath.Glob(filepath.Join(dir, k+".moltctl-before-copyback-*"))
		if len(kept) != 1 || !strings.Contains(strings.Join(rep.Warnings, "\n"), kept[0]) {
			t.Errorf("got kept %v and warnings %v, want one kept directory for %s, named", kept, rep.Warnings, k)
		}
	}
}
