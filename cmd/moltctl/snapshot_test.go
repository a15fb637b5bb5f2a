package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// TestSnapshotCommand runs moltctl snapshot --json and status on a real project:
// one snapshot of the running container, listed by status, nothing recreated.
func TestSnapshotCommand(t *testing.T) {
	dockertest.Busybox(t)
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	name := dockertest.Name("clisnap")
	dir := dockertest.Project(t, name, "services:\n  web:\n    image: "+dockertest.BusyboxImage+"\n    command: [\"sleep\", \"300\"]\n")
	t.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
	})
	file := filepath.Join(dir, "compose.yaml")
	dockertest.Docker(t, "compose", "-p", name, "-f", file, "up", "-d")
	id := dockertest.Docker(t, "compose", "-p", name, "-f", file, "ps", "-q", "web")
	dockertest.Docker(t, "exec", id, "sh", "-c", "echo kept > /kept")

	if _, err := runMoltctl(t, "-p", name, "-f", file, "snapshot", "nope"); err == nil || !strings.Contains(err.Error(), "no service nope") {
		t.Errorf("snapshot of an unknown service: got %v, want no service nope", err)
	}
	out, err := runMoltctl(t, "-p", name, "-f", file, "snapshot", "--json")
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	var rep remount.SnapshotReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("snapshot --json: %v in %q", err, out)
	}
	want := "moltctl-snapshot/" + name + "-web:1"
	if len(rep.Snapshots) != 1 || rep.Snapshots[0].Snapshot != want || !rep.Snapshots[0].Running {
		t.Errorf("snapshot --json: got %+v, want one snapshot %s of the running container", rep.Snapshots, want)
	}
	if got := dockertest.Docker(t, "compose", "-p", name, "-f", file, "ps", "-q", "web"); got != id {
		t.Errorf("container after snapshot: got %s, want %s", got, id)
	}
	out, err = runMoltctl(t, "-p", name, "-f", file, "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !strings.Contains(out, "SNAPSHOT") || !strings.Contains(out, want) {
		t.Errorf("status: got %q, want the snapshot %s listed", out, want)
	}

	// The container is gone (as after an engine's store switch): up brings it
	// back on the snapshot, and says so first in its dry run.
	dockertest.Docker(t, "rm", "-f", id)
	out, err = runMoltctl(t, "-p", name, "-f", file, "up", "--dry-run")
	if err != nil {
		t.Fatalf("up --dry-run: %v", err)
	}
	if !regexp.MustCompile(`(?m)^web +`+name+`-web-1 +restore +- *$`).MatchString(out) || !strings.Contains(out, "would restore web on its latest snapshot "+want) {
		t.Errorf("up --dry-run: got %q, want web restored on %s", out, want)
	}
	out, err = runMoltctl(t, "-p", name, "-f", file, "up")
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	if !strings.Contains(out, "restored web on its latest snapshot "+want) {
		t.Errorf("up: got %q, want web restored on %s", out, want)
	}
	if got := dockertest.Docker(t, "compose", "-p", name, "-f", file, "exec", "-T", "web", "cat", "/kept"); got != "kept" {
		t.Errorf("web's layer after up: got %q, want kept", got)
	}
}
