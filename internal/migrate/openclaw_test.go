package migrate

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/volumes"
)

// TestMigrateOpenclawLayout is openclaw's own layout end to end: the config
// directory and the workspace inside it on the host, both root-owned, bound at
// ~/.openclaw and ~/.openclaw/workspace of an image running as node (and of a
// cli service of a profile not active). `moltctl migrate --yes` makes each its
// own volume owned by node; node then writes into both, the workspace's data
// exists once (the config volume holds only its empty mount point), and a
// plain `docker compose up -d` recreates nothing.
func TestMigrateOpenclawLayout(t *testing.T) {
	image := userImage(t, "node")
	name, file := newProject(t, "migclaw", []string{"openclaw", "workspace"}, `  gateway:
    image: `+image+`
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes:
      - ${OPENCLAW_CONFIG_DIR}:/home/node/.openclaw
      - ${OPENCLAW_WORKSPACE_DIR}:/home/node/.openclaw/workspace
  cli:
    image: `+image+`
    profiles: [cli]
    command: ["sh", "-c", "ls /home/node/.openclaw"]
    volumes:
      - ${OPENCLAW_CONFIG_DIR}:/home/node/.openclaw
      - ${OPENCLAW_WORKSPACE_DIR}:/home/node/.openclaw/workspace
`)
	dir := filepath.Dir(file)
	dockertest.WriteFile(t, filepath.Join(dir, ".env"), "OPENCLAW_CONFIG_DIR=./openclaw\nOPENCLAW_WORKSPACE_DIR=./openclaw/workspace\n", 0o644)
	dockertest.WriteFile(t, filepath.Join(dir, "openclaw", "openclaw.json"), `{"gateway": {}}`+"\n", 0o644)
	dockertest.WriteFile(t, filepath.Join(dir, "openclaw", "workspace", "AGENTS.md"), "# agents\n", 0o644)
	composeCmd := func(args ...string) (string, error) {
		b, err := exec.Command("docker", append([]string{"compose", "-f", file}, args...)...).CombinedOutput()
		return string(b), err
	}
	if out, err := composeCmd("up", "-d"); err != nil {
		t.Fatalf("docker compose up -d: %v\n%s", err, out)
	}
	write := "echo state >/home/node/.openclaw/node.json && echo notes >/home/node/.openclaw/workspace/NOTES.md"
	if out, err := composeCmd("exec", "-T", "gateway", "sh", "-c", write); err == nil {
		t.Fatalf("got node writing into the root-owned binds before the migration (%s), want Permission denied", out)
	}

	cmd := exec.Command(staticMoltctl(t), "-f", file, "migrate", "--yes", "--quiet", "--wait-timeout", "2s")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("moltctl migrate --yes: %v\n%s", err, out)
	}
	if out, err := composeCmd("exec", "-T", "gateway", "sh", "-c", write); err != nil {
		t.Errorf("got node writing into ~/.openclaw and its workspace: %v %s, want both writable", err, out)
	}
	rewritten, _ := os.ReadFile(file)
	for _, m := range []string{"- openclaw:/home/node/.openclaw\n", "- workspace:/home/node/.openclaw/workspace\n"} {
		if strings.Count(string(rewritten), m) != 2 {
			t.Errorf("got compose file\n%s\nwant %q for gateway and cli", rewritten, m)
		}
	}

	// The config volume holds the config and the empty mount point owned by
	// node; the workspace's files are in the workspace volume only.
	list := func(vol string) string {
		return dockertest.Docker(t, "run", "--rm", "-v", vol+":/v:ro", dockertest.Busybox(t),
			"sh", "-c", "cd /v && find . -exec stat -c '%u:%g %n' {} + | sort")
	}
	if got, want := list(name+"_openclaw"), "1000:1000 .\n1000:1000 ./node.json\n1000:1000 ./openclaw.json\n1000:1000 ./workspace"; got != want {
		t.Errorf("got volume %s_openclaw\n%s\nwant\n%s", name, got, want)
	}
	if got, want := list(name+"_workspace"), "1000:1000 .\n1000:1000 ./AGENTS.md\n1000:1000 ./NOTES.md"; got != want {
		t.Errorf("got volume %s_workspace\n%s\nwant\n%s", name, got, want)
	}

	id := strings.TrimSpace(dockertest.Docker(t, "compose", "-f", file, "ps", "-q", "gateway"))
	up, err := composeCmd("up", "-d")
	if err != nil || !strings.Contains(up, "Running") || strings.Contains(up, "Recreate") || strings.Contains(up, "not created by Docker Compose") {
		t.Errorf("got `docker compose up -d` %v:\n%s\nwant gateway Running, no recreate, no volume warning", err, up)
	}
	if got := strings.TrimSpace(dockertest.Docker(t, "compose", "-f", file, "ps", "-q", "gateway")); got != id {
		t.Errorf("got container %s after compose up, want %s kept", got, id)
	}
	// The cli of the inactive profile starts on the volumes.
	if out, err := composeCmd("run", "--rm", "-T", "cli"); err != nil || !strings.Contains(out, "node.json") {
		t.Errorf("got `docker compose run cli` %v:\n%s\nwant it to see node.json in the config volume", err, out)
	}

	// Rolled back with --copy-back, each volume lands in its place on the host:
	// the outer one first, then the workspace into it.
	cmd = exec.Command(staticMoltctl(t), "-f", file, "migrate", "--rollback", "--copy-back", "--quiet", "--wait-timeout", "2s")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("moltctl migrate --rollback --copy-back: %v\n%s", err, out)
	}
	for p, want := range map[string]string{"node.json": "state\n", "openclaw.json": `{"gateway": {}}` + "\n",
		"workspace/AGENTS.md": "# agents\n", "workspace/NOTES.md": "notes\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, "openclaw", p)); err != nil || string(got) != want {
			t.Errorf("got %s on the host %q (%v) after the copy-back, want %q", p, got, err, want)
		}
	}
}

// TestRunRefusesRunningInactive: a service of a profile not active that runs
// on a bind the plan converts would go on writing to the host; the migration
// refuses before changing anything.
func TestRunRefusesRunningInactive(t *testing.T) {
	name, file := newProject(t, "miginact", []string{"state"}, `  app:
    image: `+dockertest.Busybox(t)+`
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes: ["./state:/data"]
  side:
    image: `+dockertest.Busybox(t)+`
    profiles: [side]
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes: ["./state:/data"]
`)
	dockertest.WriteFile(t, filepath.Join(filepath.Dir(file), "state", "a.txt"), "alpha\n", 0o644)
	// Before the project's own `down`, which leaves the inactive profile's container.
	t.Cleanup(func() { dockertest.Run("docker", "compose", "-f", file, "--profile", "side", "down", "--timeout", "0") })
	dockertest.Docker(t, "compose", "-f", file, "--profile", "side", "up", "-d")
	before, _ := os.ReadFile(file)
	opts := RunOptions{Project: selecting(file), Helper: volumes.HelperOptions{Binary: staticMoltctl(t)},
		WaitTimeout: time.Second}
	_, err := Run(context.Background(), dockertest.Engine(t), fresh(t, opts))
	if !errors.Is(err, remount.ErrUnsupported) || !strings.Contains(err.Error(), "service side") {
		t.Fatalf("got %v, want a refusal naming service side", err)
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Errorf("got the compose file changed by a refused migration")
	}
	if _, err := dockertest.Run("docker", "volume", "inspect", name+"_state"); err == nil {
		t.Errorf("got volume %s_state created by a refused migration", name)
	}
}
