package migrate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/volumes"
)

const bindVolumeCompose = `services:
  app:
    image: example/app:1
    volumes:
      - data:/data
      - type: volume
        source: data
        target: /data2
        read_only: true
volumes:
  data:
    driver: local
    driver_opts:
      type: none
      o: bind
      device: ./state
`

// TestPrepareBindVolumes: a bind-backed named volume (nodebb's
// driver_opts {type: none, o: bind, device: ...}) is listed with its reason,
// and converts into a plain named volume when its directory is included.
func TestPrepareBindVolumes(t *testing.T) {
	t.Run("listed", func(t *testing.T) {
		f := newFixture(t, bindVolumeCompose)
		plan, err := Prepare(context.Background(), nil, load(t, f, "bindvol"), PlanOptions{Owner: "1000:1000"})
		if err != nil {
			t.Fatal(err)
		}
		kept := keptOf(plan, filepath.Join(f.dir, "state"))
		if len(kept) != 2 || kept[0].Reason != ReasonBindVolume || len(plan.Conversions) != 0 || len(plan.Edits) != 0 {
			t.Errorf("got kept %+v, conversions %+v, want both mounts of ./state listed: %s", kept, plan.Conversions, ReasonBindVolume)
		}
	})
	t.Run("included", func(t *testing.T) {
		f := newFixture(t, bindVolumeCompose)
		plan := planAndCheck(t, load(t, f, "bindvol"), "state")
		c := conversionOf(plan, filepath.Join(f.dir, "state"))
		if c == nil || c.FromVolume != "data" || c.Volume == "data" {
			t.Fatalf("got conversions %+v kept %+v, want ./state converted from volume data into a new volume", plan.Conversions, plan.Kept)
		}
		if got, want := mountServices(c), []string{"app:/data", "app:/data2"}; !slices.Equal(got, want) {
			t.Errorf("got mounts %v, want %v", got, want)
		}
		again, err := Prepare(context.Background(), nil, load(t, f, "bindvol"), PlanOptions{Owner: "1000:1000", Include: []string{"state"}})
		if err != nil || len(again.Conversions) != 0 || len(again.Edits) != 0 {
			t.Errorf("planning again: got %+v, %v, want nothing to convert", again, err)
		}
	})
}

// TestRunBindVolume migrates a running service off a bind-backed named volume
// with --include: the data lands in a new volume owned by the planned owner,
// the service writes there, and compose up recreates nothing.
func TestRunBindVolume(t *testing.T) {
	l := &live{}
	l.name, l.file = newProject(t, "migbindvol", []string{"state", "state-2", "data"}, `  app:
    image: `+dockertest.Busybox(t)+`
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes:
      - data:/data
volumes:
  data:
    driver: local
    driver_opts: {type: none, o: bind, device: ./state}
`)
	l.dir = filepath.Dir(l.file)
	l.state = filepath.Join(l.dir, "state")
	for p, content := range map[string]string{"a.txt": "alpha\n", "sub/deep/c d é.txt": "gamma\n"} {
		os.MkdirAll(filepath.Dir(filepath.Join(l.state, p)), 0o755)
		if err := os.WriteFile(filepath.Join(l.state, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l.compose(t, "up", "-d")
	t.Cleanup(func() { dockertest.Run("docker", "compose", "-f", l.file, "down") })
	l.compose(t, "exec", "-T", "app", "sh", "-c", "echo layer >/tmp/layer.txt")
	if out, err := dockertest.Run("docker", "compose", "-f", l.file, "exec", "-T", "app", "touch", "/data/x"); err == nil {
		t.Fatalf("got the root-owned bind-backed volume writable by 1000 before the migration (%s), want EACCES", out)
	}
	l.opts = RunOptions{Project: selecting(l.file), Helper: volumes.HelperOptions{Binary: staticMoltctl(t)}, WaitTimeout: time.Second,
		Plan: PlanOptions{Include: []string{"state"}}}
	rep, err := Run(context.Background(), dockertest.Engine(t), fresh(t, l.opts))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Volumes) != 1 || !strings.HasPrefix(rep.Volumes[0].Name, l.name+"_") || rep.Volumes[0].Name == l.name+"_data" {
		t.Fatalf("got report %+v, want one new volume", rep)
	}
	l.checkSource(t)
	l.checkRunning(t, "volume")
	if got := strings.TrimSpace(dockertest.Docker(t, "inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}`, l.containerID(t))); got != rep.Volumes[0].Name {
		t.Errorf("got /data on volume %q, want %s", got, rep.Volumes[0].Name)
	}
	l.compose(t, "exec", "-T", "app", "sh", "-c", "echo new >/data/new.txt")
	if out, _ := dockertest.Run("docker", "compose", "-f", l.file, "up", "-d"); strings.Contains(out, "Recreate") {
		t.Errorf("got compose up -d %s, want nothing recreated", out)
	}
}
