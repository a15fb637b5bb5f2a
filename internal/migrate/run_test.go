package migrate

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/statefile"
	"github.com/moltctl/moltctl/internal/volumes"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// staticMoltctl builds the static moltctl (CGO_ENABLED=0) once: the helper
// binary of the copy engine, and the process the crash tests kill.
func staticMoltctl(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "migrate-test-")
		if binErr != nil {
			return
		}
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binErr = err
			return
		}
		p := filepath.Join(binDir, "moltctl")
		// The tag arms the crash point of $MOLTCTL_CRASH_AFTER (crashAfter).
		cmd := exec.Command("go", "build", "-tags", "moltctl_crashhook", "-o", p, "./cmd/moltctl")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("building the static moltctl: " + err.Error() + ": " + string(out))
			return
		}
		binPath = p
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// crashAfter is the environment setting that kills the static moltctl right
// after journal ("migrate", "migrate-copyback", "remount") recorded step.
func crashAfter(journal, step string) string {
	return statefile.CrashEnv + "=" + journal + ":" + step
}

// newProject makes the compose project of a migration test, named after
// prefix, with services (the YAML under `services:`): a private state dir, and
// a cleanup, run after dockertest.Project's `down -v`, of the volumes
// <name>_<key>, the snapshot images and the helper image.
func newProject(tb testing.TB, prefix string, keys []string, services string) (name, file string) {
	tb.Helper()
	dockertest.Root(tb)
	eng := dockertest.Engine(tb)
	bin := staticMoltctl(tb)
	tb.Setenv("MOLTCTL_STATE_DIR", tb.TempDir())
	name = dockertest.Name(prefix)
	tb.Cleanup(func() {
		for _, k := range keys {
			dockertest.Run("docker", "volume", "rm", "-f", name+"_"+k)
		}
		out, _ := dockertest.Run("docker", "image", "ls", "-q", "--filter", "label=io.moltctl.snapshot.project="+name)
		for _, id := range strings.Fields(out) {
			dockertest.Run("docker", "image", "rm", "-f", id)
		}
		volumes.RemoveHelper(context.Background(), eng, volumes.HelperOptions{Binary: bin})
	})
	dir := dockertest.Project(tb, name, "name: "+name+"\nservices:\n"+services)
	return name, filepath.Join(dir, "compose.yaml")
}

// live is a running compose project: one busybox service (user 1000:1000)
// with the root-owned directory state bind-mounted at /data and a file in its
// writable layer.
type live struct {
	name, dir, file, state string
	opts                   RunOptions
}

// selecting is a project selected by its compose files and not loaded yet:
// fresh loads it.
func selecting(files ...string) *compose.Project {
	return &compose.Project{Options: compose.Options{Files: files}}
}

// fresh returns opts with its project loaded now from its options, as each
// moltctl command loads it: a test that runs several commands with one
// RunOptions gives each the compose files as they are then.
func fresh(tb testing.TB, opts RunOptions) RunOptions {
	tb.Helper()
	p, err := compose.Load(context.Background(), opts.Project.Options)
	if err != nil {
		tb.Fatal(err)
	}
	opts.Project = p
	return opts
}

func newLive(tb testing.TB) *live {
	tb.Helper()
	l := &live{}
	l.name, l.file = newProject(tb, "migrun", []string{"state"}, `  app:
    image: `+dockertest.Busybox(tb)+`
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes:
      - ./state:/data  # the state
`)
	l.dir = filepath.Dir(l.file)
	l.state = filepath.Join(l.dir, "state")
	for p, content := range map[string]string{"a.txt": "alpha\n", "sub/b.txt": "beta\n", "sub/deep/c d é.txt": "gamma\n"} {
		os.MkdirAll(filepath.Dir(filepath.Join(l.state, p)), 0o755)
		if err := os.WriteFile(filepath.Join(l.state, p), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	os.Symlink("a.txt", filepath.Join(l.state, "link"))
	l.compose(tb, "up", "-d")
	l.compose(tb, "exec", "-T", "app", "sh", "-c", "echo layer >/tmp/layer.txt")
	l.opts = RunOptions{Project: selecting(l.file), Helper: volumes.HelperOptions{Binary: staticMoltctl(tb)},
		WaitTimeout: time.Second}
	return l
}

func (l *live) compose(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := dockertest.Run("docker", append([]string{"compose", "-f", l.file}, args...)...)
	if err != nil {
		tb.Fatalf("docker compose %v: %v", args, err)
	}
	return out
}

func (l *live) containerID(tb testing.TB) string {
	tb.Helper()
	return strings.TrimSpace(l.compose(tb, "ps", "-q", "app"))
}

// mountType is the type of the container's mount at /data.
func (l *live) mountType(tb testing.TB) string {
	tb.Helper()
	return strings.TrimSpace(dockertest.Docker(tb, "inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Type}}{{end}}{{end}}`, l.containerID(tb)))
}

// checkSource fails when the source tree is not as newLive made it.
func (l *live) checkSource(tb testing.TB) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(l.state, "sub/deep/c d é.txt"))
	if err != nil || string(b) != "gamma\n" {
		tb.Errorf("got source file %q, %v, want gamma", b, err)
	}
	var st os.FileInfo
	if st, err = os.Lstat(filepath.Join(l.state, "a.txt")); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 {
		tb.Errorf("got source a.txt %v, want it root-owned", err)
	}
}

// checkRunning fails unless the service runs with its writable-layer file and
// the mount at /data has the given type.
func (l *live) checkRunning(tb testing.TB, mount string) {
	tb.Helper()
	if got := strings.TrimSpace(l.compose(tb, "exec", "-T", "app", "cat", "/tmp/layer.txt", "/data/a.txt")); got != "layer\nalpha" {
		tb.Errorf("got %q from the writable layer and /data, want layer and alpha", got)
	}
	if got := l.mountType(tb); got != mount {
		tb.Errorf("got /data mounted as %q, want %q", got, mount)
	}
}

func TestRunEndToEnd(t *testing.T) {
	l := newLive(t)
	ctx := context.Background()
	eng := dockertest.Engine(t)
	before, _ := os.ReadFile(l.file)
	var events []progress.Event
	l.opts.Progress = func(e progress.Event) { events = append(events, e) }
	rep, err := Run(ctx, eng, fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Services) != 1 || rep.Services[0] != "app" || len(rep.Volumes) != 1 || rep.Volumes[0].Name != l.name+"_state" {
		t.Fatalf("got report %+v, want app remounted onto %s_state", rep, l.name)
	}
	if rep.Downtime <= 0 || rep.Downtime > rep.Total {
		t.Errorf("got downtime %s of total %s, want it positive and within", rep.Downtime, rep.Total)
	}
	checkProgress(t, events, l.name+"_state", l.state)
	l.checkSource(t)
	l.checkRunning(t, "volume")
	// Every entry in the volume belongs to the planned owner; no copy state left.
	out := dockertest.Docker(t, "run", "--rm", "-v", l.name+"_state:/v", dockertest.Busybox(t),
		"sh", "-c", "find /v -exec stat -c '%u:%g %n' {} +; ls -a /v")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "/") || strings.HasPrefix(line, ".") || line == "a.txt" || line == "link" || line == "sub" {
			continue
		}
		if !strings.HasPrefix(line, "1000:1000 ") {
			t.Errorf("got %q in the volume, want owner 1000:1000", line)
		}
	}
	if strings.Contains(out, volumes.StateDir) {
		t.Errorf("got the copy state left in the volume:\n%s", out)
	}
	after, _ := os.ReadFile(l.file)
	if backup, _ := os.ReadFile(l.file + ".moltctl-backup"); string(backup) != string(before) || string(after) == string(before) {
		t.Errorf("got compose file\n%s\nbackup\n%s\nwant the rewrite and the original as backup", after, backup)
	}
	// docker compose adopts the volume and the container.
	id := l.containerID(t)
	// compose reports on stderr: read both streams, and see its "Running" line.
	b, err := exec.Command("docker", "compose", "-f", l.file, "up", "-d").CombinedOutput()
	if up := string(b); err != nil || !strings.Contains(up, "Running") ||
		strings.Contains(up, "not created by Docker Compose") || strings.Contains(up, "Recreate") {
		t.Errorf("got `docker compose up -d` %v, output\n%s\nwant the container Running, no volume warning, no recreate", err, up)
	}
	if got := l.containerID(t); got != id {
		t.Errorf("got container %s after compose up, want %s kept", got, id)
	}
	// Again: nothing to do.
	rep, err = Run(ctx, eng, fresh(t, l.opts))
	if err != nil || !rep.Nothing {
		t.Fatalf("got %+v, %v on the second run, want nothing to migrate", rep, err)
	}
	// Rollback after the completed migration: back onto the bind, layer kept, warning.
	dockertest.Docker(t, "exec", id, "sh", "-c", "echo new >/data/new.txt")
	rep, err = Rollback(ctx, eng, fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "stays in the volumes") {
		t.Errorf("got warnings %v, want one saying data stays in the volumes", rep.Warnings)
	}
	if got, _ := os.ReadFile(l.file); string(got) != string(before) {
		t.Errorf("got compose file after rollback\n%s\nwant\n%s", got, before)
	}
	l.checkRunning(t, "bind")
	l.checkSource(t)
	if _, err := Rollback(ctx, eng, fresh(t, l.opts)); !errors.Is(err, ErrNoJournal) {
		t.Errorf("got %v rolling back twice, want ErrNoJournal", err)
	}
}

// TestRunAborts changes the source while the services are stopped (verify
// mismatch) or removes it (copy failure): the migration aborts and leaves
// everything as it was.
func TestRunAborts(t *testing.T) {
	tests := []struct {
		name string
		step string
		do   func(l *live)
		want error
	}{
		{"verify mismatch", "verify", func(l *live) {
			os.WriteFile(filepath.Join(l.state, "a.txt"), []byte("changed after the delta\n"), 0o644)
		}, volumes.ErrMismatch},
		{"source vanished", "copy", func(l *live) {
			os.Rename(l.state, l.state+".gone")
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLive(t)
			eng := dockertest.Engine(t)
			before, _ := os.ReadFile(l.file)
			id := l.containerID(t)
			done := false
			l.opts.Progress = func(e progress.Event) {
				if string(e.Step) == tt.step && !done {
					done = true
					tt.do(l)
				}
			}
			_, err := Run(context.Background(), eng, fresh(t, l.opts))
			if !errors.Is(err, ErrAborted) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want ErrAborted (and %v)", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got a multi-line error %q", err)
			}
			if n := strings.Count(err.Error(), "into volume"); n > 1 {
				t.Errorf("got %q, want each operation named once", err)
			}
			if got, _ := os.ReadFile(l.file); string(got) != string(before) {
				t.Errorf("got the compose file changed by an aborted migration")
			}
			if _, err := os.Stat(l.file + ".moltctl-backup"); err == nil {
				t.Errorf("got a backup written by an aborted migration")
			}
			if _, err := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); err == nil {
				t.Errorf("got volume %s_state left by an aborted migration", l.name)
			}
			if _, err := os.Stat(JournalPath(l.name)); err == nil {
				t.Errorf("got a journal left by an aborted migration")
			}
			if got := l.containerID(t); got != id {
				t.Errorf("got container %s, want %s as before", got, id)
			}
			if running := strings.TrimSpace(dockertest.Docker(t, "inspect", "-f", "{{.State.Running}}", id)); running != "true" {
				t.Errorf("got the service running=%s after the abort, want it started again", running)
			}
		})
	}
}

// TestRunCrash kills a moltctl migrate (SIGKILL from the journal hooks) at
// step boundaries, then finishes it with Resume or undoes it with Rollback:
// either way the data, the writable layer and the compose file are intact.
func TestRunCrash(t *testing.T) {
	type point struct{ journal, step string }
	var points []point
	// Every step boundary of the migration, then every one inside the remount of app.
	for _, s := range steps {
		if s != StepDone {
			points = append(points, point{"migrate", s})
		}
	}
	for _, s := range []string{"begun", "stopped", "committed", "composing", "composed", "new-removed", "created", "started"} {
		points = append(points, point{"remount", s})
	}
	for _, p := range points {
		for _, mode := range []string{"resume", "rollback"} {
			name := p.step
			if p.journal == "remount" {
				name = "remount-" + p.step
			}
			t.Run(name+"/"+mode, func(t *testing.T) {
				l := newLive(t)
				eng := dockertest.Engine(t)
				before, _ := os.ReadFile(l.file)
				cmd := exec.Command(staticMoltctl(t), "-f", l.file, "migrate", "--yes", "--quiet", "--wait-timeout", "1s")
				cmd.Env = append(os.Environ(), crashAfter(p.journal, p.step))
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("got %v (%s), want the child killed after %s", err, out, p.step)
				}
				if _, err := Run(context.Background(), eng, fresh(t, l.opts)); !errors.Is(err, ErrInterrupted) {
					t.Errorf("got %v running again after the crash, want ErrInterrupted", err)
				}
				if mode == "resume" {
					if _, err := Resume(context.Background(), eng, fresh(t, l.opts)); err != nil {
						t.Fatal(err)
					}
					l.checkRunning(t, "volume")
					if rep, err := Run(context.Background(), eng, fresh(t, l.opts)); err != nil || !rep.Nothing {
						t.Errorf("got %+v, %v after the resume, want nothing to migrate", rep, err)
					}
				} else {
					if _, err := Rollback(context.Background(), eng, fresh(t, l.opts)); err != nil {
						t.Fatal(err)
					}
					if got, _ := os.ReadFile(l.file); string(got) != string(before) {
						t.Errorf("got compose file after rollback\n%s\nwant\n%s", got, before)
					}
					l.checkRunning(t, "bind")
					if _, err := os.Stat(JournalPath(l.name)); err == nil {
						t.Errorf("got the journal left after the rollback")
					}
				}
				l.checkSource(t)
			})
		}
	}
}

// TestRunVolumeTaken: a volume with the planned name that holds data is never
// touched; the migration aborts with everything as before.
func TestRunVolumeTaken(t *testing.T) {
	l := newLive(t)
	vol := l.name + "_state"
	dockertest.Docker(t, "volume", "create", "--label", "com.docker.compose.project="+l.name,
		"--label", "com.docker.compose.volume=state", vol)
	dockertest.Docker(t, "run", "--rm", "-v", vol+":/v", dockertest.Busybox(t), "sh", "-c", "echo precious >/v/keep")
	before, _ := os.ReadFile(l.file)
	_, err := Run(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if !errors.Is(err, ErrAborted) || !errors.Is(err, volumes.ErrVolumeTaken) {
		t.Fatalf("got %v, want ErrAborted and ErrVolumeTaken", err)
	}
	if n := strings.Count(err.Error(), "creating volume"); n != 1 {
		t.Errorf("got %q, want the operation named once", err)
	}
	if got := strings.TrimSpace(dockertest.Docker(t, "run", "--rm", "-v", vol+":/v", dockertest.Busybox(t), "cat", "/v/keep")); got != "precious" {
		t.Errorf("got %q in the taken volume, want its data untouched", got)
	}
	if got, _ := os.ReadFile(l.file); string(got) != string(before) {
		t.Errorf("got the compose file changed")
	}
	l.checkRunning(t, "bind")
}

// TestResumeComposeChanged: a compose file edited after the plan makes Resume
// refuse with compose.ErrChanged and write nothing; Rollback still works.
func TestResumeComposeChanged(t *testing.T) {
	l := newLive(t)
	eng := dockertest.Engine(t)
	before, _ := os.ReadFile(l.file)
	cmd := exec.Command(staticMoltctl(t), "-f", l.file, "migrate", "--yes", "--quiet")
	cmd.Env = append(os.Environ(), crashAfter("migrate", StepVerified))
	cmd.Run()
	edited := append(append([]byte{}, before...), "# edited by hand\n"...)
	os.WriteFile(l.file, edited, 0o644)
	_, err := Resume(context.Background(), eng, fresh(t, l.opts))
	if !errors.Is(err, compose.ErrChanged) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v, want one line wrapping compose.ErrChanged", err)
	}
	if got, _ := os.ReadFile(l.file); string(got) != string(edited) {
		t.Errorf("got the edited compose file changed by the refused resume")
	}
	if _, err := os.Stat(l.file + ".moltctl-backup"); err == nil {
		t.Errorf("got a backup written by the refused resume")
	}
	if _, err := Rollback(context.Background(), eng, fresh(t, l.opts)); err != nil {
		t.Fatal(err)
	}
	l.checkRunning(t, "bind")
	if _, err := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); err == nil {
		t.Errorf("got volume %s_state left by the rollback of a migration no service used", l.name)
	}
}

// TestRunScaled: a service with two containers is refused before anything
// changes (remount keeps the layer of one container).
func TestRunScaled(t *testing.T) {
	l := newLive(t)
	l.compose(t, "up", "-d", "--scale", "app=2")
	before, _ := os.ReadFile(l.file)
	_, err := Run(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if !errors.Is(err, remount.ErrUnsupported) || !strings.Contains(err.Error(), "2 containers") {
		t.Fatalf("got %v, want remount.ErrUnsupported naming 2 containers", err)
	}
	if got, _ := os.ReadFile(l.file); string(got) != string(before) {
		t.Errorf("got the compose file changed")
	}
	if _, err := os.Stat(JournalPath(l.name)); err == nil {
		t.Errorf("got a journal written by a refused migration")
	}
	if _, err := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); err == nil {
		t.Errorf("got volume %s_state created by a refused migration", l.name)
	}
}

// TestRunVolumes migrates three directories of one service (delta and verify
// run them side by side); a difference found in one of them aborts the whole
// migration and removes all three volumes.
func TestRunVolumes(t *testing.T) {
	for _, mismatch := range []bool{false, true} {
		t.Run(map[bool]string{false: "ok", true: "one differs"}[mismatch], func(t *testing.T) {
			name, file := newProject(t, "migvols", []string{"s1", "s2", "s3"}, `  app:
    image: `+dockertest.Busybox(t)+`
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes: [./s1:/s1, ./s2:/s2, ./s3:/s3]
`)
			dir := filepath.Dir(file)
			eng := dockertest.Engine(t)
			bin := staticMoltctl(t)
			for _, k := range []string{"s1", "s2", "s3"} {
				os.MkdirAll(filepath.Join(dir, k, "d"), 0o755)
				os.WriteFile(filepath.Join(dir, k, "d", "f"), []byte(k+"\n"), 0o644)
			}
			dockertest.Docker(t, "compose", "-f", file, "up", "-d")
			before, _ := os.ReadFile(file)
			opts := RunOptions{Project: selecting(file), Helper: volumes.HelperOptions{Binary: bin},
				WaitTimeout: time.Second}
			var once sync.Once
			opts.Progress = func(e progress.Event) {
				if mismatch && e.Step == progress.Verify {
					once.Do(func() { os.WriteFile(filepath.Join(dir, "s2", "d", "f"), []byte("S2\n"), 0o644) })
				}
			}
			rep, err := Run(context.Background(), eng, fresh(t, opts))
			if mismatch {
				if !errors.Is(err, ErrAborted) || !errors.Is(err, volumes.ErrMismatch) || !strings.Contains(err.Error(), name+"_s2") {
					t.Fatalf("got %v, want ErrAborted and ErrMismatch naming %s_s2", err, name)
				}
				if got, _ := os.ReadFile(file); string(got) != string(before) {
					t.Errorf("got the compose file changed")
				}
				for _, k := range []string{"s1", "s2", "s3"} {
					if _, err := dockertest.Run("docker", "volume", "inspect", name+"_"+k); err == nil {
						t.Errorf("got volume %s_%s left by the aborted migration", name, k)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Volumes) != 3 {
				t.Fatalf("got %d volumes in the report, want 3", len(rep.Volumes))
			}
			for i, k := range []string{"s1", "s2", "s3"} {
				if v := rep.Volumes[i]; v.Name != name+"_"+k || v.Delta == nil || v.Verify == nil || v.Verify.Entries != 3 {
					t.Errorf("got report %+v, want %s_%s with its delta and 3 verified entries", v, name, k)
				}
				got := dockertest.Docker(t, "compose", "-f", file, "exec", "-T", "app", "cat", "/"+k+"/d/f")
				if strings.TrimSpace(got) != k {
					t.Errorf("got %q in /%s/d/f, want %s", got, k, k)
				}
			}
		})
	}
}

// TestRunCancelled: Ctrl-C (the context cancelled) during the full pass (the
// helper container is killed) or while the services are stopped aborts the
// migration, and the undo still runs to its end: the volume is removed, the
// service runs on its bind.
func TestRunCancelled(t *testing.T) {
	// "copy progress": the helper reported running totals, so it runs.
	for _, step := range []string{"copy progress", "verify"} {
		t.Run(step, func(t *testing.T) {
			l := newLive(t)
			before, _ := os.ReadFile(l.file)
			id := l.containerID(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l.opts.Progress = func(e progress.Event) {
				if (string(e.Step) == step && e.Phase == progress.Started) || (step == "copy progress" && e.Phase == progress.Running) {
					cancel()
				}
			}
			_, err := Run(ctx, dockertest.Engine(t), fresh(t, l.opts))
			if !errors.Is(err, ErrAborted) || !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want ErrAborted and context.Canceled", err)
			}
			// Each layer names its own operation once: the volume appears once.
			if n := strings.Count(err.Error(), l.name+"_state"); n != 1 {
				t.Errorf("got %q naming the volume %d times, want once", err, n)
			}
			if got, _ := os.ReadFile(l.file); string(got) != string(before) {
				t.Errorf("got the compose file changed")
			}
			if _, err := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); err == nil {
				t.Errorf("got volume %s_state left by the cancelled migration", l.name)
			}
			if running := strings.TrimSpace(dockertest.Docker(t, "inspect", "-f", "{{.State.Running}}", id)); running != "true" {
				t.Errorf("got the service running=%s, want it started again", running)
			}
		})
	}
}

// TestRunCheckFails: a service that fails on its volumes after the remount
// (it exits once /data/fail appears) stops the migration with the journal kept;
// --rollback puts it back on its bind, running.
func TestRunCheckFails(t *testing.T) {
	name, file := newProject(t, "migcheck", []string{"state"}, `  app:
    image: `+dockertest.Busybox(t)+`
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do [ -e /data/fail ] && exit 3; sleep 0.2; done"]
    volumes: [./state:/data]
`)
	dir := filepath.Dir(file)
	eng := dockertest.Engine(t)
	bin := staticMoltctl(t)
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	os.WriteFile(filepath.Join(dir, "state", "a"), []byte("a\n"), 0o644)
	dockertest.Docker(t, "compose", "-f", file, "up", "-d")
	opts := RunOptions{Project: selecting(file), Helper: volumes.HelperOptions{Binary: bin},
		WaitTimeout: 3 * time.Second, Plan: PlanOptions{Owner: "0:0"}}
	opts.Progress = func(e progress.Event) {
		if e.Step == progress.Check {
			dockertest.Docker(t, "compose", "-f", file, "exec", "-T", "app", "touch", "/data/fail")
		}
	}
	_, err := Run(context.Background(), eng, fresh(t, opts))
	if !errors.Is(err, ErrResumable) || !strings.Contains(err.Error(), "checking service app on its volumes: the new container exited (code 3)") {
		t.Fatalf("got %v, want the check of app failing with exit code 3, resumable", err)
	}
	if _, err := os.Stat(JournalPath(name)); err != nil {
		t.Fatalf("got no journal after the failed check: %v", err)
	}
	opts.Progress = nil
	if _, err := Rollback(context.Background(), eng, fresh(t, opts)); err != nil {
		t.Fatal(err)
	}
	out := dockertest.Docker(t, "compose", "-f", file, "ps", "--format", "{{.State}}", "app")
	if out != "running" {
		t.Errorf("got app %q after the rollback, want running", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "fail")); err == nil {
		t.Errorf("got /data/fail in the bind directory, want the source untouched")
	}
}

// checkProgress checks a migration's progress events of one volume vol from
// src: the steps in order, each copy and verification with its end, the full
// pass with running totals and final ones.
func checkProgress(tb testing.TB, events []progress.Event, vol, src string) {
	tb.Helper()
	var started []string
	running := 0
	for _, e := range events {
		switch e.Phase {
		case progress.Started:
			name := string(e.Step)
			if e.Step == progress.Copy {
				name += " " + e.Pass
			}
			started = append(started, name)
		case progress.Running:
			if e.Step != progress.Copy || e.Target != vol || e.Source != src || e.Files < 0 {
				tb.Errorf("got running totals %+v, want a copy of %s into %s", e, src, vol)
			}
			running++
		case progress.Failed:
			tb.Errorf("got a failed step %+v", e)
		}
	}
	want := []string{"plan", "create", "copy full", "stop", "copy delta", "verify", "rewrite", "remount", "finish"}
	if i := 0; !slices.ContainsFunc(started, func(s string) bool {
		if i < len(want) && s == want[i] {
			i++
		}
		return i == len(want)
	}) {
		tb.Errorf("got steps %v, want %v in that order among them", started, want)
	}
	if running == 0 {
		tb.Errorf("got no running copy totals")
	}
	for _, w := range []struct {
		step progress.Step
		pass string
	}{{progress.Copy, "full"}, {progress.Copy, "delta"}, {progress.Verify, ""}} {
		i := slices.IndexFunc(events, func(e progress.Event) bool {
			return e.Step == w.step && e.Pass == w.pass && e.Phase == progress.Started
		})
		j := slices.IndexFunc(events, func(e progress.Event) bool {
			return e.Step == w.step && e.Pass == w.pass && e.Phase == progress.Done
		})
		if i < 0 || j < i || events[i].Target != vol || events[i].Source != src || events[i].Group == "" ||
			events[j].Target != vol || events[j].Elapsed <= 0 {
			tb.Errorf("%s %s: got start %d and end %d in %+v, want a start then a timed end, of %s from %s, in a group", w.step, w.pass, i, j, events, vol, src)
		} else if w.pass == "full" && events[j].Files == 0 {
			tb.Errorf("got the full pass's end %+v, want its final totals", events[j])
		}
	}
}
