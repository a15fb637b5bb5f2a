package migrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/volumes"
)

// claw is openclaw's compose shape, running: the CLI in the gateway's network
// namespace (network_mode: "service:openclaw-gateway"), both bind-mounting
// ./data, a file in each writable layer.
type claw struct {
	name, file string
	before     []byte
	opts       RunOptions
}

const (
	clawGateway = "openclaw-gateway"
	clawCLI     = "openclaw-cli"
)

func newClaw(tb testing.TB) *claw {
	tb.Helper()
	loop := `["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]`
	name, file := newProject(tb, "migclaw", []string{"data"}, `  openclaw-gateway:
    image: `+dockertest.Busybox(tb)+`
    command: `+loop+`
    volumes: [./data:/data]
  openclaw-cli:
    image: `+dockertest.Busybox(tb)+`
    command: `+loop+`
    network_mode: "service:openclaw-gateway"
    volumes: [./data:/data]
`)
	c := &claw{name: name, file: file}
	if err := os.MkdirAll(filepath.Join(filepath.Dir(file), "data"), 0o755); err != nil {
		tb.Fatal(err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(file), "data", "a.txt"), []byte("alpha\n"), 0o644)
	c.compose(tb, "up", "-d")
	for _, s := range []string{clawGateway, clawCLI} {
		c.compose(tb, "exec", "-T", s, "sh", "-c", "echo "+s+" >/tmp/layer.txt")
	}
	c.before, _ = os.ReadFile(file)
	c.opts = RunOptions{Project: selecting(file), Helper: volumes.HelperOptions{Binary: staticMoltctl(tb)},
		WaitTimeout: time.Second, Plan: PlanOptions{Owner: "0:0"}}
	return c
}

func (c *claw) compose(tb testing.TB, args ...string) string {
	tb.Helper()
	return dockertest.Docker(tb, append([]string{"compose", "-f", c.file}, args...)...)
}

func (c *claw) id(tb testing.TB, service string) string {
	tb.Helper()
	return c.compose(tb, "ps", "-a", "-q", service)
}

// check fails unless both services run with their layers and /data mounted
// as mount, the CLI in the gateway's network namespace; with composeKeeps, a
// plain docker compose up -d then recreates nothing.
func (c *claw) check(tb testing.TB, mount string, composeKeeps bool) {
	tb.Helper()
	for _, s := range []string{clawGateway, clawCLI} {
		if got := c.compose(tb, "exec", "-T", s, "cat", "/tmp/layer.txt", "/data/a.txt"); got != s+"\nalpha" {
			tb.Errorf("%s: got %q from the writable layer and /data, want %s and alpha", s, got, s)
		}
		if got := dockertest.Docker(tb, "inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Type}}{{end}}{{end}}`, c.id(tb, s)); got != mount {
			tb.Errorf("%s: got /data mounted as %q, want %q", s, got, mount)
		}
	}
	gw, cli := c.id(tb, clawGateway), c.id(tb, clawCLI)
	if got := dockertest.Docker(tb, "inspect", "-f", "{{.HostConfig.NetworkMode}}", cli); got != "container:"+gw {
		tb.Errorf("cli network mode: got %q, want container:%s", got, gw)
	}
	if !composeKeeps {
		return
	}
	c.compose(tb, "up", "-d")
	if g2, c2 := c.id(tb, clawGateway), c.id(tb, clawCLI); g2 != gw || c2 != cli {
		tb.Errorf("docker compose up -d recreated: gateway %.12s -> %.12s, cli %.12s -> %.12s", gw, g2, cli, c2)
	}
}

func (c *claw) checkRolledBack(tb testing.TB, composeKeeps bool) {
	tb.Helper()
	if got, _ := os.ReadFile(c.file); string(got) != string(c.before) {
		tb.Errorf("compose file after rollback: got\n%s\nwant\n%s", got, c.before)
	}
	c.check(tb, "bind", composeKeeps)
	if _, err := os.Stat(JournalPath(c.name)); err == nil {
		tb.Errorf("got the journal left after the rollback")
	}
}

// TestRunJoined is the openclaw shape through `moltctl migrate --yes` and
// `migrate --rollback`: the gateway is remounted first, the CLI after it,
// joined to its new container; both keep their layers.
func TestRunJoined(t *testing.T) {
	c := newClaw(t)
	eng := dockertest.Engine(t)
	out, err := exec.Command(staticMoltctl(t), "-f", c.file, "migrate", "--yes", "--quiet", "--owner", "0:0", "--wait-timeout", "1s").CombinedOutput()
	if err != nil {
		t.Fatalf("moltctl migrate --yes: %v\n%s", err, out)
	}
	c.check(t, "volume", true)
	if _, err := Rollback(context.Background(), eng, fresh(t, c.opts)); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	c.checkRolledBack(t, true)
}

// faultyRun fails the n-th call (1-based) of ContainerCommit or ContainerStart.
type faultyRun struct {
	RunEngine
	method string
	n      int
	calls  map[string]int
}

var errInjected = errors.New("injected failure")

func (e *faultyRun) hit(m string) error {
	e.calls[m]++
	if m == e.method && e.calls[m] == e.n {
		return fmt.Errorf("%s: %w", m, errInjected)
	}
	return nil
}

func (e *faultyRun) ContainerCommit(ctx context.Context, id string, o client.ContainerCommitOptions) (client.ContainerCommitResult, error) {
	if err := e.hit("ContainerCommit"); err != nil {
		return client.ContainerCommitResult{}, err
	}
	return e.RunEngine.ContainerCommit(ctx, id, o)
}

func (e *faultyRun) ContainerRename(ctx context.Context, id string, o client.ContainerRenameOptions) (client.ContainerRenameResult, error) {
	if err := e.hit("ContainerRename"); err != nil {
		return client.ContainerRenameResult{}, err
	}
	return e.RunEngine.ContainerRename(ctx, id, o)
}

// TestRunJoinedFails fails the remount of the gateway or of the CLI during the
// migration, then rolls the migration back.
func TestRunJoinedFails(t *testing.T) {
	for _, tc := range []struct {
		method       string
		n            int
		composeKeeps bool // nothing left naming a replaced container
	}{
		{"ContainerCommit", 1, false}, // the gateway: rolled back, the CLI rejoined on rollback
		{"ContainerCommit", 2, true},  // the CLI: the gateway is remounted, rolled back by migrate
	} {
		t.Run(fmt.Sprintf("%s#%d", tc.method, tc.n), func(t *testing.T) {
			c := newClaw(t)
			eng := &faultyRun{RunEngine: dockertest.Engine(t), method: tc.method, n: tc.n, calls: map[string]int{}}
			if _, err := Run(context.Background(), eng, fresh(t, c.opts)); !errors.Is(err, errInjected) {
				t.Fatalf("migrate: got %v, want the injected failure", err)
			}
			if _, err := Rollback(context.Background(), eng, fresh(t, c.opts)); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			c.checkRolledBack(t, tc.composeKeeps)
		})
	}
}

// TestRunJoinedKilled kills `moltctl migrate --yes` inside the gateway's remount
// and after the remount step, then resumes or rolls back.
func TestRunJoinedKilled(t *testing.T) {
	for _, tc := range []struct{ journal, step, mode string }{
		{"remount", "composed", "rollback"},
		{"remount", "started", "resume"},
		{"migrate", StepRemounted, "rollback"},
	} {
		t.Run(tc.step+"/"+tc.mode, func(t *testing.T) {
			c := newClaw(t)
			eng := dockertest.Engine(t)
			cmd := exec.Command(staticMoltctl(t), "-f", c.file, "migrate", "--yes", "--quiet", "--owner", "0:0", "--wait-timeout", "1s")
			cmd.Env = append(os.Environ(), crashAfter(tc.journal, tc.step))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("got %v (%s), want the child killed after %s", err, out, tc.step)
			}
			if tc.mode == "resume" {
				if _, err := Resume(context.Background(), eng, fresh(t, c.opts)); err != nil {
					t.Fatal(err)
				}
				c.check(t, "volume", true)
				return
			}
			if _, err := Rollback(context.Background(), eng, fresh(t, c.opts)); err != nil {
				t.Fatal(err)
			}
			c.checkRolledBack(t, true)
		})
	}
}
