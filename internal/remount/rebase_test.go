package remount_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// rebaseFixture is a project whose one service runs an image tag (cur) built
// as v1, with a writable layer that adds, changes, deletes and chowns paths;
// v2 (built, not yet tagged cur) changes two files and adds one.
type rebaseFixture struct {
	name, dir, cur, v1, v2 string
	eng                    *client.Client
	copts                  compose.Options
}

func buildImage(tb testing.TB, tag string, files map[string]string, dockerfile string) {
	tb.Helper()
	dir := tb.TempDir()
	files["Dockerfile"] = dockerfile
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if out, err := dockertest.Run("docker", "build", "-q", "-t", tag, dir); err != nil {
		tb.Fatalf("building %s: %v %s", tag, err, out)
	}
}

func setupRebase(tb testing.TB) *rebaseFixture {
	tb.Helper()
	eng := dockertest.Engine(tb)
	bb := dockertest.Busybox(tb)
	dockertest.Compose(tb)
	f := &rebaseFixture{name: dockertest.Name("rbs"), eng: eng}
	repo := "moltctl-test/" + f.name
	f.cur, f.v1, f.v2 = repo+":cur", repo+":v1", repo+":v2"
	tb.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+f.name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
		dockertest.Run("docker", "rmi", f.cur, f.v1, f.v2)
	})
	df := "FROM " + bb + "\nCOPY keep.txt conf.txt del.txt own.txt /app/\n"
	buildImage(tb, f.v1, map[string]string{"keep.txt": "v1\n", "conf.txt": "v1\n", "del.txt": "del\n", "own.txt": "own\n"}, df)
	buildImage(tb, f.v2, map[string]string{"keep.txt": "v2\n", "conf.txt": "v2\n", "del.txt": "del\n", "own.txt": "own\n", "new.txt": "new\n"},
		df+"COPY new.txt /app/\n")
	dockertest.Docker(tb, "tag", f.v1, f.cur)
	f.dir = dockertest.Project(tb, f.name, `services:
  web:
    image: `+f.cur+`
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
`)
	f.copts = compose.Options{ProjectName: f.name, Files: []string{filepath.Join(f.dir, "compose.yaml")}}
	if t, ok := tb.(*testing.T); ok {
		t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	}
	f.compose(tb, "up", "-d")
	f.compose(tb, "exec", "-T", "web", "sh", "-c",
		"mkdir -p /opt/tool/bin && echo added > /opt/tool/bin/t && chmod 750 /opt/tool/bin/t && "+
			"echo layer > /app/conf.txt && rm /app/del.txt && chown 1000:1000 /app/own.txt && chmod 600 /app/own.txt")
	// A file with a file capability (security.capability, the xattr the engine's
	// archives carry), put in through the API (busybox has no setcap).
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "opt/x", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": string(dockertest.CapXattr())}})
	tw.Write([]byte("x"))
	tw.Close()
	if _, err := eng.CopyToContainer(context.Background(), f.compose(tb, "ps", "-q", "web"),
		client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		tb.Fatal(err)
	}
	if got := f.xattr(tb); got != string(dockertest.CapXattr()) {
		tb.Fatalf("security.capability of /opt/x before the rebase: got %q, want %q", got, dockertest.CapXattr())
	}
	return f
}

// xattr returns the security.capability xattr of /opt/x in the service's container.
func (f *rebaseFixture) xattr(tb testing.TB) string {
	tb.Helper()
	res, err := f.eng.CopyFromContainer(context.Background(), f.compose(tb, "ps", "-q", "web"), client.CopyFromContainerOptions{SourcePath: "/opt/x"})
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Content.Close()
	hdr, err := tar.NewReader(res.Content).Next()
	if err != nil {
		tb.Fatal(err)
	}
	return hdr.PAXRecords["SCHILY.xattr.security.capability"]
}

func (f *rebaseFixture) compose(tb testing.TB, args ...string) string {
	tb.Helper()
	return dockertest.Docker(tb, append([]string{"compose", "-p", f.name, "-f", filepath.Join(f.dir, "compose.yaml")}, args...)...)
}

func (f *rebaseFixture) options(tb testing.TB) remount.Options {
	tb.Helper()
	p, err := compose.Load(context.Background(), f.copts)
	if err != nil {
		tb.Fatal(err)
	}
	return remount.Options{Project: p, Service: "web", WaitTimeout: 500 * time.Millisecond, Rebase: true}
}

// files returns what the running container has at the paths the test looks at.
func (f *rebaseFixture) files(tb testing.TB) string {
	tb.Helper()
	return f.compose(tb, "exec", "-T", "web", "sh", "-c",
		"cat /opt/tool/bin/t /app/keep.txt /app/conf.txt /app/new.txt 2>&1; stat -c '%a %u:%g %n' /opt/tool/bin/t /app/own.txt; ls /app/del.txt 2>&1 || true")
}

const layerOnV1 = "added\nv1\nlayer\ncat: can't open '/app/new.txt': No such file or directory\n750 0:0 /opt/tool/bin/t\n600 1000:1000 /app/own.txt\nls: /app/del.txt: No such file or directory"

func TestRebase(t *testing.T) {
	f := setupRebase(t)
	old := f.compose(t, "ps", "-q", "web")
	dockertest.Docker(t, "tag", f.v2, f.cur)

	opts := f.options(t)
	opts.Rebase = false
	if _, err := remount.Run(context.Background(), f.eng, opts); !errors.Is(err, remount.ErrImageChanged) {
		t.Fatalf("remount without rebase of a changed image: got %v, want ErrImageChanged", err)
	}

	opts = f.options(t)
	opts.DryRun = true
	res, err := remount.Run(context.Background(), f.eng, opts)
	if err != nil {
		t.Fatalf("rebase --dry-run: %v", err)
	}
	want := []remount.Conflict{{Path: "/app/conf.txt", Layer: "changed", Winner: "image"}}
	if res.Rebase == nil || len(res.Rebase.Conflicts) != 1 || res.Rebase.Conflicts[0] != want[0] {
		t.Errorf("dry-run conflicts: got %+v, want %+v", res.Rebase, want)
	}
	if !strings.Contains(strings.Join(res.Plan, "\n"), `conflict "/app/conf.txt"`) {
		t.Errorf("dry-run plan: got %q, want the conflict on /app/conf.txt", res.Plan)
	}
	if id := f.compose(t, "ps", "-q", "web"); id != old {
		t.Errorf("dry run changed the container: got %s, want %s", id, old)
	}

	res, err = remount.Run(context.Background(), f.eng, f.options(t))
	if err != nil {
		t.Fatalf("rebase: %v", err)
	}
	// Added, deleted and chowned paths from the layer; the conflicting file and
	// the unchanged one from v2 (image wins); the file new in v2.
	wantFiles := "added\nv2\nv2\nnew\n750 0:0 /opt/tool/bin/t\n600 1000:1000 /app/own.txt\nls: /app/del.txt: No such file or directory"
	if got := f.files(t); got != wantFiles {
		t.Errorf("files after rebase:\ngot  %q\nwant %q", got, wantFiles)
	}
	if got := f.xattr(t); got != string(dockertest.CapXattr()) {
		t.Errorf("security.capability of /opt/x after the rebase: got %q, want %q", got, dockertest.CapXattr())
	}
	if res.Rebase == nil || res.Rebase.Image == "" {
		t.Fatalf("result: got %+v, want the rebased image", res.Rebase)
	}
	// busybox's 4 layers and v2's 2 COPYs, plus the rebased layer (the
	// snapshot of the old layer, on v1, has 6).
	if res.Layers != 7 {
		t.Errorf("layers of the running image: got %d, want 7", res.Layers)
	}
	id := f.compose(t, "ps", "-q", "web")
	img := dockertest.Docker(t, "inspect", "-f", "{{.Image}}", id)
	if want := dockertest.Docker(t, "image", "inspect", "-f", "{{.Id}}", res.Rebase.Image); img != want {
		t.Errorf("container image: got %s, want the rebased %s", img, want)
	}
	base := dockertest.Docker(t, "image", "inspect", "-f", `{{index .Config.Labels "`+remount.LabelBaseImageID+`"}}`, res.Rebase.Image)
	if want := dockertest.Docker(t, "image", "inspect", "-f", "{{.Id}}", f.v2); base != want {
		t.Errorf("rebased image's base: got %s, want v2 %s", base, want)
	}
	// compose's own container: a plain up keeps it; a second remount needs no rebase.
	f.compose(t, "up", "-d")
	if after := f.compose(t, "ps", "-q", "web"); after != id {
		t.Errorf("docker compose up -d after the rebase recreated the container: got %s, want %s", after, id)
	}
	opts = f.options(t)
	opts.Rebase = false
	if _, err := remount.Run(context.Background(), f.eng, opts); err != nil {
		t.Errorf("remount after the rebase: %v", err)
	}
	if got := f.files(t); got != wantFiles {
		t.Errorf("files after a remount of the rebased container:\ngot  %q\nwant %q", got, wantFiles)
	}

	// Again onto v3, from a container on a snapshot: what the earlier layers
	// changed comes from their records, merged with the container's own diff.
	v3 := strings.TrimSuffix(f.v2, ":v2") + ":v3"
	buildImage(t, v3, map[string]string{"keep.txt": "v3\n", "conf.txt": "v2\n", "del.txt": "del\n", "own.txt": "own\n", "new.txt": "new\n"},
		"FROM "+dockertest.BusyboxImage+"\nCOPY keep.txt conf.txt del.txt own.txt new.txt /app/\n")
	t.Cleanup(func() { dockertest.Run("docker", "rmi", v3) })
	f.compose(t, "exec", "-T", "web", "sh", "-c", "echo more > /opt/tool/more")
	dockertest.Docker(t, "tag", v3, f.cur)
	if _, err := remount.Run(context.Background(), f.eng, f.options(t)); err != nil {
		t.Fatalf("second rebase: %v", err)
	}
	want3 := "added\nv3\nv2\nnew\n750 0:0 /opt/tool/bin/t\n600 1000:1000 /app/own.txt\nls: /app/del.txt: No such file or directory"
	if got := f.files(t); got != want3 {
		t.Errorf("files after the second rebase:\ngot  %q\nwant %q", got, want3)
	}
	if got := f.compose(t, "exec", "-T", "web", "cat", "/opt/tool/more"); got != "more" {
		t.Errorf("file added after the first rebase: got %q, want %q", got, "more")
	}
	if got := f.xattr(t); got != string(dockertest.CapXattr()) {
		t.Errorf("security.capability of /opt/x after the second rebase: got %q", got)
	}
}

// failCopy fails CopyToContainer: the rebase fails midway, after the commit of
// the old layer and before compose ran.
type failCopy struct{ *client.Client }

func (failCopy) CopyToContainer(context.Context, string, client.CopyToContainerOptions) (client.CopyToContainerResult, error) {
	return client.CopyToContainerResult{}, errInjected
}

// failCloneStart fails the first start of a container on a snapshot image, the
// clone's: the rebase committed, then the clone does not start.
type failCloneStart struct {
	*client.Client
	failed bool
}

func (e *failCloneStart) ContainerStart(ctx context.Context, id string, o client.ContainerStartOptions) (client.ContainerStartResult, error) {
	if !e.failed {
		ins, err := e.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return client.ContainerStartResult{}, err
		}
		im, err := e.Client.ImageInspect(ctx, ins.Container.Image)
		if err != nil {
			return client.ContainerStartResult{}, err
		}
		if im.Config != nil && im.Config.Labels[remount.LabelService] != "" { // on a snapshot: the clone
			e.failed = true
			return client.ContainerStartResult{}, errInjected
		}
	}
	return e.Client.ContainerStart(ctx, id, o)
}

// TestRebaseRollbackRemovesRebasedImage: a rebase rolled back after its commit
// leaves no snapshot behind, so a later restore can't bring the service back on
// the layer of a remount that did not happen.
func TestRebaseRollbackRemovesRebasedImage(t *testing.T) {
	f := setupRebase(t)
	snaps := func() []string {
		return strings.Fields(dockertest.Docker(t, "images", "-q", "--no-trunc", "--filter", "label="+remount.LabelProject+"="+f.name))
	}
	before := snaps()
	dockertest.Docker(t, "tag", f.v2, f.cur)
	eng := &failCloneStart{Client: f.eng}
	_, err := remount.Run(context.Background(), eng, f.options(t))
	if !eng.failed {
		t.Fatalf("no clone start failed (err %v): the test no longer reaches the step after the rebase", err)
	}
	if !errors.Is(err, errInjected) || !errors.Is(err, remount.ErrRolledBack) {
		t.Fatalf("rebase with a failing clone start: got %v, want the injected failure, rolled back", err)
	}
	if got := f.files(t); got != layerOnV1 {
		t.Errorf("files after the rollback:\ngot  %q\nwant %q", got, layerOnV1)
	}
	// What may stay: the snapshots before the run and the one the previous
	// container now runs on.
	runsOn := dockertest.Docker(t, "inspect", "--format", "{{.Image}}", f.compose(t, "ps", "-q", "web"))
	for _, id := range snaps() {
		if id != runsOn && !slices.Contains(before, id) {
			t.Errorf("snapshot image %s left after the rollback (the previous container runs on %s)", id, runsOn)
		}
	}
}

func TestRebaseRollsBackAndLayerWins(t *testing.T) {
	f := setupRebase(t)
	old := f.compose(t, "ps", "-q", "web")
	dockertest.Docker(t, "tag", f.v2, f.cur)
	_, err := remount.Run(context.Background(), failCopy{f.eng}, f.options(t))
	if !errors.Is(err, errInjected) || !errors.Is(err, remount.ErrRolledBack) {
		t.Fatalf("rebase with a failing copy: got %v, want the injected failure, rolled back", err)
	}
	if id := f.compose(t, "ps", "-q", "web"); id != old {
		t.Errorf("container after the rollback: got %s, want the previous %s", id, old)
	}
	if got := f.files(t); got != layerOnV1 {
		t.Errorf("files after the rollback:\ngot  %q\nwant %q", got, layerOnV1)
	}
	if _, err := os.Stat(remount.JournalPath(f.name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal after the rollback: got %v, want none", err)
	}
	if left := dockertest.Docker(t, "ps", "-aq", "--filter", "name=moltctl-rebase-"+f.name); left != "" {
		t.Errorf("temporary containers left: %q", left)
	}

	opts := f.options(t)
	opts.RebaseConflicts = remount.ConflictsLayer
	res, err := remount.Run(context.Background(), f.eng, opts)
	if err != nil {
		t.Fatalf("rebase, layer wins: %v", err)
	}
	want := "added\nv2\nlayer\nnew\n750 0:0 /opt/tool/bin/t\n600 1000:1000 /app/own.txt\nls: /app/del.txt: No such file or directory"
	if got := f.files(t); got != want {
		t.Errorf("files after rebase (layer wins):\ngot  %q\nwant %q", got, want)
	}
	if res.Rebase == nil || len(res.Rebase.Conflicts) != 1 || res.Rebase.Conflicts[0].Winner != "layer" {
		t.Errorf("conflicts: got %+v, want /app/conf.txt won by the layer", res.Rebase)
	}
}

// TestUpRebase: up refuses a changed image under a layer, lists the rebase's
// conflicts in a dry run with Rebase, and rebases with it.
func TestUpRebase(t *testing.T) {
	f := setupRebase(t)
	old := f.compose(t, "ps", "-q", "web")
	dockertest.Docker(t, "tag", f.v2, f.cur)
	up := func(dry, rebase bool) (*remount.UpResult, error) {
		o := f.options(t)
		return remount.Up(context.Background(), f.eng, remount.UpOptions{Project: o.Project,
			WaitTimeout: o.WaitTimeout, DryRun: dry, Rebase: rebase})
	}
	if _, err := up(false, false); !errors.Is(err, remount.ErrImageChanged) {
		t.Fatalf("up without rebase: got %v, want ErrImageChanged", err)
	}
	res, err := up(true, true)
	if err != nil {
		t.Fatalf("up --rebase --dry-run: %v", err)
	}
	if got := actions(res.Plan); got["web"] != remount.UpRebase {
		t.Errorf("dry run: got %v, want web rebased", got)
	}
	if len(res.Rebases) != 1 || res.Rebases[0].Rebase == nil || len(res.Rebases[0].Rebase.Conflicts) != 1 ||
		res.Rebases[0].Rebase.Conflicts[0].Path != "/app/conf.txt" {
		t.Errorf("dry run rebases: got %+v, want one with the conflict on /app/conf.txt", res.Rebases)
	}
	if id := f.compose(t, "ps", "-q", "web"); id != old {
		t.Errorf("dry run changed the container: got %s, want %s", id, old)
	}
	if _, err := up(false, true); err != nil {
		t.Fatalf("up --rebase: %v", err)
	}
	want := "added\nv2\nv2\nnew\n750 0:0 /opt/tool/bin/t\n600 1000:1000 /app/own.txt\nls: /app/del.txt: No such file or directory"
	if got := f.files(t); got != want {
		t.Errorf("files after up --rebase:\ngot  %q\nwant %q", got, want)
	}
	id := f.compose(t, "ps", "-q", "web")
	f.compose(t, "up", "-d")
	if after := f.compose(t, "ps", "-q", "web"); after != id {
		t.Errorf("docker compose up -d after up --rebase recreated the container: got %s, want %s", after, id)
	}
}

// TestRebaseKilled kills a rebase with SIGKILL right after the old layer's
// commit (before the rebase) and after compose replaced the old container, then
// resumes or rolls back.
func TestRebaseKilled(t *testing.T) {
	for _, tc := range []struct {
		step     string
		rollback bool
	}{{"committed", false}, {"composed", true}} {
		t.Run(tc.step, func(t *testing.T) {
			f := setupRebase(t)
			dockertest.Docker(t, "tag", f.v2, f.cur)
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "REMOUNT_TEST_CHILD=run", "REMOUNT_TEST_PROJECT="+f.name, "REMOUNT_TEST_REBASE=1",
				"REMOUNT_TEST_FILE="+f.copts.Files[0], crashAfter(tc.step))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !ee.ProcessState.Sys().(interface{ Signaled() bool }).Signaled() {
				t.Fatalf("child: got %v (%s), want it killed", err, out)
			}
			if tc.rollback {
				if _, err := remount.Rollback(context.Background(), f.eng, f.options(t)); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				if got := f.files(t); got != layerOnV1 {
					t.Errorf("files after the rollback:\ngot  %q\nwant %q", got, layerOnV1)
				}
				return
			}
			res, err := remount.Resume(context.Background(), f.eng, f.options(t))
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			want := "added\nv2\nv2\nnew\n750 0:0 /opt/tool/bin/t\n600 1000:1000 /app/own.txt\nls: /app/del.txt: No such file or directory"
			if got := f.files(t); got != want {
				t.Errorf("files after resume:\ngot  %q\nwant %q", got, want)
			}
			id := f.compose(t, "ps", "-q", "web")
			if img := dockertest.Docker(t, "inspect", "-f", "{{.Image}}", id); res.SnapshotID == "" || img == res.SnapshotID {
				t.Errorf("container image after resume: got %s, want the rebased image, not the snapshot %s", img, res.SnapshotID)
			}
		})
	}
}

// TestUpRebaseJoined: openclaw's shape with the gateway's image rebuilt: up
// --rebase rebases the gateway and remounts the CLI joined to it, both layers kept.
func TestUpRebaseJoined(t *testing.T) {
	f := setupClaw(t)
	rebuilt := dockertest.Name("rbjoined") + ":1"
	if out, err := dockertest.Run("sh", "-c", "printf 'FROM "+dockertest.BusyboxImage+"\\nLABEL rebuilt=1\\n' | docker build -q -t "+rebuilt+" -"); err != nil {
		t.Fatalf("building %s: %v %s", rebuilt, err, out)
	}
	t.Cleanup(func() { dockertest.Run("docker", "rmi", rebuilt) })
	content := clawFile("1", "1", runLoop)
	i := strings.Index(content, dockertest.BusyboxImage)
	f.write(t, content[:i]+rebuilt+content[i+len(dockertest.BusyboxImage):])
	o := f.opts(t, gateway)
	if _, err := remount.Up(context.Background(), f.eng, remount.UpOptions{Project: o.Project, WaitTimeout: o.WaitTimeout, Rebase: true}); err != nil {
		t.Fatalf("up --rebase: %v", err)
	}
	for _, tc := range []struct{ service, kept string }{{gateway, "gateway"}, {cli, "cli"}} {
		if got := f.compose(t, "exec", "-T", tc.service, "sh", "-c", "cat /opt/kept /data/d"); got != tc.kept+"\nshared" {
			t.Errorf("%s: got %q, want %q", tc.service, got, tc.kept+"\nshared")
		}
	}
	gwID, cliID := f.id(t, gateway), f.id(t, cli)
	if got := dockertest.Docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", cliID); got != "container:"+gwID {
		t.Errorf("cli network mode: got %q, want container:%s", got, gwID)
	}
	img := dockertest.Docker(t, "inspect", "-f", "{{.Image}}", gwID)
	base := dockertest.Docker(t, "image", "inspect", "-f", `{{index .Config.Labels "`+remount.LabelBaseImageID+`"}}`, img)
	if want := dockertest.Docker(t, "image", "inspect", "-f", "{{.Id}}", rebuilt); base != want {
		t.Errorf("gateway's image base: got %q, want the rebuilt %s", base, want)
	}
	f.compose(t, "up", "-d")
	if g2, c2 := f.id(t, gateway), f.id(t, cli); g2 != gwID || c2 != cliID {
		t.Errorf("docker compose up -d recreated: gateway %s -> %s, cli %s -> %s", gwID, g2, cliID, c2)
	}
}
