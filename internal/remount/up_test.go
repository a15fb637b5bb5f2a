package remount_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// upCompose has five services; GEN changes the config of changed and empty.
const upCompose = `services:
  changed:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    environment: {GEN: "G"}
  empty:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    environment: {GEN: "G"}
    volumes: [./e:/home/new/mnt]  # the engine makes the mount point in the layer
  same:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
  stopped:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
NEW`

const upNew = `  new:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
`

func upFile(gen string, withNew bool) string {
	s := strings.ReplaceAll(upCompose, `GEN: "G"`, `GEN: "`+gen+`"`)
	if withNew {
		return strings.Replace(s, "NEW", upNew, 1)
	}
	return strings.Replace(s, "NEW", "", 1)
}

func actions(plan []remount.UpPlan) map[string]string {
	m := map[string]string{}
	for _, p := range plan {
		m[p.Service] = p.Action
	}
	return m
}

// TestUp converges a project with a changed service that has a writable
// layer (remounted), a changed one without (recreated), an unchanged one
// (kept), a stopped one (started) and a new one (created); a plain docker
// compose up -d afterwards recreates nothing.
func TestUp(t *testing.T) {
	eng := dockertest.Engine(t)
	dockertest.Busybox(t)
	dockertest.Compose(t)
	name := dockertest.Name("up")
	t.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
	})
	dir := dockertest.Project(t, name, upFile("1", false))
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	f := &fixture{name: name, dir: dir, eng: eng, copts: compose.Options{ProjectName: name, Files: []string{filepath.Join(dir, "compose.yaml")}}}
	f.compose(t, "up", "-d")
	f.compose(t, "exec", "-T", "changed", "sh", "-c", "echo kept > /kept")
	f.compose(t, "stop", "stopped")
	ids := map[string]string{}
	for _, s := range []string{"changed", "empty", "same", "stopped"} {
		ids[s] = f.compose(t, "ps", "-a", "-q", s)
	}
	f.write(t, upFile("2", true))
	opts := func() remount.UpOptions {
		p, err := compose.Load(context.Background(), f.copts)
		if err != nil {
			t.Fatal(err)
		}
		return remount.UpOptions{Project: p}
	}
	o := opts()
	o.DryRun = true
	res, err := remount.Up(context.Background(), eng, o)
	if err != nil {
		t.Fatalf("up --dry-run: %v", err)
	}
	want := map[string]string{"changed": remount.UpRemount, "empty": remount.UpRecreate, "same": remount.UpKeep,
		"stopped": remount.UpStart, "new": remount.UpCreate}
	got := actions(res.Plan)
	for s, a := range want {
		if got[s] != a {
			t.Errorf("dry run %s: got %q, want %q", s, got[s], a)
		}
	}
	// status says the same per service.
	rep, err := remount.Status(context.Background(), eng, remount.StatusOptions{Project: o.Project})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, c := range rep.Containers {
		if c.Up != want[c.Service] {
			t.Errorf("status of %s: got up %q, want %q", c.Service, c.Up, want[c.Service])
		}
	}
	if len(rep.Containers) != len(want) {
		t.Errorf("status: got %d containers, want %d", len(rep.Containers), len(want))
	}
	for s, id := range ids {
		if now := f.compose(t, "ps", "-a", "-q", s); now != id {
			t.Errorf("%s after the dry run: got %s, want %s", s, now, id)
		}
	}
	if _, err := remount.Up(context.Background(), eng, opts()); err != nil {
		t.Fatalf("up: %v", err)
	}
	if got := f.compose(t, "exec", "-T", "changed", "sh", "-c", "cat /kept; echo $GEN"); got != "kept\n2" {
		t.Errorf("changed: got %q, want its layer and GEN=2", got)
	}
	if got := f.compose(t, "exec", "-T", "empty", "sh", "-c", "echo $GEN"); got != "2" {
		t.Errorf("empty: got GEN=%q, want 2", got)
	}
	if got := f.compose(t, "ps", "-q", "same"); got != ids["same"] {
		t.Errorf("same: got %s, want %s kept", got, ids["same"])
	}
	for _, s := range []string{"stopped", "new", "changed", "empty"} {
		if got := f.compose(t, "ps", "--status", "running", "-q", s); got == "" {
			t.Errorf("%s: not running after up", s)
		}
	}
	after := map[string]string{}
	for _, s := range []string{"changed", "empty", "same", "stopped", "new"} {
		after[s] = f.compose(t, "ps", "-a", "-q", s)
	}
	f.compose(t, "up", "-d")
	for s, id := range after {
		if now := f.compose(t, "ps", "-a", "-q", s); now != id {
			t.Errorf("docker compose up -d after moltctl up recreated %s: %s -> %s", s, id, now)
		}
	}
	plan, err := remount.PlanUp(context.Background(), eng, opts())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plan {
		if p.Action != remount.UpKeep {
			t.Errorf("plan after up: %s %s, want keep", p.Service, p.Action)
		}
	}
}

// TestUpJoined: the openclaw shape with a changed gateway: up remounts both,
// the CLI joined to the new gateway; a changed image under a layer is refused.
func TestUpJoined(t *testing.T) {
	f := setupClaw(t)
	f.write(t, clawFile("2", "1", runLoop))
	opts := func() remount.UpOptions {
		o := f.opts(t, gateway)
		return remount.UpOptions{Project: o.Project}
	}
	o := opts()
	o.DryRun = true
	res, err := remount.Up(context.Background(), f.eng, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(res.Plan); got[gateway] != remount.UpRemount || got[cli] != remount.UpRemount {
		t.Errorf("dry run: got %v, want both remounted", got)
	}
	if _, err := remount.Up(context.Background(), f.eng, opts()); err != nil {
		t.Fatalf("up: %v", err)
	}
	f.check(t, "2", "1")

	content := clawFile("2", "1", runLoop)
	i := strings.Index(content, dockertest.BusyboxImage)
	rebuilt := dockertest.Name("uprebuilt") + ":1"
	if out, err := dockertest.Run("sh", "-c", "printf 'FROM "+dockertest.BusyboxImage+"\\nLABEL rebuilt=1\\n' | docker build -q -t "+rebuilt+" -"); err != nil {
		t.Fatalf("building %s: %v %s", rebuilt, err, out)
	}
	t.Cleanup(func() { dockertest.Run("docker", "rmi", rebuilt) })
	f.write(t, content[:i]+rebuilt+content[i+len(dockertest.BusyboxImage):])
	gw := f.id(t, gateway)
	if _, err := remount.Up(context.Background(), f.eng, opts()); !errors.Is(err, remount.ErrImageChanged) {
		t.Errorf("up with the gateway's image rebuilt: got %v, want ErrImageChanged", err)
	}
	if got := f.id(t, gateway); got != gw {
		t.Errorf("gateway after the refusal: got %s, want %s", got, gw)
	}
}

// TestUpJoinedEmptyParent: the gateway's layer is empty but the CLI joining it
// has one: compose would recreate both, so up remounts both (the gateway's
// recreate would take the CLI's layer with it).
func TestUpJoinedEmptyParent(t *testing.T) {
	eng := dockertest.Engine(t)
	dockertest.Busybox(t)
	name := dockertest.Name("upclaw")
	t.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
	})
	dir := dockertest.Project(t, name, strings.ReplaceAll(clawFile("1", "1", runLoop), "volumes: [./data:/data]", "volumes: []"))
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	f := &fixture{name: name, dir: dir, eng: eng, copts: compose.Options{ProjectName: name, Files: []string{filepath.Join(dir, "compose.yaml")}}}
	f.compose(t, "up", "-d")
	f.compose(t, "exec", "-T", cli, "sh", "-c", "echo cli > /kept")
	f.write(t, strings.ReplaceAll(clawFile("2", "1", runLoop), "volumes: [./data:/data]", "volumes: []"))
	p, err := compose.Load(context.Background(), f.copts)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := remount.PlanUp(context.Background(), eng, remount.UpOptions{Project: p})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(plan); got[gateway] != remount.UpRemount || got[cli] != remount.UpRemount {
		t.Errorf("plan: got %v, want both remounted", got)
	}
	if _, err := remount.Up(context.Background(), eng, remount.UpOptions{Project: p}); err != nil {
		t.Fatalf("up: %v", err)
	}
	if got := f.compose(t, "exec", "-T", cli, "cat", "/kept"); got != "cli" {
		t.Errorf("cli layer after up: got %q, want cli", got)
	}
	ids := f.compose(t, "ps", "-q")
	f.compose(t, "up", "-d")
	if got := f.compose(t, "ps", "-q"); got != ids {
		t.Errorf("docker compose up -d after moltctl up: got %q, want %q", got, ids)
	}
}

// upRestoreCompose: side joins web's network namespace; fresh has no snapshot.
const upRestoreCompose = `services:
  web:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    environment: {GEN: "1"}
  side:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    network_mode: "service:web"
  fresh:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
`

// TestUpRestoresSnapshots: the services are snapshotted, their containers
// removed (as an engine's store switch does), and up brings web and side (which
// joins web) back on their latest snapshots with every layer and the compose
// file's current config, creates fresh (no snapshot) from its image; up
// --dry-run and status say so first, and a plain docker compose up -d
// afterwards recreates nothing.
func TestUpRestoresSnapshots(t *testing.T) {
	eng := dockertest.Engine(t)
	dockertest.Busybox(t)
	dockertest.Compose(t)
	ctx := context.Background()
	name := dockertest.Name("uprestore")
	t.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
	})
	dir := dockertest.Project(t, name, upRestoreCompose)
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	f := &fixture{name: name, dir: dir, eng: eng, copts: compose.Options{ProjectName: name, Files: []string{filepath.Join(dir, "compose.yaml")}}}
	load := func() *compose.Project {
		p, err := compose.Load(ctx, f.copts)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.compose(t, "up", "-d", "web", "side")
	f.compose(t, "exec", "-T", "web", "sh", "-c", "echo one > /one")
	f.compose(t, "exec", "-T", "side", "sh", "-c", "echo side > /side")
	if _, err := remount.Snapshot(ctx, eng, remount.SnapshotOptions{Project: load(), Services: []string{"web", "side"}}); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	f.compose(t, "exec", "-T", "web", "sh", "-c", "echo two > /two")
	rep, err := remount.Snapshot(ctx, eng, remount.SnapshotOptions{Project: load(), Services: []string{"web"}})
	if err != nil {
		t.Fatalf("second snapshot: %v", err)
	}
	latest := rep.Snapshots[0]
	// The engine drops the containers; the compose file changes meanwhile.
	for _, s := range []string{"side", "web"} {
		dockertest.Docker(t, "rm", "-f", f.compose(t, "ps", "-a", "-q", s))
	}
	f.write(t, strings.Replace(upRestoreCompose, `GEN: "1"`, `GEN: "2"`, 1))

	want := map[string]string{"web": remount.UpRestore, "side": remount.UpRestore, "fresh": remount.UpCreate}
	res, err := remount.Up(ctx, eng, remount.UpOptions{Project: load(), DryRun: true})
	if err != nil {
		t.Fatalf("up --dry-run: %v", err)
	}
	if got := actions(res.Plan); !maps.Equal(got, want) {
		t.Errorf("dry run: got %v, want %v", got, want)
	}
	for _, pl := range res.Plan {
		if pl.Service == "web" && (pl.From != latest.Snapshot || pl.Layers != latest.Layers) {
			t.Errorf("dry run web: got from %q (%d layers), want %q (%d layers)", pl.From, pl.Layers, latest.Snapshot, latest.Layers)
		}
	}
	st, err := remount.Status(ctx, eng, remount.StatusOptions{Project: load()})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, c := range st.Containers {
		if c.Up != want[c.Service] {
			t.Errorf("status of %s: got up %q, want %q", c.Service, c.Up, want[c.Service])
		}
	}
	if got := f.compose(t, "ps", "-a", "-q"); got != "" {
		t.Fatalf("containers after the dry run: got %q, want none", got)
	}

	if _, err := remount.Up(ctx, eng, remount.UpOptions{Project: load(), WaitTimeout: 500 * time.Millisecond}); err != nil {
		t.Fatalf("up: %v", err)
	}
	if got := f.compose(t, "exec", "-T", "web", "sh", "-c", "cat /one /two; echo $GEN"); got != "one\ntwo\n2" {
		t.Errorf("web after up: got %q, want its layers (one, two) and GEN=2", got)
	}
	if got := f.compose(t, "exec", "-T", "side", "cat", "/side"); got != "side" {
		t.Errorf("side after up: got %q, want its layer", got)
	}
	webID := f.compose(t, "ps", "-q", "web")
	if got := dockertest.Docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", f.compose(t, "ps", "-q", "side")); got != "container:"+webID {
		t.Errorf("side's network mode: got %s, want container:%s (joined to the restored web)", got, webID)
	}
	if got := f.compose(t, "ps", "--status", "running", "-q", "fresh"); got == "" {
		t.Error("fresh: not running after up")
	}
	ids := f.compose(t, "ps", "-q")
	f.compose(t, "up", "-d")
	if got := f.compose(t, "ps", "-q"); got != ids {
		t.Errorf("docker compose up -d after moltctl up: got %q, want %q", got, ids)
	}
}
