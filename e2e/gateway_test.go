package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// deployment is one compose project made of the repository's docker-compose.yml and
// an override naming the test's images, container and volumes.
type deployment struct {
	tb        testing.TB
	project   string
	container string // the gateway's
	cli       string // the cli service's, when it is started with up
	files     []string
}

// override is what a test adds to the override file: YAML lines under each service
// (indented four spaces) and at the top level.
type override struct{ gateway, cli, top string }

// deploy writes the override file and registers `docker compose down -v` for the
// project.
func deploy(tb testing.TB, img images, o override) *deployment {
	tb.Helper()
	dockertest.Compose(tb)
	d := &deployment{tb: tb, project: dockertest.Name("moltctle2e"), container: dockertest.Name("moltbot-e2e-"), cli: dockertest.Name("moltbot-cli-e2e-")}
	override := fmt.Sprintf(`services:
  moltbot-gateway:
    image: %[1]s
    pull_policy: never
    container_name: %[2]s
    healthcheck:
      interval: 1s
      retries: 60
%[3]s
  moltbot-cli:
    image: %[1]s
    pull_policy: never
    container_name: %[4]s
%[5]s
%[6]s`, img.Gateway, d.container, o.gateway, d.cli, o.cli, o.top)
	path := filepath.Join(tb.TempDir(), "compose.override.yaml")
	if err := os.WriteFile(path, []byte(override), 0o644); err != nil {
		tb.Fatal(err)
	}
	d.files = []string{filepath.Join(repoRoot(tb), "docker-compose.yml"), path}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("docker logs %s:\n%s", d.container, d.logs())
		}
		d.compose("--profile", "cli", "down", "-v", "--remove-orphans", "--timeout", "2")
	})
	return d
}

func (d *deployment) compose(args ...string) (string, error) {
	a := []string{"compose", "-p", d.project, "--project-directory", repoRoot(d.tb)}
	for _, f := range d.files {
		a = append(a, "-f", f)
	}
	return dockertest.Run("docker", append(a, args...)...)
}

// up starts the gateway and waits until its health check passes.
func (d *deployment) up() {
	d.tb.Helper()
	if out, err := d.compose("up", "--detach", "--no-build", "--pull", "never", "--wait", "--wait-timeout", "120"); err != nil {
		d.tb.Fatalf("docker compose up: %v %s\ncontainer logs:\n%s", err, out, d.logs())
	}
}

// logs returns the container's output, stdout and stderr interleaved.
func (d *deployment) logs() string {
	out, err := exec.Command("docker", "logs", d.container).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(docker logs: %v) %s", err, out)
	}
	return string(out)
}

// healthy waits until the gateway's health check passes, or fails the test when it
// reports unhealthy or a minute goes by.
func (d *deployment) healthy() {
	d.tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := dockertest.Docker(d.tb, "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", d.container)
		switch {
		case st == "running healthy":
			return
		case strings.HasSuffix(st, "unhealthy"), time.Now().After(deadline):
			d.tb.Fatalf("gateway state: got %q, want running healthy", st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// exec runs a command in the gateway container (as root, docker exec's default here).
func (d *deployment) exec(args ...string) string {
	d.tb.Helper()
	return dockertest.Docker(d.tb, append([]string{"exec", d.container}, args...)...)
}

// stable checks the gateway is running and has not restarted, a few seconds after it
// became healthy: a crash loop would have restarted it by then.
func (d *deployment) stable() {
	d.tb.Helper()
	time.Sleep(3 * time.Second)
	state := dockertest.Docker(d.tb, "inspect", "--format", "{{.State.Status}} {{.RestartCount}}", d.container)
	if state != "running 0" {
		d.tb.Errorf("state and restart count: got %q, want %q", state, "running 0")
	}
}

// appStatus returns /proc/PID/status of the app: the gateway process whose parent is
// PID 1 (docker-init, from `init: true`; the app replaced bootstrap by exec).
func (d *deployment) appStatus() map[string]string {
	d.tb.Helper()
	out := d.exec("sh", "-c", `for f in /proc/[0-9]*/status; do
	p=${f%/status}
	grep -q '^PPid:[[:space:]]*1$' "$f" && tr '\0' ' ' <"$p/cmdline" | grep -q ' gateway ' && echo "$p"
done; true`)
	pids := strings.Fields(out)
	if len(pids) != 1 {
		d.tb.Fatalf("gateway processes whose parent is PID 1: got %q, want exactly one", pids)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(d.exec("cat", pids[0]+"/status"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return fields
}

// statusField returns the value of the "KEY: value" line of `moltbot status`.
func statusField(status, key string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, key+": "); ok {
			return v
		}
	}
	return ""
}

// checkDropped checks the app runs as node (1000:1000) with node's groups only (users,
// 100, in the stand-in's /etc/group; never root's disk, 6, or 0), no capabilities, not
// even in the bounding set, and no-new-privs.
func checkDropped(tb testing.TB, st map[string]string) {
	tb.Helper()
	for _, c := range []struct{ key, want string }{
		{"Uid", "1000 1000 1000 1000"},
		{"Gid", "1000 1000 1000 1000"},
		{"CapInh", "0000000000000000"},
		{"CapPrm", "0000000000000000"},
		{"CapEff", "0000000000000000"},
		{"CapAmb", "0000000000000000"},
		{"CapBnd", "0000000000000000"},
		{"NoNewPrivs", "1"},
	} {
		if got := st[c.key]; got != c.want {
			tb.Errorf("app %s: got %q, want %q", c.key, got, c.want)
		}
	}
	groups := map[string]bool{}
	for _, g := range strings.Fields(st["Groups"]) {
		groups[g] = true
	}
	delete(groups, "1000") // the primary group may be listed too
	if len(groups) != 1 || !groups["100"] {
		tb.Errorf("app Groups: got %q, want node's: 100 (users), optionally 1000", st["Groups"])
	}
}

// ownedBy checks the paths inside the container belong to uid:gid.
func (d *deployment) ownedBy(owner string, paths ...string) {
	d.tb.Helper()
	out := d.exec(append([]string{"stat", "-c", "%u:%g %n"}, paths...)...)
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, owner+" ") {
			d.tb.Errorf("owner: got %q, want %s", line, owner)
		}
	}
}

// legacyDir makes the state an older image left on the host: a ~/.clawdbot written
// as node (1000:1000) holding clawdbot.json with a unique marker.
func legacyDir(tb testing.TB) (dir, marker string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		dockertest.Unavailable(tb, "needs root to give the legacy directory to uid 1000")
	}
	dir = filepath.Join(tb.TempDir(), "clawdbot")
	marker = dockertest.Name("marker-")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	config := filepath.Join(dir, "clawdbot.json")
	if err := os.WriteFile(config, []byte(`{"marker":"`+marker+`"}`+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	for _, p := range []string{dir, config} {
		if err := os.Chown(p, 1000, 1000); err != nil {
			tb.Fatal(err)
		}
	}
	return dir, marker
}

// legacyMount bind-mounts dir where the older image kept its state (renaming it is
// EBUSY), and empties OPENCLAW_STATE_DIR so the app reads its state from home
// (~/.openclaw, else a legacy name).
func legacyMount(dir string) string {
	return fmt.Sprintf(`    environment:
      OPENCLAW_STATE_DIR: ""
    volumes:
      - %s:/home/node/.clawdbot
`, dir)
}

// rootOwnedVolume makes a volume as root would before the image ever ran: root-owned
// root directory, a subdirectory and a file the app must keep. As node the app would
// hit EACCES.
func rootOwnedVolume(tb testing.TB) string {
	tb.Helper()
	vol := dockertest.Name("moltctle2e-data-")
	dockertest.Docker(tb, "volume", "create", vol)
	tb.Cleanup(func() { dockertest.Run("docker", "volume", "rm", "-f", vol) })
	dockertest.Docker(tb, "run", "--rm", "-v", vol+":/data", dockertest.Busybox(tb), "sh", "-c",
		"mkdir -p /data/cron && echo keep-me >/data/cron/jobs.json && chown -R 0:0 /data && chmod -R go-w /data")
	return vol
}

// TestGateway runs the gateway image with the repository's docker-compose.yml.
func TestGateway(t *testing.T) {
	img := productImages(t)

	t.Run("image config", func(t *testing.T) {
		for _, c := range []struct{ format, want string }{
			{"{{json .Config.Entrypoint}}", `["moltctl","bootstrap","--"]`},
			{"{{json .Config.Cmd}}", `["moltbot","gateway","--allow-unconfigured"]`},
			{"{{.Config.User}}", ""},
			{"{{json .Config.Healthcheck.Test}}", `["CMD","node","-e","fetch('http://127.0.0.1:18789/healthz').then((r)=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]`},
		} {
			if got := dockertest.Docker(t, "image", "inspect", "--format", c.format, img.Gateway); got != c.want {
				t.Errorf("%s: got %s, want %s", c.format, got, c.want)
			}
		}
	})

	t.Run("fresh volumes", func(t *testing.T) {
		d := deploy(t, img, override{})
		d.up()
		st := d.appStatus()
		checkDropped(t, st)

		status := d.exec("moltbot", "status")
		for _, want := range []string{"state: /var/lib/moltbot", "user: uid=1000 gid=1000 home=/home/node", "gateway: running"} {
			if !strings.Contains(status, want) {
				t.Errorf("moltbot status printed\n%s\nwant a line %q", status, want)
			}
		}
		if got := d.exec("openclaw", "--version"); got != img.OpenclawVersion {
			t.Errorf("openclaw --version: got %q, want the pinned %q", got, img.OpenclawVersion)
		}
		log := d.exec("cat", "/var/lib/moltbot/logs/gateway.log")
		if !strings.Contains(log, "uid=1000 gid=1000") {
			t.Errorf("gateway.log: got %q, want the app's line written as uid=1000 gid=1000", log)
		}
		// Everything in the state directories is node's, including what `docker exec
		// moltbot status` (root) may have written.
		if out := d.exec("find", "/var/lib/moltbot", "/home/node/clawd", "!", "-user", "1000"); out != "" {
			t.Errorf("entries not owned by node in the state directories:\n%s", out)
		}
		d.ownedBy("1000:1000", "/var/lib/moltbot", "/home/node/clawd", "/home/node/clawd/HEARTBEAT.md")

		// The CLI service: its own bootstrap on the same volumes, in the gateway's network.
		out, err := d.compose("--profile", "cli", "run", "--rm", "-T", "--no-deps", "moltbot-cli", "status")
		if err != nil {
			t.Fatalf("docker compose run moltbot-cli status: %v %s", err, out)
		}
		for _, want := range []string{"user: uid=1000 gid=1000", "gateway: running"} {
			if !strings.Contains(out, want) {
				t.Errorf("moltbot-cli status printed\n%s\nwant a line %q", out, want)
			}
		}
		d.stable()
	})

	t.Run("root-owned volume", func(t *testing.T) {
		vol := rootOwnedVolume(t)

		d := deploy(t, img, override{top: fmt.Sprintf("volumes:\n  moltbot_data:\n    external: true\n    name: %s\n", vol)})
		d.up()
		if got := d.exec("cat", "/var/lib/moltbot/cron/jobs.json"); got != "keep-me" {
			t.Errorf("jobs.json: got %q, want %q", got, "keep-me")
		}
		d.ownedBy("1000:1000", "/var/lib/moltbot", "/var/lib/moltbot/cron", "/var/lib/moltbot/cron/jobs.json", "/var/lib/moltbot/logs/gateway.log")
		if log := d.exec("cat", "/var/lib/moltbot/logs/gateway.log"); !strings.Contains(log, "uid=1000") {
			t.Errorf("gateway.log: got %q, want the app's line", log)
		}
		checkDropped(t, d.appStatus())
		d.stable()
	})

	t.Run("started as node on a root-owned volume", func(t *testing.T) {
		// No root, no chown: bootstrap stops with one line naming the directory and
		// the fixes, before the app could fail with EACCES.
		vol := rootOwnedVolume(t)
		name := dockertest.Name("moltctle2e-node-")
		t.Cleanup(func() { dockertest.Run("docker", "rm", "-f", name) })
		out, err := exec.Command("docker", "run", "--name", name, "--user", "node",
			"-v", vol+":/var/lib/moltbot", img.Gateway).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("docker run --user node: got %v, want exit code 1; output:\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 {
			t.Errorf("output: got %d lines, want one:\n%s", len(lines), out)
		}
		for _, want := range []string{"/var/lib/moltbot", "0:0", "moltctl migrate"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output: got %q, want it to name %q", out, want)
			}
		}
		if strings.Contains(string(out), "EACCES") {
			t.Errorf("output: got %q, the app ran", out)
		}
	})

	t.Run("bind-mounted legacy directory", func(t *testing.T) {
		legacy, marker := legacyDir(t)
		d := deploy(t, img, override{gateway: legacyMount(legacy)})
		d.up()
		d.stable()

		logs := d.logs()
		if !strings.Contains(logs, "moltctl bootstrap:") || !strings.Contains(logs, "/home/node/.clawdbot") {
			t.Errorf("docker logs: got\n%s\nwant bootstrap's warning about /home/node/.clawdbot", logs)
		}

		status := d.exec("moltbot", "status")
		if !strings.Contains(status, "state: /home/node/.openclaw") || !strings.Contains(status, "gateway: running") {
			t.Errorf("moltbot status printed\n%s\nwant state /home/node/.openclaw and the gateway running", status)
		}
		cfg := statusField(status, "config")
		if got := d.exec("cat", cfg); !strings.Contains(got, marker) {
			t.Errorf("the app's config %s: got %q, want the legacy state (%s)", cfg, got, marker)
		}
		// The host directory is still there, a directory, with its data.
		if fi, err := os.Lstat(legacy); err != nil || !fi.IsDir() {
			t.Errorf("legacy directory on the host: %v, %v; want it in place", fi, err)
		}
		checkDropped(t, d.appStatus())
	})

	t.Run("gateway and cli start together on one legacy directory", func(t *testing.T) {
		// As in upstream's compose file, both containers bind-mount the same legacy
		// state, and their bootstraps run at the same moment.
		legacy, marker := legacyDir(t)
		mount := legacyMount(legacy)
		d := deploy(t, img, override{gateway: mount, cli: mount})
		if out, err := d.compose("--profile", "cli", "up", "--detach", "--no-build", "--pull", "never"); err != nil {
			t.Fatalf("docker compose --profile cli up: %v %s", err, out)
		}
		if code := dockertest.Docker(t, "wait", d.cli); code != "0" {
			out, _ := exec.Command("docker", "logs", d.cli).CombinedOutput()
			t.Fatalf("moltbot-cli (--help) exit code: got %s, want 0; logs:\n%s", code, out)
		}
		d.healthy()
		d.stable()
		if status := d.exec("moltbot", "status"); !strings.Contains(status, "state: /home/node/.openclaw") {
			t.Errorf("moltbot status printed\n%s\nwant state /home/node/.openclaw", status)
		}
		// The legacy config is still there, once, under one of its names.
		var found []string
		for _, name := range []string{"clawdbot.json", "openclaw.json"} {
			if b, err := os.ReadFile(filepath.Join(legacy, name)); err == nil && strings.Contains(string(b), marker) {
				found = append(found, name)
			}
		}
		if len(found) != 1 {
			entries, _ := os.ReadDir(legacy)
			t.Errorf("config with the marker in the legacy directory: got %q (entries %v), want exactly one", found, entries)
		}
	})
}
