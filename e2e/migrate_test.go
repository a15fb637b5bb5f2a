package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// shippedMoltctl copies the static binary out of the moltctl image (the one
// users get) into a temporary directory.
func shippedMoltctl(tb testing.TB, img images) string {
	tb.Helper()
	id := dockertest.Docker(tb, "create", img.Moltctl)
	defer dockertest.Run("docker", "rm", id)
	bin := filepath.Join(tb.TempDir(), "moltctl")
	dockertest.Docker(tb, "cp", id+":/moltctl", bin)
	return bin
}

// TestMigrateGateway is the deployment most users have, migrated: the gateway
// with its legacy state bind-mounted from the host, and something installed by
// hand in its writable layer. `moltctl migrate` (the binary of the moltctl
// image) moves the state into a named volume owned by node (MOLTCTL_USER of the
// image), keeps the layer, and the gateway comes back healthy on the volume with
// the same state; `docker compose up -d` then keeps the container.
func TestMigrateGateway(t *testing.T) {
	img := productImages(t)
	dockertest.Root(t)
	bin := shippedMoltctl(t, img)
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	legacy, marker := legacyDir(t)
	var d *deployment
	// Registered before deploy's `down -v`, so it runs after it.
	t.Cleanup(func() {
		dockertest.Run("docker", "volume", "rm", "-f", d.project+"_clawdbot")
		out, _ := dockertest.Run("docker", "image", "ls", "-q", "--filter", "label=io.moltctl.snapshot.project="+d.project)
		for _, id := range strings.Fields(out) {
			dockertest.Run("docker", "image", "rm", "-f", id)
		}
	})
	d = deploy(t, img, override{gateway: legacyMount(legacy)})
	d.up()
	d.exec("sh", "-c", "echo installed-by-hand >/etc/moltbot-plugin")
	override := d.files[len(d.files)-1]
	before, err := os.ReadFile(override)
	if err != nil {
		t.Fatal(err)
	}
	repoFile, _ := os.ReadFile(d.files[0])

	args := []string{"-p", d.project, "--project-directory", repoRoot(t)}
	for _, f := range d.files {
		args = append(args, "-f", f)
	}
	cmd := exec.Command(bin, append(args, "migrate", "--yes", "--json", "--wait-timeout", "5s")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("moltctl migrate: %v\n%s", err, stderr.String())
	}
	var rep struct {
		Services []string
		Files    []string
		Volumes  []struct{ Name, Source, Owner string }
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("got report %q: %v", out, err)
	}
	vol := d.project + "_clawdbot"
	if len(rep.Volumes) != 1 || rep.Volumes[0].Name != vol || rep.Volumes[0].Source != legacy || rep.Volumes[0].Owner != "1000:1000" {
		t.Errorf("got volumes %+v, want %s from %s owned by 1000:1000", rep.Volumes, vol, legacy)
	}
	if len(rep.Services) != 1 || rep.Services[0] != "moltbot-gateway" || len(rep.Files) != 1 || rep.Files[0] != override {
		t.Errorf("got services %v, files %v, want moltbot-gateway remounted and %s rewritten", rep.Services, rep.Files, override)
	}
	if after, _ := os.ReadFile(d.files[0]); !bytes.Equal(after, repoFile) {
		t.Errorf("got the repository's docker-compose.yml changed; only the file declaring the bind may change")
	}
	if after, _ := os.ReadFile(override); bytes.Equal(after, before) || !strings.Contains(string(after), "clawdbot:/home/node/.clawdbot") {
		t.Errorf("got override\n%s\nwant the bind replaced by the volume clawdbot", after)
	}

	d.healthy()
	d.stable()
	if got := dockertest.Docker(t, "inspect", "-f",
		`{{range .Mounts}}{{if eq .Destination "/home/node/.clawdbot"}}{{.Type}} {{.Name}}{{end}}{{end}}`, d.container); got != "volume "+vol {
		t.Errorf("got /home/node/.clawdbot mounted as %q, want volume %s", got, vol)
	}
	if got := d.exec("cat", "/etc/moltbot-plugin"); got != "installed-by-hand" {
		t.Errorf("got %q from the writable layer, want it kept", got)
	}
	checkDropped(t, d.appStatus())
	cfg := statusField(d.exec("moltbot", "status"), "config")
	if got := d.exec("cat", cfg); !strings.Contains(got, marker) {
		t.Errorf("got the app's config %s %q, want the migrated state (%s)", cfg, got, marker)
	}
	if owners := d.exec("find", "/home/node/.clawdbot", "!", "-user", "1000"); owners != "" {
		t.Errorf("got entries of the volume not owned by node:\n%s", owners)
	}
	// The host directory is still there with the state.
	if fi, err := os.Lstat(legacy); err != nil || !fi.IsDir() {
		t.Errorf("got the legacy directory on the host %v, %v; want it kept", fi, err)
	}

	// compose adopts the container and the volume.
	id := dockertest.Docker(t, "inspect", "-f", "{{.Id}}", d.container)
	a := []string{"compose", "-p", d.project, "--project-directory", repoRoot(t)}
	for _, f := range d.files {
		a = append(a, "-f", f)
	}
	b, err := exec.Command("docker", append(a, "up", "-d", "--no-build", "--pull", "never")...).CombinedOutput()
	if up := string(b); err != nil || !strings.Contains(up, "Running") || strings.Contains(up, "Recreate") ||
		strings.Contains(up, "not created by Docker Compose") {
		t.Errorf("got `docker compose up -d` %v:\n%s\nwant the gateway Running, no recreate, no volume warning", err, up)
	}
	if got := dockertest.Docker(t, "inspect", "-f", "{{.Id}}", d.container); got != id {
		t.Errorf("got container %s after compose up, want %s kept", got, id)
	}
}
