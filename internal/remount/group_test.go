package remount_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// openclawCompose is openclaw's shape: the CLI runs in the gateway's network
// namespace and both bind-mount the same ./data. GEN is what a config change
// changes; CLICMD is the CLI's command.
const openclawCompose = `services:
  openclaw-gateway:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    environment: {GEN: "GW"}
    volumes: [./data:/data]
  openclaw-cli:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "CLICMD"]
    network_mode: "service:openclaw-gateway"
    environment: {GEN: "CLI"}
    volumes: [./data:/data]
`

const (
	gateway  = "openclaw-gateway"
	cli      = "openclaw-cli"
	runLoop  = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
	exitLoop = "exit 3"
)

type clawFixture struct {
	*fixture
	file string
}

func clawFile(gw, c, cmd string) string {
	return strings.NewReplacer("GEN: \"GW\"", "GEN: \""+gw+"\"", "GEN: \"CLI\"", "GEN: \""+c+"\"", "CLICMD", cmd).Replace(openclawCompose)
}

// setupClaw starts the openclaw shape (generation 1) with a file in each
// container's writable layer.
func setupClaw(tb testing.TB) *clawFixture {
	tb.Helper()
	eng := dockertest.Engine(tb)
	dockertest.Busybox(tb)
	dockertest.Compose(tb)
	f := &fixture{name: dockertest.Name("claw"), eng: eng, anon: map[string]bool{}}
	tb.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
	})
	f.dir = dockertest.Project(tb, f.name, clawFile("1", "1", runLoop))
	if err := os.MkdirAll(filepath.Join(f.dir, "data"), 0o755); err != nil {
		tb.Fatal(err)
	}
	f.copts = compose.Options{ProjectName: f.name, Files: []string{filepath.Join(f.dir, "compose.yaml")}}
	if tb, ok := tb.(*testing.T); ok {
		tb.Setenv("MOLTCTL_STATE_DIR", tb.TempDir())
	}
	f.compose(tb, "up", "-d")
	f.compose(tb, "exec", "-T", gateway, "sh", "-c", "mkdir -p /opt && echo gateway > /opt/kept && echo shared > /data/d")
	f.compose(tb, "exec", "-T", cli, "sh", "-c", "mkdir -p /opt && echo cli > /opt/kept")
	return &clawFixture{fixture: f, file: f.copts.Files[0]}
}

func (f *clawFixture) opts(tb testing.TB, service string) remount.Options {
	tb.Helper()
	o := f.options(tb)
	o.Service = service
	return o
}

func (f *clawFixture) id(tb testing.TB, service string) string {
	tb.Helper()
	return f.compose(tb, "ps", "-a", "-q", service)
}

// check checks that both services run with their layers, the env of the
// generations given, the CLI in the gateway's network namespace, no journal
// left, and that a plain docker compose up -d of that file recreates nothing.
func (f *clawFixture) check(tb testing.TB, gw, c string) {
	tb.Helper()
	f.checkUp(tb, gw, c, true)
}

// checkRolledBack is check after a rollback in which the gateway got a new
// container: compose's config hash of the CLI names the gateway's container
// ID, so compose would recreate the CLI (moltctl remount applies it); only
// the gateway is checked against docker compose up.
func (f *clawFixture) checkRolledBack(tb testing.TB, sameGateway bool) {
	tb.Helper()
	f.checkUp(tb, "1", "1", sameGateway)
}

func (f *clawFixture) checkUp(tb testing.TB, gw, c string, both bool) {
	tb.Helper()
	for _, tc := range []struct{ service, kept, gen string }{{gateway, "gateway", gw}, {cli, "cli", c}} {
		got := f.compose(tb, "exec", "-T", tc.service, "sh", "-c", "cat /opt/kept /data/d; echo $GEN")
		if want := tc.kept + "\nshared\n" + tc.gen; got != want {
			tb.Errorf("%s: got %q, want %q (layer, bind, env)", tc.service, got, want)
		}
	}
	gwID, cliID := f.id(tb, gateway), f.id(tb, cli)
	if got := dockertest.Docker(tb, "inspect", "-f", "{{.HostConfig.NetworkMode}}", cliID); got != "container:"+gwID {
		tb.Errorf("cli network mode: got %q, want container:%s", got, gwID)
	}
	if a, b := f.compose(tb, "exec", "-T", gateway, "hostname"), f.compose(tb, "exec", "-T", cli, "hostname"); a != b {
		tb.Errorf("hostnames: gateway %q, cli %q, want the same (one namespace)", a, b)
	}
	for _, p := range []string{remount.JournalPath(f.name), remount.GroupJournalPath(f.name)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			tb.Errorf("journal %s: got %v, want it removed", p, err)
		}
	}
	f.write(tb, clawFile(gw, c, runLoop))
	if !both {
		f.compose(tb, "up", "-d", "--no-deps", gateway)
		if g2 := f.id(tb, gateway); g2 != gwID {
			tb.Errorf("docker compose up -d %s recreated it: %s -> %s", gateway, gwID, g2)
		}
		return
	}
	f.compose(tb, "up", "-d")
	if g2, c2 := f.id(tb, gateway), f.id(tb, cli); g2 != gwID || c2 != cliID {
		tb.Errorf("docker compose up -d recreated: gateway %s -> %s, cli %s -> %s", gwID, g2, cliID, c2)
	}
}

// TestRemountJoined remounts the gateway (the CLI is remounted after it,
// joined to its new container) and then the CLI alone.
func TestRemountJoined(t *testing.T) {
	f := setupClaw(t)
	f.write(t, clawFile("2", "2", runLoop))
	dry := f.opts(t, gateway)
	dry.DryRun = true
	res, err := remount.Run(context.Background(), f.eng, dry)
	if err != nil || len(res.Joined) != 1 || res.Joined[0].Service != cli {
		t.Fatalf("dry run: got %+v, %v, want the cli joined", res, err)
	}
	gwOld := f.id(t, gateway)
	res, err = remount.Run(context.Background(), f.eng, f.opts(t, gateway))
	if err != nil {
		t.Fatalf("remount %s: %v", gateway, err)
	}
	if len(res.Joined) != 1 || res.Joined[0].Service != cli || res.NewID == "" || res.NewID == gwOld {
		t.Errorf("result: got %+v, want the gateway remounted and the cli joined", res)
	}
	f.check(t, "2", "2")

	gw := f.id(t, gateway)
	f.write(t, clawFile("2", "3", runLoop))
	if _, err := remount.Run(context.Background(), f.eng, f.opts(t, cli)); err != nil {
		t.Fatalf("remount %s: %v", cli, err)
	}
	if got := f.id(t, gateway); got != gw {
		t.Errorf("gateway after remounting the cli alone: got %s, want %s", got, gw)
	}
	f.check(t, "2", "3")
}

// TestRemountJoinedRollsBack fails each step of the gateway's group remount and
// checks both services are back on their previous config and layers, running
// in one namespace.
func TestRemountJoinedRollsBack(t *testing.T) {
	f := setupClaw(t)
	for _, tc := range []struct {
		method      string
		n           int
		sameGateway bool // the failure came before compose replaced the gateway's container
	}{
		{"ContainerStop", 1, true},    // the cli
		{"ContainerStop", 2, true},    // the gateway
		{"ContainerCommit", 1, true},  // the gateway
		{"ContainerCommit", 2, false}, // the cli
		{"ContainerRemove", 1, false}, // compose's gateway container
		{"ContainerCreate", 2, false}, // the gateway on its snapshot (the 1st is the engine lock)
		{"ContainerStart", 1, false},  // the gateway
		{"ContainerCreate", 3, false}, // the cli on its snapshot
		{"ContainerStart", 2, false},  // the cli
	} {
		t.Run(fmt.Sprintf("%s#%d", tc.method, tc.n), func(t *testing.T) {
			f.write(t, clawFile("2", "2", runLoop))
			eng := &faulty{Engine: f.eng, method: tc.method, n: tc.n, calls: map[string]int{}}
			_, err := remount.Run(context.Background(), eng, f.opts(t, gateway))
			if !errors.Is(err, errInjected) || !errors.Is(err, remount.ErrRolledBack) {
				t.Fatalf("remount: got %v, want the injected failure, rolled back", err)
			}
			f.checkRolledBack(t, tc.sameGateway)
		})
	}
	t.Run("cli exits", func(t *testing.T) {
		f.write(t, clawFile("2", "2", exitLoop))
		_, err := remount.Run(context.Background(), f.eng, f.opts(t, gateway))
		if !errors.Is(err, remount.ErrRolledBack) {
			t.Fatalf("remount: got %v, want a rollback", err)
		}
		f.checkRolledBack(t, false)
	})
}

// TestRemountJoinedKilled kills the gateway's group remount right after each
// of its journal steps and resumes or rolls it back, naming either service.
func TestRemountJoinedKilled(t *testing.T) {
	for _, tc := range []struct {
		step        string
		service     string // the service named to --resume or --rollback
		rollback    bool
		sameGateway bool
	}{
		{"group-begun", gateway, false, false},
		{"group-stopped", cli, true, true},
		{"committed", gateway, true, true}, // the gateway's own remount, before compose
		{"composed", gateway, true, false}, // the gateway's own remount, after compose
		{"group-done", gateway, false, false},
		{"group-done", cli, true, false},
		{"group-remounted", cli, false, false},
	} {
		name := "resume"
		if tc.rollback {
			name = "rollback"
		}
		t.Run(tc.step+"/"+name+"/"+tc.service, func(t *testing.T) {
			f := setupClaw(t)
			f.write(t, clawFile("2", "2", runLoop))
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "REMOUNT_TEST_CHILD=run", "REMOUNT_TEST_PROJECT="+f.name, "REMOUNT_TEST_SERVICE="+gateway,
				"REMOUNT_TEST_FILE="+f.file, crashAfter(tc.step))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !ee.ProcessState.Sys().(interface{ Signaled() bool }).Signaled() {
				t.Fatalf("child: got %v (%s), want it killed", err, out)
			}
			if _, err := remount.Run(context.Background(), f.eng, f.opts(t, cli)); !errors.Is(err, remount.ErrInterrupted) {
				t.Errorf("remount over a journal: got %v, want ErrInterrupted", err)
			}
			rep, err := remount.Status(context.Background(), f.eng, remount.StatusOptions{Project: f.project(t)})
			if err != nil || rep.InterruptedService != gateway {
				t.Errorf("status after the kill: got %+v, %v, want the interrupted remount of %s", rep, err, gateway)
			}
			do := remount.Resume
			if tc.rollback {
				do = remount.Rollback
			}
			if _, err := do(context.Background(), f.eng, f.opts(t, tc.service)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if tc.rollback {
				f.checkRolledBack(t, tc.sameGateway)
			} else {
				f.check(t, "2", "2")
			}
		})
	}
}

// TestRemountJoinedRefuses: a service that joins another is checked before
// anything changes.
func TestRemountJoinedRefuses(t *testing.T) {
	f := setupClaw(t)
	gw, c := f.id(t, gateway), f.id(t, cli)
	other := dockertest.Name("clawimg") + ":1"
	build := exec.Command("docker", "build", "-q", "-t", other, "-")
	build.Stdin = strings.NewReader("FROM " + dockertest.BusyboxImage + "\nLABEL rebuilt=1\n")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v: %s", other, err, out)
	}
	t.Cleanup(func() { dockertest.Run("docker", "rmi", other) })
	content := clawFile("2", "2", runLoop)
	i := strings.LastIndex(content, dockertest.BusyboxImage)
	f.write(t, content[:i]+other+content[i+len(dockertest.BusyboxImage):])
	_, err := remount.Run(context.Background(), f.eng, f.opts(t, gateway))
	if !errors.Is(err, remount.ErrUnsupported) || !strings.Contains(err.Error(), cli) {
		t.Errorf("remount: got %v, want ErrUnsupported naming %s", err, cli)
	}
	if g2, c2 := f.id(t, gateway), f.id(t, cli); g2 != gw || c2 != c {
		t.Errorf("containers: got %s %s, want %s %s unchanged", g2, c2, gw, c)
	}
	ins, err := f.eng.ContainerInspect(context.Background(), c, client.ContainerInspectOptions{})
	if err != nil || !ins.Container.State.Running {
		t.Errorf("cli: got %v, want it running", err)
	}
}
