package remount_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// killAfter runs a remount of web in a child process killed (SIGKILL) right
// after the journal step, with the compose file already changed to newCompose.
func (f *fixture) killAfter(tb testing.TB, step string) {
	tb.Helper()
	f.write(tb, newCompose)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "REMOUNT_TEST_CHILD=run", "REMOUNT_TEST_PROJECT="+f.name,
		"REMOUNT_TEST_FILE="+f.copts.Files[0], crashAfter(step))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.ProcessState.Sys().(interface{ Signaled() bool }).Signaled() {
		tb.Fatalf("child: got %v (%s), want it killed after %s", err, out, step)
	}
}

// deadEngine shows one container as an engine that died while removing it
// shows it after its restart: Dead, and refusing to start.
type deadEngine struct {
	remount.Engine
	id string
}

func (e *deadEngine) ContainerInspect(ctx context.Context, id string, o client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	res, err := e.Engine.ContainerInspect(ctx, id, o)
	if err == nil && res.Container.ID == e.id && res.Container.State != nil {
		st := *res.Container.State
		st.Dead, st.Running, st.Status = true, false, container.StateDead
		res.Container.State = &st
	}
	return res, err
}

func (e *deadEngine) ContainerList(ctx context.Context, o client.ContainerListOptions) (client.ContainerListResult, error) {
	res, err := e.Engine.ContainerList(ctx, o)
	for i := range res.Items {
		if res.Items[i].ID == e.id {
			res.Items[i].State = container.StateDead
		}
	}
	return res, err
}

func (e *deadEngine) ContainerStart(ctx context.Context, id string, o client.ContainerStartOptions) (client.ContainerStartResult, error) {
	if strings.HasPrefix(e.id, id) || id == e.id {
		return client.ContainerStartResult{}, errors.New("Error response from daemon: container is marked for removal and cannot be started")
	}
	return e.Engine.ContainerStart(ctx, id, o)
}

// TestRollbackDeadContainer: the engine died while compose removed the old
// container (remount killed at step composing); after the restart the old
// container is Dead. Rollback must not count on it: it recreates the service
// from the snapshot, which it keeps, with the old config and layer.
func TestRollbackDeadContainer(t *testing.T) {
	f := setup(t)
	old := f.containerID(t)
	f.killAfter(t, "composing")
	eng := &deadEngine{Engine: f.eng, id: old}
	f.write(t, baseCompose)
	res, err := remount.Rollback(context.Background(), eng, f.options(t))
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	f.checkRestored(t)
	if got := f.containerID(t); got == old {
		t.Errorf("got the Dead container %s back, want a new one on the snapshot", got)
	}
	if _, err := f.eng.ImageInspect(context.Background(), res.Snapshot); err != nil {
		t.Errorf("got snapshot %s removed (%v), want it kept: the restored container runs on it", res.Snapshot, err)
	}
	f.checkComposeKeeps(t)
}

// TestResumeStartsStopped: a private engine crashes (the daemon and its
// containers killed) after the new container started, with remount (killed
// after step started): Resume must not roll back a remount that stands: it
// starts the container, then checks it.
func TestResumeStartsStopped(t *testing.T) {
	pe := dockertest.NewPrivateEngine(t)
	f := setup(t)
	f.killAfter(t, "started")
	pe.Crash(t)
	pe.Start(t)
	if got := dockertest.Docker(t, "inspect", "-f", "{{.State.Status}}", f.containerID(t)); got != "exited" {
		t.Fatalf("got the new container %s after the engine's crash, want exited", got)
	}
	if _, err := remount.Resume(context.Background(), f.eng, f.options(t)); err != nil {
		t.Fatalf("resume: %v", err)
	}
	f.checkLayer(t)
	if env := f.env(t); !strings.Contains(env, "ADDED=yes") {
		t.Errorf("env after resume: got keys %v, want ADDED (the remount kept)", envKeys(env))
	}
	f.checkNoJournal(t)
}

// TestRemountPrunesChain: snapshots committed one on top of the other are
// pruned by --keep (their IDs can't be removed while newer ones build on them;
// their tags can).
func TestRemountPrunesChain(t *testing.T) {
	f := setup(t)
	var snaps []string
	var res *remount.Result
	for range 3 {
		var err error
		if res, err = remount.Run(context.Background(), f.eng, f.options(t)); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, res.Snapshot)
	}
	if !slices.Equal(res.Pruned, snaps[:1]) {
		t.Errorf("pruned: got %v, want [%s]", res.Pruned, snaps[0])
	}
	tags := dockertest.Docker(t, "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "label="+remount.LabelProject+"="+f.name)
	if got, want := strings.Fields(tags), []string{snaps[2], snaps[1]}; !slices.Equal(got, want) {
		t.Errorf("snapshots kept: got %v, want %v", got, want)
	}
	f.checkLayer(t)
}

// TestRemountRefusesStdin: -f - is refused before anything is looked at.
func TestRemountRefusesStdin(t *testing.T) {
	opts := remount.Options{Project: &compose.Project{Project: &types.Project{Name: "x"}, Options: compose.Options{Files: []string{"-"}}}, Service: "web"}
	for name, fn := range map[string]func(context.Context, remount.Engine, remount.Options) (*remount.Result, error){
		"run": remount.Run, "resume": remount.Resume, "rollback": remount.Rollback,
	} {
		if _, err := fn(context.Background(), nil, opts); !errors.Is(err, compose.ErrStdin) {
			t.Errorf("%s: got %v, want compose.ErrStdin", name, err)
		}
	}
}

// TestSnapshotKeepsNoSecrets: the snapshot image carries the base image's env
// and labels, not the values of the container's (compose's environment).
func TestSnapshotKeepsNoSecrets(t *testing.T) {
	f := setup(t)
	res, err := remount.Run(context.Background(), f.eng, f.options(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := dockertest.Docker(t, "image", "inspect", "-f", "{{json .Config.Env}} {{json .Config.Labels}}", res.Snapshot)
	if strings.Contains(cfg, "secret-value") || strings.Contains(cfg, `"com.docker.compose.project":"`+f.name) {
		t.Errorf("got snapshot config %s, want no env value or label value of the container", cfg)
	}
	if env := f.env(t); !strings.Contains(env, "OLDKEY=secret-value") {
		t.Errorf("got container env keys %v, want OLDKEY=secret-value from compose", envKeys(env))
	}
	f.checkLayer(t)
}
