package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// TestRemountErrorNamesServiceOnce: the library names the service it could
// not find; the command adds only its own name.
func TestRemountErrorNamesServiceOnce(t *testing.T) {
	dockertest.Engine(t)
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte("name: h13-remount-once\nservices:\n  app:\n    image: "+dockertest.BusyboxImage+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"remount", "-f", file, "nosuchservice"}, &stdout, &stderr)
	want := "moltctl: remount: no service nosuchservice in project h13-remount-once\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("got exit code %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
	if n := strings.Count(stderr.String(), "nosuchservice"); n != 1 {
		t.Errorf("stderr %q names the service %d times, want once", stderr.String(), n)
	}
}
