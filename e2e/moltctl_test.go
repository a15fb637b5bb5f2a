package e2e

import (
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// TestMoltctlImage runs the Dockerfile's moltctl target: a FROM scratch image whose
// static binary carries the version given at build time.
func TestMoltctlImage(t *testing.T) {
	img := productImages(t)

	out := dockertest.Docker(t, "run", "--rm", img.Moltctl, "version")
	if want := "moltctl " + img.MoltctlVersion + " "; !strings.HasPrefix(out, want) {
		t.Errorf("moltctl version printed %q, want it to start with %q", out, want)
	}
	entrypoint := dockertest.Docker(t, "image", "inspect", "--format", "{{json .Config.Entrypoint}}", img.Moltctl)
	if want := `["/moltctl"]`; entrypoint != want {
		t.Errorf("entrypoint: got %s, want %s", entrypoint, want)
	}
	// Only the binary: nothing else in the image's single layer.
	layers := dockertest.Docker(t, "image", "inspect", "--format", "{{len .RootFS.Layers}}", img.Moltctl)
	if layers != "1" {
		t.Errorf("layers: got %s, want 1 (the binary alone)", layers)
	}
}
