package remount_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/remount"
)

const replicaCompose = `services:
  web:
    image: moltctl-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    scale: 2
    environment: {GEN: "1"}
    volumes: [/anon]
`

// setupReplicas starts a service with two replicas, each with its own file
// in its writable layer and in its anonymous volume.
func setupReplicas(tb testing.TB) (*fixture, []string) {
	tb.Helper()
	eng := dockertest.Engine(tb)
	dockertest.Busybox(tb)
	name := dockertest.Name("rep")
	anon := map[string]bool{}
	tb.Cleanup(func() {
		for v := range anon {
			dockertest.Run("docker", "volume", "rm", v)
		}
		ids, _ := dockertest.Run("docker", "images", "-q", "--filter", "label="+remount.LabelProject+"="+name)
		for _, id := range strings.Fields(ids) {
			dockertest.Run("docker", "rmi", "-f", id)
		}
	})
	dir := dockertest.Project(tb, name, replicaCompose)
	f := &fixture{name: name, dir: dir, eng: eng, anon: anon,
		copts: compose.Options{ProjectName: name, Files: []string{filepath.Join(dir, "compose.yaml")}}}
	// Runs before Project's down -v: the anonymous volumes carried over by name.
	tb.Cleanup(func() {
		ids, _ := dockertest.Run("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+name)
		for _, id := range strings.Fields(ids) {
			vs, _ := dockertest.Run("docker", "inspect", "-f", `{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}`, id)
			for _, v := range strings.Fields(vs) {
				f.anon[v] = true
			}
		}
	})
	if tb, ok := tb.(*testing.T); ok {
		tb.Setenv("MOLTCTL_STATE_DIR", tb.TempDir())
	}
	f.compose(tb, "up", "-d")
	names := []string{name + "-web-1", name + "-web-2"}
	for _, n := range names {
		dockertest.Docker(tb, "exec", n, "sh", "-c", "echo "+n+" > /who; echo "+n+" > /anon/who")
	}
	return f, names
}

func checkReplicas(tb testing.TB, names []string, gen string) {
	tb.Helper()
	for _, n := range names {
		if got := dockertest.Docker(tb, "exec", n, "sh", "-c", "cat /who /anon/who; echo $GEN"); got != n+"\n"+n+"\n"+gen {
			tb.Errorf("%s: got %q, want its own layer and volume files and GEN=%s", n, got, gen)
		}
	}
}

// TestRemountReplicas remounts a service with scale 2 one replica at a time:
// each keeps its own layer and anonymous volume, the other one runs
// meanwhile, and docker compose up -d afterwards recreates neither.
func TestRemountReplicas(t *testing.T) {
	f, names := setupReplicas(t)
	f.write(t, strings.Replace(replicaCompose, `GEN: "1"`, `GEN: "2"`, 1))
	opts := f.options(t)
	running := func() int {
		return len(strings.Fields(f.compose(t, "ps", "--status", "running", "-q", "web")))
	}
	var during []int
	opts.Progress = func(e progress.Event) {
		if e.Step == progress.Commit {
			during = append(during, running())
		}
	}
	res, err := remount.Run(context.Background(), f.eng, opts)
	if err != nil {
		t.Fatalf("remount: %v", err)
	}
	if len(res.Joined) != 1 {
		t.Errorf("result: got %d more replicas, want 1", len(res.Joined))
	}
	if len(during) != 2 || during[0] != 1 || during[1] != 1 {
		t.Errorf("replicas running while one was committed: got %v, want [1 1]", during)
	}
	checkReplicas(t, names, "2")
	ids := f.compose(t, "ps", "-q", "web")
	f.compose(t, "up", "-d")
	if got := f.compose(t, "ps", "-q", "web"); got != ids {
		t.Errorf("docker compose up -d recreated replicas: got %q, want %q", got, ids)
	}
	if n := len(strings.Fields(f.compose(t, "ps", "-a", "-q", "web"))); n != 2 {
		t.Errorf("containers of web: got %d, want 2 (the template removed)", n)
	}
}

// TestRemountReplicasRollsBack fails the start of the second replica: it is
// rolled back, the first stays remounted, both run.
func TestRemountReplicasRollsBack(t *testing.T) {
	f, names := setupReplicas(t)
	f.write(t, strings.Replace(replicaCompose, `GEN: "1"`, `GEN: "2"`, 1))
	eng := &faulty{Engine: f.eng, method: "ContainerStart", n: 2, calls: map[string]int{}}
	_, err := remount.Run(context.Background(), eng, f.options(t))
	if !errors.Is(err, errInjected) || !errors.Is(err, remount.ErrRolledBack) {
		t.Fatalf("remount: got %v, want the injected failure rolled back", err)
	}
	checkReplicas(t, names[:1], "2")
	checkReplicas(t, names[1:], "1")
	if n := len(strings.Fields(f.compose(t, "ps", "-a", "-q", "web"))); n != 2 {
		t.Errorf("containers of web: got %d, want 2", n)
	}
}

// TestRemountReplicasKilled kills the remount inside the first replica's and
// resumes (the rest is left to a second run) or rolls it back: the other
// replica is never touched by the recovery.
func TestRemountReplicasKilled(t *testing.T) {
	for _, tc := range []struct {
		step     string
		rollback bool
	}{
		{"committed", false},
		{"new-removed", true},
	} {
		t.Run(tc.step, func(t *testing.T) {
			f, names := setupReplicas(t)
			f.write(t, strings.Replace(replicaCompose, `GEN: "1"`, `GEN: "2"`, 1))
			second := dockertest.Docker(t, "inspect", "-f", "{{.Id}}", names[1])
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "REMOUNT_TEST_CHILD=run", "REMOUNT_TEST_PROJECT="+f.name,
				"REMOUNT_TEST_FILE="+f.copts.Files[0], crashAfter(tc.step))
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Fatalf("child: got success (%s), want it killed", out)
			}
			if tc.rollback {
				if _, err := remount.Rollback(context.Background(), f.eng, f.options(t)); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				checkReplicas(t, names, "1")
			} else {
				if _, err := remount.Resume(context.Background(), f.eng, f.options(t)); err != nil {
					t.Fatalf("resume: %v", err)
				}
				checkReplicas(t, names[:1], "2")
				checkReplicas(t, names[1:], "1")
			}
			if got := dockertest.Docker(t, "inspect", "-f", "{{.Id}}", names[1]); got != second {
				t.Errorf("second replica: got %s, want %s untouched", got, second)
			}
			if _, err := remount.Run(context.Background(), f.eng, f.options(t)); err != nil {
				t.Fatalf("remount after the recovery: %v", err)
			}
			checkReplicas(t, names, "2")
		})
	}
}
