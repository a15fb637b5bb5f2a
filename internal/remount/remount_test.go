package remount_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/engine"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/statefile"
)

// TestMain doubles as the child process of the kill -9 tests: with
// REMOUNT_TEST_CHILD set it runs one remount and exits.
func TestMain(m *testing.M) {
	if mode := os.Getenv("REMOUNT_TEST_CHILD"); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// crashAfter is the environment setting that kills a child right after the
// remount (or, for a "group-" step, the group) journal recorded step.
func crashAfter(step string) string {
	if strings.HasPrefix(step, "group-") {
		return statefile.CrashEnv + "=remount-group:" + step
	}
	return statefile.CrashEnv + "=remount:" + step
}

func child(mode string) int {
	ctx := context.Background()
	statefile.ArmFromEnv()
	copts := compose.Options{ProjectName: os.Getenv("REMOUNT_TEST_PROJECT"), Files: []string{os.Getenv("REMOUNT_TEST_FILE")}}
	p, err := compose.Load(ctx, copts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	eng, err := engine.Connect(ctx, engine.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	service := os.Getenv("REMOUNT_TEST_SERVICE")
	if service == "" {
		service = "web"
	}
	opts := remount.Options{Project: p, Service: service, WaitTimeout: 500 * time.Millisecond,
		Rebase: os.Getenv("REMOUNT_TEST_REBASE") != ""}
	switch mode {
	case "run":
		_, err = remount.Run(ctx, eng, opts)
	case "hold-lock", "hold-engine-lock":
		lock := func(string) (func(), error) { return remount.LockEngine(ctx, eng, p.Name) }
		if mode == "hold-lock" {
			lock = statefile.Lock
		}
		unlock, lerr := lock(p.Name)
		if lerr != nil {
			fmt.Fprintln(os.Stderr, lerr)
			return 3
		}
		defer unlock()
		fmt.Println("locked")
		os.Stdin.Read(make([]byte, 1))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// baseCompose's service stops on SIGUSR1 only (PID 1 ignores SIGTERM), and says so
// in its anonymous volume.
const baseCompose = `services:
  web:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'echo usr1 > /anon/stopped; exit 0' USR1; while :; do sleep 0.2; done"]
    stop_signal: SIGUSR1
    environment:
      OLDKEY: "secret-value"
    volumes:
      - /anon
`

// newCompose is baseCompose plus a named volume, an env var and a second network
// with an alias, and without OLDKEY.
const newCompose = `services:
  web:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    environment:
      ADDED: "yes"
    volumes:
      - /anon
      - data:/data
    networks:
      default: {}
      extra:
        aliases: [web-extra]
networks:
  extra: {}
volumes:
  data: {}
`

type fixture struct {
	name, dir string
	anon      map[string]bool // anonymous volumes seen, removed at cleanup
	eng       *client.Client
	copts     compose.Options
}

// setup starts a compose project from baseCompose, writes a file into the
// container's writable layer and one into its anonymous volume, and registers the
// cleanup of everything (containers, volumes, networks, snapshot images).
func setup(tb testing.TB) *fixture {
	tb.Helper()
	eng := dockertest.Engine(tb)
	dockertest.Busybox(tb)
	dockertest.Compose(tb)
	f := &fixture{name: dockertest.Name("rmt"), eng: eng, anon: map[string]bool{}}
	tb.Cleanup(func() {
		for v := range f.anon {
			dockertest.Run("docker", "volume", "rm", v)
		}
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
		// down -v knows only the volumes and networks of the file as it is at the end.
		for _, kind := range []string{"volume", "network"} {
			names, _ := dockertest.Run("docker", kind, "ls", "-q", "--filter", "label=com.docker.compose.project="+f.name)
			for _, n := range strings.Fields(names) {
				dockertest.Run("docker", kind, "rm", n)
			}
		}
	})
	f.dir = dockertest.Project(tb, f.name, baseCompose)
	// Runs before Project's down -v: carried-over anonymous volumes are mounted by
	// name (as compose's own recreate does), so down -v leaves them.
	tb.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+f.name)
		for _, id := range strings.Fields(ids) {
			names, _ := dockertest.Run("docker", "inspect", "-f", `{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}`, id)
			for _, n := range strings.Fields(names) {
				if len(n) == 64 && !strings.Contains(n, "_") {
					f.anon[n] = true
				}
			}
		}
	})
	f.copts = compose.Options{ProjectName: f.name, Files: []string{filepath.Join(f.dir, "compose.yaml")}}
	if tb, ok := tb.(*testing.T); ok {
		tb.Setenv("MOLTCTL_STATE_DIR", tb.TempDir())
	}
	f.compose(tb, "up", "-d")
	f.compose(tb, "exec", "-T", "web", "sh", "-c", "mkdir -p /opt && echo kept > /opt/kept && echo anon > /anon/a")
	return f
}

func (f *fixture) compose(tb testing.TB, args ...string) string {
	tb.Helper()
	return dockertest.Docker(tb, append([]string{"compose", "-p", f.name, "-f", filepath.Join(f.dir, "compose.yaml")}, args...)...)
}

func (f *fixture) write(tb testing.TB, content string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "compose.yaml"), []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func (f *fixture) options(tb testing.TB) remount.Options {
	tb.Helper()
	p, err := compose.Load(context.Background(), f.copts)
	if err != nil {
		tb.Fatal(err)
	}
	return remount.Options{Project: p, Service: "web", WaitTimeout: 500 * time.Millisecond}
}

func (f *fixture) project(tb testing.TB) *compose.Project { tb.Helper(); return f.options(tb).Project }

func (f *fixture) containerID(tb testing.TB) string {
	tb.Helper()
	return f.compose(tb, "ps", "-a", "-q", "web")
}

// checkLayer checks that the service's container runs and still has the files
// written before the remount.
func (f *fixture) checkLayer(tb testing.TB) {
	tb.Helper()
	if got := f.compose(tb, "exec", "-T", "web", "cat", "/opt/kept", "/anon/a"); got != "kept\nanon" {
		tb.Errorf("files after remount: got %q, want %q", got, "kept\nanon")
	}
}

func (f *fixture) env(tb testing.TB) string {
	tb.Helper()
	return f.compose(tb, "exec", "-T", "web", "env")
}

func (f *fixture) checkNoJournal(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(remount.JournalPath(f.name)); !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("journal %s: got %v, want it removed", remount.JournalPath(f.name), err)
	}
}

// checkComposeKeeps checks that a plain docker compose up -d keeps the container.
func (f *fixture) checkComposeKeeps(tb testing.TB) {
	tb.Helper()
	before := f.containerID(tb)
	f.compose(tb, "up", "-d")
	if after := f.containerID(tb); after != before {
		tb.Errorf("docker compose up -d recreated the container: got %s, want %s", after, before)
	}
}

func TestRemount(t *testing.T) {
	f := setup(t)
	old := f.containerID(t)
	// The new network has a static address for the service.
	b := make([]byte, 2)
	rand.Read(b)
	subnet := fmt.Sprintf("10.%d.%d", 100+int(b[0])%100, b[1])
	withIP := strings.Replace(newCompose, "        aliases: [web-extra]\n", "        aliases: [web-extra]\n        ipv4_address: "+subnet+".10\n", 1)
	withIP = strings.Replace(withIP, "  extra: {}\n", "  extra:\n    ipam: {config: [{subnet: "+subnet+".0/24}]}\n", 1)
	f.write(t, withIP)
	var steps []string
	opts := f.options(t)
	var commit, wait progress.Event
	opts.Progress = func(e progress.Event) {
		steps = append(steps, string(e.Step))
		switch e.Step {
		case progress.Commit:
			commit = e
		case progress.Wait:
			wait = e
		}
	}
	res, err := remount.Run(context.Background(), f.eng, opts)
	if err != nil {
		t.Fatalf("remount: %v", err)
	}
	f.checkLayer(t)
	env := f.env(t)
	if !strings.Contains(env, "ADDED=yes") {
		t.Errorf("env after remount: got %q, want ADDED=yes in it", env)
	}
	id := f.containerID(t)
	if id == old || !strings.HasPrefix(res.NewID, id) {
		t.Errorf("container ID: got %s (result %s), want a new one (old %s)", id, res.NewID, old)
	}
	mounts := dockertest.Docker(t, "inspect", "-f", `{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}`, id)
	if !strings.Contains(mounts, f.name+"_data:/data") {
		t.Errorf("mounts: got %q, want %s_data:/data", mounts, f.name)
	}
	nets := dockertest.Docker(t, "inspect", "-f", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{join $v.Aliases ","}} {{end}}`, id)
	if !strings.Contains(nets, f.name+"_extra=") || !strings.Contains(nets, "web-extra") {
		t.Errorf("networks: got %q, want %s_extra with alias web-extra", nets, f.name)
	}
	if got := dockertest.Docker(t, "inspect", "-f", `{{(index .NetworkSettings.Networks "`+f.name+`_extra").IPAddress}}`, id); got != subnet+".10" {
		t.Errorf("static address on %s_extra: got %q, want %s.10", f.name, got, subnet)
	}
	if got, want := res.LeftoverEnv, []string{"OLDKEY"}; !slices.Equal(got, want) {
		t.Errorf("leftover env keys: got %v, want %v", got, want)
	}
	if strings.Contains(fmt.Sprint(res), "secret-value") {
		t.Errorf("result carries an env value: %+v", res)
	}
	if got := f.compose(t, "ps", "-q"); got != id {
		t.Errorf("docker compose ps -q: got %q, want %q", got, id)
	}
	f.checkComposeKeeps(t)
	f.checkNoJournal(t)
	if got := f.compose(t, "exec", "-T", "web", "cat", "/anon/stopped"); got != "usr1" {
		t.Errorf("stop signal: got %q in /anon/stopped, want usr1 (stop_signal honoured)", got)
	}
	if got := f.compose(t, "exec", "-T", "web", "hostname"); got != id[:12] {
		t.Errorf("hostname: got %q, want the container's short ID %q", got, id[:12])
	}
	if want := []string{"stop", "commit", "compose", "swap", "start", "wait"}; !slices.Equal(steps, want) {
		t.Errorf("progress steps: got %v, want %v", steps, want)
	}
	if commit.Target != res.Snapshot || commit.Source == "" || wait.Timeout != opts.WaitTimeout {
		t.Errorf("got commit event %+v and wait event %+v, want the commit of a container into %s and a wait of %s", commit, wait, res.Snapshot, opts.WaitTimeout)
	}

	rep, err := remount.Status(context.Background(), f.eng, remount.StatusOptions{Project: f.project(t)})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(rep.Containers) != 1 {
		t.Fatalf("status containers: got %d, want 1", len(rep.Containers))
	}
	st := rep.Containers[0]
	if !st.Snapshot || st.WouldRecreate || st.BaseImage != dockertest.BusyboxImage || st.Layers != res.Layers || st.WritableBytes != 0 {
		t.Errorf("status: got %+v, want a snapshot of %s with %d layers, an empty writable layer, not to be recreated", st, dockertest.BusyboxImage, res.Layers)
	}
	if !slices.Contains(st.BakedEnv, "OLDKEY") {
		t.Errorf("status baked env: got %v, want OLDKEY", st.BakedEnv)
	}

	// A second remount, flattened: the parent is the first snapshot, OLDKEY is gone,
	// and with --keep 2 the first snapshot stays.
	f.compose(t, "exec", "-T", "web", "sh", "-c", "echo two > /opt/two")
	f.write(t, strings.Replace(withIP, `ADDED: "yes"`, `ADDED: "again"`, 1))
	rep, err = remount.Status(context.Background(), f.eng, remount.StatusOptions{Project: f.project(t)})
	if err != nil || !rep.Containers[0].WouldRecreate || rep.Containers[0].Remount != "moltctl remount web" {
		t.Errorf("status after a config change: got %+v, %v, want would_recreate with the remount command", rep, err)
	}
	opts = f.options(t)
	opts.Flatten = true
	res2, err := remount.Run(context.Background(), f.eng, opts)
	if err != nil {
		t.Fatalf("second remount: %v", err)
	}
	if res2.Parent != res.Snapshot || res2.Snapshot == res.Snapshot {
		t.Errorf("second snapshot: got %s with parent %s, want a new tag with parent %s", res2.Snapshot, res2.Parent, res.Snapshot)
	}
	if res2.Layers != 1 || len(res2.LeftoverEnv) != 0 {
		t.Errorf("flattened snapshot: got %d layers, leftover env %v, want 1 layer and none", res2.Layers, res2.LeftoverEnv)
	}
	if got := f.compose(t, "exec", "-T", "web", "sh", "-c", "cat /opt/kept /opt/two /anon/a; echo $ADDED"); got != "kept\ntwo\nanon\nagain" {
		t.Errorf("after the flattened remount: got %q, want kept, two, anon, again", got)
	}
	f.checkComposeKeeps(t)

	// A third remount: with --keep 2 the first snapshot goes, the second (parent) stays.
	res3, err := remount.Run(context.Background(), f.eng, f.options(t))
	if err != nil {
		t.Fatalf("third remount: %v", err)
	}
	if !slices.Equal(res3.Pruned, []string{res.Snapshot}) {
		t.Errorf("pruned: got %v, want [%s]", res3.Pruned, res.Snapshot)
	}
	tags := dockertest.Docker(t, "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "label="+remount.LabelProject+"="+f.name)
	if got, want := strings.Fields(tags), []string{res3.Snapshot, res2.Snapshot}; !slices.Equal(got, want) {
		t.Errorf("snapshots kept: got %v, want %v", got, want)
	}
	f.checkLayer(t)
}

// faulty wraps the real engine and fails the n-th call (1-based) of one method.
type faulty struct {
	remount.Engine
	method string
	n      int
	calls  map[string]int
}

var errInjected = errors.New("injected failure")

func (e *faulty) hit(method string) error {
	e.calls[method]++
	if method == e.method && e.calls[method] == e.n {
		return fmt.Errorf("%s: %w", method, errInjected)
	}
	return nil
}

func (e *faulty) ContainerStop(ctx context.Context, id string, o client.ContainerStopOptions) (client.ContainerStopResult, error) {
	if err := e.hit("ContainerStop"); err != nil {
		return client.ContainerStopResult{}, err
	}
	return e.Engine.ContainerStop(ctx, id, o)
}

func (e *faulty) ContainerCommit(ctx context.Context, id string, o client.ContainerCommitOptions) (client.ContainerCommitResult, error) {
	if err := e.hit("ContainerCommit"); err != nil {
		return client.ContainerCommitResult{}, err
	}
	return e.Engine.ContainerCommit(ctx, id, o)
}

func (e *faulty) ContainerCreate(ctx context.Context, o client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	if err := e.hit("ContainerCreate"); err != nil {
		return client.ContainerCreateResult{}, err
	}
	return e.Engine.ContainerCreate(ctx, o)
}

func (e *faulty) ContainerStart(ctx context.Context, id string, o client.ContainerStartOptions) (client.ContainerStartResult, error) {
	if err := e.hit("ContainerStart"); err != nil {
		return client.ContainerStartResult{}, err
	}
	return e.Engine.ContainerStart(ctx, id, o)
}

func (e *faulty) ContainerRemove(ctx context.Context, id string, o client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	if err := e.hit("ContainerRemove"); err != nil {
		return client.ContainerRemoveResult{}, err
	}
	return e.Engine.ContainerRemove(ctx, id, o)
}

func (e *faulty) NetworkConnect(ctx context.Context, n string, o client.NetworkConnectOptions) (client.NetworkConnectResult, error) {
	if err := e.hit("NetworkConnect"); err != nil {
		return client.NetworkConnectResult{}, err
	}
	return e.Engine.NetworkConnect(ctx, n, o)
}

func (e *faulty) ContainerInspect(ctx context.Context, id string, o client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	if err := e.hit("ContainerInspect"); err != nil {
		return client.ContainerInspectResult{}, err
	}
	return e.Engine.ContainerInspect(ctx, id, o)
}

// checkRestored checks the service runs its previous config with its layer.
func (f *fixture) checkRestored(tb testing.TB) {
	tb.Helper()
	f.checkLayer(tb)
	env := f.env(tb)
	if strings.Contains(env, "ADDED=") || !strings.Contains(env, "OLDKEY=") {
		tb.Errorf("env after rollback: want OLDKEY and no ADDED, got keys %v", envKeys(env))
	}
	if got := f.compose(tb, "ps", "-q"); got == "" {
		tb.Errorf("docker compose ps -q: got nothing, want the restored container")
	}
	f.checkNoJournal(tb)
}

func envKeys(env string) []string {
	var keys []string
	for _, l := range strings.Split(env, "\n") {
		k, _, _ := strings.Cut(l, "=")
		keys = append(keys, k)
	}
	return keys
}

func TestRemountRollsBack(t *testing.T) {
	f := setup(t)
	type failCase struct {
		method     string
		n          int
		rolledBack bool // past the commit: rolled back; before it: left as it was
		sameID     bool // the old container itself is running again
	}
	cases := []failCase{
		{"ContainerStop", 1, false, true},
		{"ContainerCommit", 1, false, true},
		{"ContainerInspect", 2, true, false}, // inspecting compose's container
		{"ContainerRemove", 1, true, false},  // removing compose's container
		{"ContainerCreate", 2, true, false},  // the clone on the snapshot (#1: the engine lock)
		{"ContainerStart", 1, true, false},   // starting the clone
	}
	var major, minor int
	fmt.Sscanf(f.eng.ClientVersion(), "%d.%d", &major, &minor)
	if major == 1 && minor < 44 {
		// The second network is connected after create only below API 1.44; from
		// 1.44 every network is in the create call (ContainerCreate#2 covers it).
		cases = append(cases, failCase{"NetworkConnect", 1, true, false})
	}
	for _, tc := range cases {
		// One project for all cases: each ends with the service restored on the base config.
		t.Run(fmt.Sprintf("%s#%d", tc.method, tc.n), func(t *testing.T) {
			old := f.containerID(t)
			imgs := dockertest.Docker(t, "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name)
			f.write(t, newCompose)
			eng := &faulty{Engine: f.eng, method: tc.method, n: tc.n, calls: map[string]int{}}
			_, err := remount.Run(context.Background(), eng, f.options(t))
			if !errors.Is(err, errInjected) {
				t.Fatalf("remount: got %v, want the injected failure", err)
			}
			if got := errors.Is(err, remount.ErrRolledBack); got != tc.rolledBack {
				t.Errorf("errors.Is(err, ErrRolledBack): got %v, want %v (%v)", got, tc.rolledBack, err)
			}
			var se *remount.StepError
			if !errors.As(err, &se) || se.Restored == "" {
				t.Errorf("error: got %v, want a StepError saying what was restored", err)
			}
			f.checkRestored(t)
			f.write(t, baseCompose)
			f.checkComposeKeeps(t)
			if got := f.containerID(t); (got == old) != tc.sameID {
				t.Errorf("container after rollback: got %s, old %s, want same=%v", got, old, tc.sameID)
			}
			if tc.sameID {
				if got := dockertest.Docker(t, "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name); got != imgs {
					t.Errorf("snapshot images after an early failure: got %q, want %q as before", got, imgs)
				}
			}
		})
	}
}

func TestRemountRollsBackOnRealFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	f := setup(t) // one project: each case ends with the service restored on the base config
	for _, tc := range []struct {
		name, old, new string
	}{
		{"host port taken", "    networks:\n      default", fmt.Sprintf("    ports: [\"127.0.0.1:%d:80\"]\n    networks:\n      default", port)},
		{"container exits", "while :; do sleep 0.2; done", "exit 3"},
		{"unhealthy", "    networks:\n      default", "    healthcheck: {test: [\"CMD\", \"false\"], interval: 100ms, retries: 1}\n    networks:\n      default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.write(t, strings.Replace(newCompose, tc.old, tc.new, 1))
			opts := f.options(t)
			opts.WaitTimeout = 5 * time.Second
			_, err := remount.Run(context.Background(), f.eng, opts)
			if !errors.Is(err, remount.ErrRolledBack) {
				t.Fatalf("remount: got %v, want a rollback", err)
			}
			f.checkRestored(t)
			f.write(t, baseCompose)
			f.checkComposeKeeps(t)
		})
	}
}

func TestRemountRefuses(t *testing.T) {
	f := setup(t)
	old := f.containerID(t)
	unlock, err := statefile.Lock(f.name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remount.Run(context.Background(), f.eng, f.options(t))
	unlock()
	if !errors.Is(err, remount.ErrLocked) {
		t.Errorf("remount while locked: got %v, want ErrLocked", err)
	}
	// The lock held by another process refuses too.
	hold := exec.Command(os.Args[0])
	hold.Env = append(os.Environ(), "REMOUNT_TEST_CHILD=hold-lock", "REMOUNT_TEST_PROJECT="+f.name, "REMOUNT_TEST_FILE="+f.copts.Files[0])
	stdin, _ := hold.StdinPipe()
	out, _ := hold.StdoutPipe()
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n"[:7] {
		t.Fatalf("lock holder: got %q, %v", buf, err)
	}
	_, err = remount.Run(context.Background(), f.eng, f.options(t))
	stdin.Close()
	hold.Wait()
	if !errors.Is(err, remount.ErrLocked) {
		t.Errorf("remount while another process holds the lock: got %v, want ErrLocked", err)
	}

	// Another image, to play a pulled or rebuilt service image.
	other := dockertest.Name("rmtimg") + ":1"
	build := exec.Command("docker", "build", "-q", "-t", other, "-")
	build.Stdin = strings.NewReader("FROM " + dockertest.BusyboxImage + "\nLABEL rebuilt=1\n")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v: %s", other, err, out)
	}
	t.Cleanup(func() { dockertest.Run("docker", "rmi", other) })
	fakeV1 := t.TempDir()
	for _, n := range []string{"docker", "docker-compose"} {
		if err := os.WriteFile(filepath.Join(fakeV1, n), []byte("#!/bin/sh\necho 1.29.2\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		compose string
		mod     func(*remount.Options)
		want    error
		path    string
	}{
		{"compose v1 only", baseCompose, nil, compose.ErrNoCLI, fakeV1},
		{"no compose", baseCompose, nil, compose.ErrNoCLI, t.TempDir()},
		{"service image changed", strings.Replace(baseCompose, dockertest.BusyboxImage, other, 1), nil, remount.ErrUnsupported, ""},
		{"too deep", baseCompose, func(o *remount.Options) { o.MaxLayers = 3 }, remount.ErrTooDeep, ""},
		{"no container", baseCompose + `  other:
    image: moltctl-test/busybox:1
`, func(o *remount.Options) { o.Service = "other" }, remount.ErrNoContainer, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.write(t, tc.compose)
			opts := f.options(t)
			if tc.mod != nil {
				tc.mod(&opts)
			}
			path := os.Getenv("PATH")
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			_, err := remount.Run(context.Background(), f.eng, opts)
			os.Setenv("PATH", path)
			if !errors.Is(err, tc.want) {
				t.Errorf("remount: got %v, want %v", err, tc.want)
			}
			if got := f.containerID(t); got != old {
				t.Errorf("container: got %s, want %s unchanged", got, old)
			}
		})
	}
	f.write(t, newCompose)
	opts := f.options(t)
	opts.DryRun = true
	res, err := remount.Run(context.Background(), f.eng, opts)
	if err != nil || !res.DryRun || len(res.Plan) == 0 {
		t.Errorf("dry run: got %+v, %v, want a plan", res, err)
	}
	if got := f.containerID(t); got != old {
		t.Errorf("container after a dry run: got %s, want %s unchanged", got, old)
	}
	if imgs := dockertest.Docker(t, "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name); imgs != "" {
		t.Errorf("snapshots after a dry run: got %q, want none", imgs)
	}
	f.checkNoJournal(t)
	f.write(t, baseCompose)
	f.checkLayer(t)
}

// TestRemountKilled kills the remount (SIGKILL, from a child process) right after
// a journal step, then resumes or rolls it back.
func TestRemountKilled(t *testing.T) {
	for _, tc := range []struct {
		step     string
		rollback bool
	}{
		{"committed", false},
		{"composing", true},
		{"composed", false},
		{"new-removed", true},
		{"created", false},
		{"started", true},
	} {
		name := "resume"
		if tc.rollback {
			name = "rollback"
		}
		t.Run(tc.step+"/"+name, func(t *testing.T) {
			f := setup(t)
			f.write(t, newCompose)
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "REMOUNT_TEST_CHILD=run", "REMOUNT_TEST_PROJECT="+f.name,
				"REMOUNT_TEST_FILE="+f.copts.Files[0], crashAfter(tc.step))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ProcessState.Sys().(interface{ Signaled() bool }).Signaled() != true {
				t.Fatalf("child: got %v (%s), want it killed", err, out)
			}
			if _, err := os.Stat(remount.JournalPath(f.name)); err != nil {
				t.Fatalf("journal after the kill: %v", err)
			}
			// A new remount is refused until the journal is dealt with.
			_, err = remount.Run(context.Background(), f.eng, f.options(t))
			var ie *remount.InterruptedError
			if !errors.Is(err, remount.ErrInterrupted) || !errors.As(err, &ie) || ie.Service != "web" || strings.Contains(err.Error(), "--") {
				t.Errorf("remount over a journal: got %v, want an InterruptedError of web, wrapping ErrInterrupted, naming no flag", err)
			}
			if tc.rollback {
				if _, err := remount.Rollback(context.Background(), f.eng, f.options(t)); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				f.checkRestored(t)
				f.write(t, baseCompose) // the previous config: compose must keep the restored container
			} else {
				if _, err := remount.Resume(context.Background(), f.eng, f.options(t)); err != nil {
					t.Fatalf("resume: %v", err)
				}
				f.checkLayer(t)
				if env := f.env(t); !strings.Contains(env, "ADDED=yes") {
					t.Errorf("env after resume: got keys %v, want ADDED", envKeys(env))
				}
				f.checkNoJournal(t)
			}
			f.checkComposeKeeps(t)
			if _, err := remount.Resume(context.Background(), f.eng, f.options(t)); !errors.Is(err, remount.ErrNoJournal) {
				t.Errorf("second resume: got %v, want ErrNoJournal", err)
			}
		})
	}
}

// TestRemountSharedNamespaces remounts a service that joins another's network
// namespace and mounts its volumes (network_mode: service:, volumes_from).
func TestRemountSharedNamespaces(t *testing.T) {
	f := setup(t)
	side := `  side:
    image: moltctl-test/busybox:1
    container_name: ` + f.name + `-sidecar
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    network_mode: service:web
    volumes_from: [web]
`
	f.write(t, baseCompose+side)
	f.compose(t, "up", "-d", "side")
	f.compose(t, "exec", "-T", "side", "sh", "-c", "echo side > /side")
	f.write(t, baseCompose+strings.Replace(side, "    network_mode", "    environment: {SIDE: \"2\"}\n    network_mode", 1))
	opts := f.options(t)
	opts.Service = "side"
	if _, err := remount.Run(context.Background(), f.eng, opts); err != nil {
		t.Fatalf("remount side: %v", err)
	}
	if got := f.compose(t, "exec", "-T", "side", "sh", "-c", "cat /side /anon/a; echo $SIDE"); got != "side\nanon\n2" {
		t.Errorf("side after remount: got %q, want side, anon, 2", got)
	}
	web := f.containerID(t)
	id := f.compose(t, "ps", "-q", "side")
	if got := dockertest.Docker(t, "inspect", "-f", "{{.Name}}", id); got != "/"+f.name+"-sidecar" {
		t.Errorf("container_name: got %q, want /%s-sidecar", got, f.name)
	}
	if got := dockertest.Docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", id); got != "container:"+web {
		t.Errorf("network mode: got %q, want container:%s", got, web)
	}
	before := id
	f.compose(t, "up", "-d")
	if after := f.compose(t, "ps", "-q", "side"); after != before {
		t.Errorf("docker compose up -d recreated side: got %s, want %s", after, before)
	}
}
