package volumes

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/safefs"
)

var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binErr   error
	imageRef string
)

// TestMain removes the static moltctl the engine tests build (once, on first
// use) and its helper image.
func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "volumes-test-")
	if err != nil {
		panic(err)
	}
	binDir = d
	code := m.Run()
	if binPath != "" && imageRef != "" {
		exec.Command("docker", "image", "rm", imageRef).Run()
	}
	os.RemoveAll(binDir)
	os.Exit(code)
}

// helperOpts builds the static moltctl (CGO_ENABLED=0) once and returns the
// options that make it the helper binary.
func helperOpts(tb testing.TB) HelperOptions {
	tb.Helper()
	binOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		p := filepath.Join(binDir, "moltctl")
		// A version of its own makes this package's helper image tag (a hash of the
		// binary) differ from other packages' tests, which remove theirs concurrently.
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version=volumes-test", "-o", p, "./cmd/moltctl")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("building the static moltctl: " + err.Error() + ": " + string(out))
			return
		}
		binPath = p
		imageRef, _, binErr = helperRef(HelperOptions{Binary: p})
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return HelperOptions{Binary: binPath}
}

// testVolume creates a volume with the given Create options (name and
// migration filled in) and removes it at cleanup.
func testVolume(tb testing.TB, eng Engine, o CreateOptions) string {
	tb.Helper()
	if o.Name == "" {
		o.Name = dockertest.Name("moltvol")
	}
	if o.Project == "" {
		o.Project, o.Key, o.ComposeVersion = "proj", "state", "2.40.0"
	}
	if o.Migration == "" {
		o.Migration = "m1"
	}
	o.Helper = helperOpts(tb)
	tb.Cleanup(func() { dockertest.Run("docker", "volume", "rm", "-f", o.Name) })
	if _, err := Create(context.Background(), eng, o); err != nil {
		tb.Fatalf("creating volume: %v", err)
	}
	return o.Name
}

// inVolume runs a busybox shell command with the volume at /v.
func inVolume(tb testing.TB, vol, script string) string {
	tb.Helper()
	img := dockertest.Busybox(tb)
	return dockertest.Docker(tb, "run", "--rm", "--network", "none", "-v", vol+":/v", img, "sh", "-c", script)
}

func noHelperLeft(tb testing.TB, vol string) {
	tb.Helper()
	// Only this test's volume: other packages' tests (migrate) run helpers at the same time.
	if out := dockertest.Docker(tb, "ps", "-aq", "--filter", "label="+LabelHelper, "--filter", "label="+LabelHelperVolume+"="+vol); out != "" {
		tb.Errorf("helper containers left behind: %s", out)
	}
}

func TestEngineCopyDeltaVerify(t *testing.T) {
	eng := dockertest.Engine(t)
	ctx := context.Background()
	tr := makeTree(t)
	vol := testVolume(t, eng, CreateOptions{})
	hopts := helperOpts(t)
	before := snapshot(t, tr.Src, "")
	outSt, outContent := statOutside(t, tr)

	var events []progress.Event
	res, err := Copy(ctx, eng, CopyOptions{Source: tr.Src, Volume: vol, Owner: "1000:1000", Helper: hopts,
		Progress: func(e progress.Event) { events = append(events, e) }})
	if err != nil {
		t.Fatalf("full pass: %v", err)
	}
	if len(events) == 0 || events[len(events)-1].Files != res.Files || res.Files < 40 {
		t.Errorf("got %d files copied and progress %+v, want at least 40 and a final progress report", res.Files, events)
	}
	for _, e := range events {
		if e.Step != progress.Copy || e.Phase != progress.Running || e.Target != vol || e.Source != tr.Src || e.Pass != string(PassFull) {
			t.Fatalf("got event %+v, want a running full pass of %s into volume %s", e, tr.Src, vol)
		}
	}
	noHelperLeft(t, vol)

	s := func(n string) string { return filepath.Join(tr.Src, n) }
	rewrite(t, s("many/a/fa"), "DATA a")
	must(t, os.Remove(s("many/b/fb")))
	writeFile(t, s("many/new file"), "new", 0o644)
	must(t, os.Remove(s(nLinkIn)))
	writeFile(t, s(nLinkIn), "now a file", 0o644)
	delta, err := Copy(ctx, eng, CopyOptions{Source: tr.Src, Volume: vol, Owner: "1000:1000", Pass: PassDelta, Helper: hopts})
	if err != nil {
		t.Fatalf("delta pass: %v", err)
	}
	if got, want := strings.Join(delta.Added, ","), "many/new file"; got != want {
		t.Errorf("delta added: got %q, want %q", got, want)
	}
	if got, want := strings.Join(delta.Removed, ","), "many/b/fb"; got != want {
		t.Errorf("delta removed: got %q, want %q", got, want)
	}
	for _, p := range []string{nLinkIn, "many/a/fa"} {
		if !strings.Contains(strings.Join(delta.Changed, "\x00")+"\x00", p+"\x00") {
			t.Errorf("delta changed: got %q, want %q in it", delta.Changed, p)
		}
	}
	rep, err := Verify(ctx, eng, VerifyOptions{Source: tr.Src, Volume: vol, Owner: "1000:1000", Helper: hopts})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Hashed < 3 {
		t.Errorf("verify hashed %d files, want at least the 3 the delta wrote", rep.Hashed)
	}
	if err := Finish(ctx, eng, FinishOptions{Volume: vol, Helper: hopts}); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if _, err := Verify(ctx, eng, VerifyOptions{Source: tr.Src, Volume: vol, Owner: "1000:1000", Full: true, Helper: hopts}); err != nil {
		t.Fatalf("full verify after finish: %v", err)
	}

	// seen by another program: owners, content, sparseness, setuid bit, no state left
	out := inVolume(t, vol, `cd /v && find . \( ! -user 1000 -o ! -group 1000 \) -print; echo owners-done;
		cat "plain.txt" "many/new file"; echo; stat -c '%a %b' "`+nSetuid+`" "`+nSparse+`"; ls -a`)
	want := "owners-done\nhello\nnew\n4755 "
	if !strings.HasPrefix(out, want) {
		t.Errorf("volume as busybox sees it: got %q, want it to start with %q", out, want)
	}
	if strings.Contains(out, StateDir) {
		t.Errorf("volume still holds %s after Finish: %q", StateDir, out)
	}

	sameSnapshotExcept(t, before, snapshot(t, tr.Src, ""), "many/a/fa", "many/b/fb", "many/new file", nLinkIn, "many", "many/a", "many/b", ".")
	st, content := statOutside(t, tr)
	if st.Uid != outSt.Uid || st.Gid != outSt.Gid || st.Mode != outSt.Mode || content != outContent {
		t.Errorf("outside file changed: got %d:%d %o %q, want %d:%d %o %q", st.Uid, st.Gid, st.Mode, content, outSt.Uid, outSt.Gid, outSt.Mode, outContent)
	}
	noHelperLeft(t, vol)
}

// sameSnapshotExcept compares two source snapshots, skipping what the test changed.
func sameSnapshotExcept(tb testing.TB, before, after map[string]*safefs.Entry, changed ...string) {
	tb.Helper()
	skip := map[string]bool{}
	for _, p := range changed {
		skip[p] = true
	}
	b, a := map[string]*safefs.Entry{}, map[string]*safefs.Entry{}
	for p, e := range before {
		if !skip[p] {
			b[p] = e
		}
	}
	for p, e := range after {
		if !skip[p] {
			a[p] = e
		}
	}
	sameSnapshot(tb, "source", b, a)
}

func TestEngineVerifyCatchesPlantedDifference(t *testing.T) {
	eng := dockertest.Engine(t)
	ctx := context.Background()
	tr := makeTree(t)
	vol := testVolume(t, eng, CreateOptions{})
	hopts := helperOpts(t)
	if _, err := Copy(ctx, eng, CopyOptions{Source: tr.Src, Volume: vol, Owner: "1000:1000", Helper: hopts}); err != nil {
		t.Fatal(err)
	}
	inVolume(t, vol, "chmod 600 /v/plain.txt")
	rep, err := Verify(ctx, eng, VerifyOptions{Source: tr.Src, Volume: vol, Owner: "1000:1000", Helper: hopts})
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("got %v, want ErrMismatch", err)
	}
	if rep == nil || len(rep.Differences) != 1 || !strings.HasPrefix(rep.Differences[0], "plain.txt: mode 0600") {
		t.Errorf("got report %+v, want one difference: plain.txt's mode", rep)
	}
	// the wrong owner is a difference too
	if _, err := Verify(ctx, eng, VerifyOptions{Source: tr.Src, Volume: vol, Owner: "1001:1000", Helper: hopts}); !errors.Is(err, ErrMismatch) {
		t.Errorf("verify with another owner: got %v, want ErrMismatch", err)
	}
}

func TestEngineCreate(t *testing.T) {
	eng := dockertest.Engine(t)
	ctx := context.Background()
	hopts := helperOpts(t)
	img := dockertest.Busybox(t)

	t.Run("new, then resumed", func(t *testing.T) {
		vol := testVolume(t, eng, CreateOptions{Project: "p1", Key: "data", ComposeVersion: "2.40.0", Migration: "mig-a"})
		labels := dockertest.Docker(t, "volume", "inspect", "-f", "{{json .Labels}}", vol)
		for _, want := range []string{`"com.docker.compose.project":"p1"`, `"com.docker.compose.volume":"data"`, `"com.docker.compose.version":"2.40.0"`, `"` + LabelMigration + `":"mig-a"`} {
			if !strings.Contains(labels, want) {
				t.Errorf("labels: got %s, want %s in them", labels, want)
			}
		}
		if strings.Contains(labels, "config-hash") {
			t.Errorf("labels: got %s, want no config-hash", labels)
		}
		inVolume(t, vol, "echo data > /v/f")
		res, err := Create(ctx, eng, CreateOptions{Name: vol, Project: "p1", Key: "data", Migration: "mig-a", Helper: hopts})
		if err != nil || res.Created {
			t.Errorf("resume: got %+v, %v, want the volume reused", res, err)
		}
		if _, err := Create(ctx, eng, CreateOptions{Name: vol, Project: "p1", Key: "data", Migration: "mig-b", Helper: hopts}); !errors.Is(err, ErrVolumeTaken) {
			t.Errorf("another migration: got %v, want ErrVolumeTaken", err)
		}
		if out := inVolume(t, vol, "cat /v/f"); out != "data" {
			t.Errorf("content after refusal: got %q, want %q", out, "data")
		}
	})
	t.Run("taken by someone else", func(t *testing.T) {
		vol := dockertest.Name("moltvol")
		t.Cleanup(func() { dockertest.Run("docker", "volume", "rm", "-f", vol) })
		dockertest.Docker(t, "volume", "create", vol)
		dockertest.Docker(t, "run", "--rm", "-v", vol+":/v", img, "sh", "-c", "echo precious > /v/f")
		_, err := Create(ctx, eng, CreateOptions{Name: vol, Project: "p", Key: "k", Migration: "m", Helper: hopts})
		if !errors.Is(err, ErrVolumeTaken) {
			t.Fatalf("got %v, want ErrVolumeTaken", err)
		}
		if out := inVolume(t, vol, "cat /v/f"); out != "precious" {
			t.Errorf("content after refusal: got %q, want %q", out, "precious")
		}
		noHelperLeft(t, vol)
	})
	t.Run("empty, replaced with labels", func(t *testing.T) {
		vol := dockertest.Name("moltvol")
		t.Cleanup(func() { dockertest.Run("docker", "volume", "rm", "-f", vol) })
		dockertest.Docker(t, "volume", "create", vol)
		res, err := Create(ctx, eng, CreateOptions{Name: vol, Project: "p", Key: "k", Migration: "m", Helper: hopts})
		if err != nil || !res.Replaced || !res.Created {
			t.Fatalf("got %+v, %v, want replaced", res, err)
		}
		if l := dockertest.Docker(t, "volume", "inspect", "-f", `{{index .Labels "`+LabelMigration+`"}}`, vol); l != "m" {
			t.Errorf("migration label: got %q, want %q", l, "m")
		}
		noHelperLeft(t, vol)
	})
}

func TestEngineBadInputs(t *testing.T) {
	eng := dockertest.Engine(t)
	ctx := context.Background()
	hopts := helperOpts(t)
	vol := testVolume(t, eng, CreateOptions{})
	src := t.TempDir()

	t.Run("source vanished", func(t *testing.T) {
		_, err := Copy(ctx, eng, CopyOptions{Source: filepath.Join(src, "nope"), Volume: vol, Owner: "1:1", Helper: hopts})
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Errorf("got %v, want an error naming the source", err)
		}
	})
	t.Run("delta without full pass", func(t *testing.T) {
		_, err := Copy(ctx, eng, CopyOptions{Source: src, Volume: vol, Owner: "1:1", Pass: PassDelta, Helper: hopts})
		if !errors.Is(err, ErrNoFirstPass) {
			t.Errorf("got %v, want ErrNoFirstPass", err)
		}
	})
	t.Run("relative source", func(t *testing.T) {
		if _, err := Copy(ctx, eng, CopyOptions{Source: "data", Volume: vol, Owner: "1:1", Helper: hopts}); err == nil {
			t.Error("got no error, want one")
		}
	})
	t.Run("no space", func(t *testing.T) {
		small := dockertest.Name("moltvol")
		t.Cleanup(func() { dockertest.Run("docker", "volume", "rm", "-f", small) })
		dockertest.Docker(t, "volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m", small)
		writeFile(t, filepath.Join(src, "big"), strings.Repeat("x", 3<<20), 0o644)
		_, err := Copy(ctx, eng, CopyOptions{Source: src, Volume: small, Owner: "1:1", Helper: hopts})
		if !errors.Is(err, ErrNoSpace) {
			t.Errorf("got %v, want ErrNoSpace", err)
		}
	})
	noHelperLeft(t, vol)
}

// failingStart is the real engine but for ContainerStart, which fails.
type failingStart struct{ *client.Client }

func (f failingStart) ContainerStart(ctx context.Context, id string, o client.ContainerStartOptions) (client.ContainerStartResult, error) {
	return client.ContainerStartResult{}, errors.New("injected start failure")
}

func TestEngineHelperRemovedOnFailure(t *testing.T) {
	eng := dockertest.Engine(t)
	vol := testVolume(t, eng, CreateOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Copy(ctx, failingStart{eng}, CopyOptions{Source: t.TempDir(), Volume: vol, Owner: "1:1", Helper: helperOpts(t)})
	if err == nil || !strings.Contains(err.Error(), "injected start failure") {
		t.Fatalf("got %v, want the injected failure", err)
	}
	noHelperLeft(t, vol)
}

func TestEngineRemovesHelperLeftByKilledRun(t *testing.T) {
	eng := dockertest.Engine(t)
	img := dockertest.Busybox(t)
	vol := testVolume(t, eng, CreateOptions{})
	// a helper of a moltctl killed with -9: still running, labelled for the volume
	left := dockertest.Name("moltctl-helper-left")
	t.Cleanup(func() { dockertest.Run("docker", "rm", "-f", left) })
	dockertest.Docker(t, "run", "-d", "--name", left, "--label", LabelHelper+"=copy", "--label", LabelHelperVolume+"="+vol,
		"-v", vol+":/to", img, "sleep", "300")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "data", 0o644)
	if _, err := Copy(context.Background(), eng, CopyOptions{Source: src, Volume: vol, Owner: "1000:1000", Helper: helperOpts(t)}); err != nil {
		t.Fatal(err)
	}
	if out, _ := dockertest.Run("docker", "ps", "-aq", "--filter", "name="+left); out != "" {
		t.Errorf("the left-over helper %s still exists", left)
	}
	noHelperLeft(t, vol)
}
