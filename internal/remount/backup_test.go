package remount_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// TestSnapshotRoundTrip snapshots a running and then a stopped container without
// recreating it, removes the container as an engine's store switch does, and brings
// the service back on its latest snapshot with its compose config and every layer.
func TestSnapshotRoundTrip(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	old := f.containerID(t)
	p := f.project(t)
	baseLayers := len(dockertest.Docker(t, "image", "inspect", "-f", "{{range .RootFS.Layers}}x{{end}}", dockertest.BusyboxImage))

	rep, err := remount.Snapshot(ctx, f.eng, remount.SnapshotOptions{Project: p})
	if err != nil {
		t.Fatalf("snapshot of the running container: %v", err)
	}
	if len(rep.Snapshots) != 1 || !rep.Snapshots[0].Running || rep.Snapshots[0].Layers != baseLayers+1 || rep.Snapshots[0].Parent != "" {
		t.Fatalf("snapshot: got %+v, want one snapshot of the running container, %d layers, no parent", rep.Snapshots, baseLayers+1)
	}
	first := rep.Snapshots[0]
	if got := f.containerID(t); got != old {
		t.Errorf("container after the snapshot: got %s, want %s (not recreated)", got, old)
	}
	if got := dockertest.Docker(t, "inspect", "-f", "{{.State.Status}}", old); got != "running" {
		t.Errorf("container state after the snapshot: got %s, want running (unpaused)", got)
	}
	if env := dockertest.Docker(t, "image", "inspect", "-f", "{{json .Config.Env}}", first.Snapshot); strings.Contains(env, "secret-value") {
		t.Errorf("snapshot env: got %s, want no value of the container's environment", env)
	}

	// Committed again, stopped: the container still runs the base image, so its
	// parent is none and its one layer holds both files; its seq is the next.
	f.compose(t, "exec", "-T", "web", "sh", "-c", "echo two > /opt/two")
	f.compose(t, "stop", "web")
	rep, err = remount.Snapshot(ctx, f.eng, remount.SnapshotOptions{Project: p, Services: []string{"web"}})
	if err != nil {
		t.Fatalf("snapshot of the stopped container: %v", err)
	}
	second := rep.Snapshots[0]
	if second.Running || second.Snapshot == first.Snapshot || !strings.HasSuffix(second.Snapshot, ":2") || second.Layers != baseLayers+1 {
		t.Errorf("second snapshot: got %+v, want the stopped container's, tag :2", second)
	}
	if got := dockertest.Docker(t, "inspect", "-f", "{{.State.Status}}", old); got != "exited" {
		t.Errorf("container state after the snapshot: got %s, want exited (left stopped)", got)
	}

	// The engine drops the container (as a switch to the containerd image store does).
	dockertest.Docker(t, "rm", "-f", old)
	res, err := remount.Run(ctx, f.eng, f.options(t))
	if err != nil {
		t.Fatalf("remount of the service without a container: %v", err)
	}
	if !res.Restored || res.Snapshot != second.Snapshot {
		t.Errorf("remount: got restored=%v on %s, want restored on the latest snapshot %s", res.Restored, res.Snapshot, second.Snapshot)
	}
	if got := f.compose(t, "exec", "-T", "web", "sh", "-c", "cat /opt/kept /opt/two; echo $OLDKEY"); got != "kept\ntwo\nsecret-value" {
		t.Errorf("restored service: got %q, want its layers (kept, two) and its compose env", got)
	}
	f.checkComposeKeeps(t)
	f.checkNoJournal(t)

	st, err := remount.Status(ctx, f.eng, remount.StatusOptions{Project: p})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var tags []string
	for _, s := range st.Snapshots {
		tags = append(tags, s.Tag)
		if s.InUse != (s.Tag == second.Snapshot) {
			t.Errorf("status snapshot %s: in use %v, want %v", s.Tag, s.InUse, s.Tag == second.Snapshot)
		}
	}
	if want := second.Snapshot + " " + first.Snapshot; strings.Join(tags, " ") != want {
		t.Errorf("status snapshots: got %v, want %s", tags, want)
	}

	// A snapshot of the restored container continues the lineage.
	f.compose(t, "exec", "-T", "web", "sh", "-c", "echo three > /opt/three")
	rep, err = remount.Snapshot(ctx, f.eng, remount.SnapshotOptions{Project: p})
	if err != nil {
		t.Fatalf("snapshot of the restored container: %v", err)
	}
	if third := rep.Snapshots[0]; third.Parent != second.Snapshot || third.Layers != second.Layers+1 {
		t.Errorf("third snapshot: got parent %s, %d layers, want parent %s and %d layers", third.Parent, third.Layers, second.Snapshot, second.Layers+1)
	}
}

func TestSnapshotRefuses(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	p := f.project(t)
	before := dockertest.Docker(t, "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name)
	if _, err := remount.Snapshot(ctx, f.eng, remount.SnapshotOptions{Project: p, Services: []string{"web", "nope"}}); err == nil || !strings.Contains(err.Error(), "no service nope") {
		t.Errorf("unknown service: got %v, want no service nope", err)
	}
	f.compose(t, "up", "-d", "--scale", "web=2")
	if _, err := remount.Snapshot(ctx, f.eng, remount.SnapshotOptions{Project: p}); !errors.Is(err, remount.ErrUnsupported) {
		t.Errorf("scaled service: got %v, want ErrUnsupported", err)
	}
	if got := dockertest.Docker(t, "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name); got != before {
		t.Errorf("snapshot images after refusals: got %q, want %q", got, before)
	}
}
