package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/volumes"
)

// userImage builds, once per test, an image FROM the busybox test image with
// USER set, like moltbot's `USER node`, and removes it at cleanup.
func userImage(tb testing.TB, user string) string {
	tb.Helper()
	base := dockertest.Busybox(tb)
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nUSER "+user+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	tag := "moltctl-test/" + dockertest.Name("migrate-user") + ":1"
	dockertest.Docker(tb, "build", "-q", "-t", tag, dir)
	tb.Cleanup(func() { dockertest.Run("docker", "image", "rm", "-f", tag) })
	return tag
}

// fixture is a project directory with the kinds of bind sources the plan sorts.
type fixture struct {
	dir, file string
}

func newFixture(tb testing.TB, compose string) fixture {
	tb.Helper()
	dir := tb.TempDir()
	for _, d := range []string{"state/agents", "workspace", "empty", "other", "propagated"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"state/openclaw.json":  "{}\n",
		"workspace/AGENTS.md":  "# agents\n",
		"other/x":              "x\n",
		"gateway.env":          "KEY=secret\n",
		"state/agents/main.md": "hi\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	l, err := net.Listen("unix", filepath.Join(dir, "app.sock"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(compose), 0o640); err != nil {
		tb.Fatal(err)
	}
	return fixture{dir: dir, file: file}
}

func load(tb testing.TB, f fixture, name string) *compose.Project {
	tb.Helper()
	p, err := compose.Load(context.Background(), compose.Options{Files: []string{f.file}, ProjectName: name})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

const fixtureCompose = `services:
  gateway:
    image: IMAGE
    volumes:
      - ./state:/home/node/.openclaw          # state
      - type: bind
        source: ./workspace
        target: /home/node/workspace
      - ./empty:/home/node/.cache
      - ./gateway.env:/home/node/gateway.env:ro
      - ./app.sock:/run/app.sock
      - ./missing:/missing
      - /etc:/host/etc:ro
      - cache:/var/cache
      - ./propagated:/propagated
      - type: bind
        source: ./propagated
        target: /propagated-shared
        bind:
          propagation: rshared
  cli:
    image: IMAGE
    user: "1000:1000"
    volumes:
      - ./state:/home/node/.openclaw:ro
  tool:
    image: IMAGE
    user: root
    volumes:
      - ./other:/other
volumes:
  cache: {}
  empty: {}
`

// TestPrepare plans a project with every kind of bind source against the real
// engine, then applies the edits, checks that compose loads the rewritten file
// and that planning again finds nothing to convert.
func TestPrepare(t *testing.T) {
	eng := dockertest.Engine(t)
	image := userImage(t, "node")
	project := dockertest.Name("mig")
	// A volume of the same name that is not this project's: the key must avoid it.
	dockertest.Docker(t, "volume", "create", project+"_workspace")
	t.Cleanup(func() { dockertest.Run("docker", "volume", "rm", project+"_workspace") })

	f := newFixture(t, strings.ReplaceAll(fixtureCompose, "IMAGE", image))
	p := load(t, f, project)
	ctx := context.Background()
	plan, err := Prepare(ctx, eng, p, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type conv struct {
		volume, source, owner string
		empty                 bool
		mounts                int
	}
	var got []conv
	for _, c := range plan.Conversions {
		got = append(got, conv{c.Volume, strings.TrimPrefix(c.Source, f.dir), c.Owner, c.Empty, len(c.Mounts)})
		if c.Name != project+"_"+c.Volume {
			t.Errorf("got name %s, want %s_%s", c.Name, project, c.Volume)
		}
		for _, m := range c.Mounts {
			if m.File != f.file {
				t.Errorf("got file %s for %s:%s, want %s", m.File, m.Service, m.Target, f.file)
			}
		}
	}
	want := []conv{
		{"empty-2", "/empty", "1000:1000", true, 1},          // "empty" is an existing top-level key
		{"other", "/other", "0:0", false, 1},                 // root service: the directory's owner
		{"state", "/state", "1000:1000", false, 2},           // shared by gateway and cli
		{"workspace-2", "/workspace", "1000:1000", false, 1}, // a foreign volume has _workspace
	}
	if !slices.Equal(got, want) {
		t.Errorf("got conversions %+v, want %+v", got, want)
	}
	kept := map[string]string{}
	for _, k := range plan.Kept {
		kept[k.Target] = k.Reason
	}
	wantKept := map[string]string{
		"/home/node/gateway.env": ReasonFile,
		"/run/app.sock":          ReasonSocket,
		"/missing":               ReasonMissing,
		"/host/etc":              ReasonSystem,
		"/propagated":            ReasonSibling + " (service gateway at /propagated-shared: " + ReasonOptions + ")",
		"/propagated-shared":     ReasonOptions,
	}
	for target, reason := range wantKept {
		if kept[target] != reason {
			t.Errorf("got kept %s reason %q, want %q", target, kept[target], reason)
		}
	}
	if len(kept) != len(wantKept) {
		t.Errorf("got %d kept mounts %v, want %d", len(kept), kept, len(wantKept))
	}
	if want := []string{"cli", "gateway", "tool"}; !slices.Equal(plan.Services, want) {
		t.Errorf("got services %v, want %v", plan.Services, want)
	}
	if n := len(plan.Edits); n != 1 {
		t.Fatalf("got %d edits, want 1", n)
	}
	// This test's probes only: other packages' tests may be planning at the same time.
	if out := dockertest.Docker(t, "ps", "-a", "-q", "--filter", "label="+ProbeLabel, "--filter", "ancestor="+image); out != "" {
		t.Errorf("got probe containers %q left behind, want none", out)
	}

	before := composeConfig(t, f, project)
	if err := compose.Apply(plan.Edits); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(f.file + compose.BackupSuffix); err != nil || string(b) != string(plan.Edits[0].Old) {
		t.Errorf("got backup %q (%v), want the original content", b, err)
	}
	if fi, err := os.Stat(f.file); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("got mode %v (%v), want 0640 kept", fi.Mode().Perm(), err)
	}
	after := composeConfig(t, f, project)
	compareConfigs(t, before, after, plan)

	again, err := Prepare(ctx, eng, load(t, f, project), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Conversions) != 0 || len(again.Edits) != 0 {
		t.Errorf("planning again: got %d conversions and %d edits, want none", len(again.Conversions), len(again.Edits))
	}
}

// composeConfig runs the real `docker compose config --format json`.
func composeConfig(tb testing.TB, f fixture, project string, more ...string) map[string]any {
	tb.Helper()
	dockertest.Compose(tb)
	args := []string{"compose", "-p", project, "-f", f.file}
	for _, m := range more {
		args = append(args, "-f", m)
	}
	out := dockertest.Docker(tb, append(args, "config", "--format", "json")...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		tb.Fatalf("docker compose config: %v", err)
	}
	return m
}

// compareConfigs checks that before and after are identical except the converted
// mounts, which must be volume mounts of their key, and the added volumes.
func compareConfigs(tb testing.TB, before, after map[string]any, plan *Plan) {
	tb.Helper()
	converted := map[string]string{} // service\x00target -> key
	for _, c := range plan.Conversions {
		for _, m := range c.Mounts {
			converted[m.Service+"\x00"+m.Target] = c.Volume
		}
		vols := after["volumes"].(map[string]any)
		v, ok := vols[c.Volume].(map[string]any)
		if !ok || v["name"] != c.Name {
			tb.Errorf("got top-level volume %s = %v, want name %s", c.Volume, vols[c.Volume], c.Name)
		}
		delete(vols, c.Volume)
		if len(vols) == 0 {
			delete(after, "volumes")
		}
	}
	for _, cfg := range []map[string]any{before, after} {
		for name, s := range cfg["services"].(map[string]any) {
			svc := s.(map[string]any)
			vols, _ := svc["volumes"].([]any)
			for i, v := range vols {
				m := v.(map[string]any)
				key, ok := converted[name+"\x00"+m["target"].(string)]
				if !ok {
					continue
				}
				if cfg["services"] != nil && m["type"] == "volume" && m["source"] != key {
					tb.Errorf("service %s mount %s: got source %v, want %s", name, m["target"], m["source"], key)
				}
				vols[i] = "converted"
			}
		}
	}
	a, _ := json.MarshalIndent(before, "", " ")
	b, _ := json.MarshalIndent(after, "", " ")
	if string(a) != string(b) {
		tb.Errorf("docker compose config differs beyond the converted mounts:\nbefore %s\nafter %s", a, b)
	}
}

func TestPrepareOptions(t *testing.T) {
	eng := dockertest.Engine(t)
	image := userImage(t, "node")
	f := newFixture(t, strings.ReplaceAll(`x-moltctl:
  volume_names:
    ./workspace: ws
services:
  gateway:
    image: IMAGE
    volumes:
      - ./state:/state
      - ./workspace:/workspace
  other:
    image: IMAGE
    volumes:
      - ./other:/other
`, "IMAGE", image))
	project := dockertest.Name("mig")
	p := load(t, f, project)
	ctx := context.Background()
	tests := []struct {
		name    string
		opts    PlanOptions
		want    map[string]string // source base -> volume key@owner
		wantErr error
	}{
		{"defaults and x-moltctl", PlanOptions{}, map[string]string{"state": "state@1000:1000", "workspace": "ws@1000:1000", "other": "other@1000:1000"}, nil},
		{"flag wins over x-moltctl", PlanOptions{VolumeNames: map[string]string{"workspace": "work", f.dir + "/state": "st"}},
			map[string]string{"state": "st@1000:1000", "workspace": "work@1000:1000", "other": "other@1000:1000"}, nil},
		{"owner numeric", PlanOptions{Owner: "42:43"}, map[string]string{"state": "state@42:43", "workspace": "ws@42:43", "other": "other@42:43"}, nil},
		{"owner name from the image", PlanOptions{Owner: "nobody"}, map[string]string{"state": "state@65534:65534", "workspace": "ws@65534:65534", "other": "other@65534:65534"}, nil},
		{"owner name:group", PlanOptions{Owner: "node:root"}, map[string]string{"state": "state@1000:0", "workspace": "ws@1000:0", "other": "other@1000:0"}, nil},
		{"owner unknown uid gets gid 0", PlanOptions{Owner: "4242"}, map[string]string{"state": "state@4242:0", "workspace": "ws@4242:0", "other": "other@4242:0"}, nil},
		{"services", PlanOptions{Services: []string{"other"}}, map[string]string{"other": "other@1000:1000"}, nil},
		{"unknown user", PlanOptions{Owner: "ghost"}, nil, ErrInvalid},
		{"unknown service", PlanOptions{Services: []string{"nope"}}, nil, ErrInvalid},
		{"bad key", PlanOptions{VolumeNames: map[string]string{"state": "a/b"}}, nil, ErrInvalid},
		{"not converted", PlanOptions{VolumeNames: map[string]string{"gateway.env": "env"}}, nil, ErrInvalid},
		{"same key twice", PlanOptions{VolumeNames: map[string]string{"state": "x", "other": "x"}}, nil, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Prepare(ctx, eng, p, tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range plan.Conversions {
				got[filepath.Base(c.Source)] = c.Volume + "@" + c.Owner
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("got %s -> %s, want %s", k, got[k], v)
				}
			}
		})
	}
}

// failingEngine injects failures: every call fails with err.
type failingEngine struct{ err error }

func (e failingEngine) VolumeInspect(context.Context, string, client.VolumeInspectOptions) (client.VolumeInspectResult, error) {
	return client.VolumeInspectResult{}, e.err
}
func (e failingEngine) ImageInspect(context.Context, string, ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	return client.ImageInspectResult{}, e.err
}
func (e failingEngine) ContainerCreate(context.Context, client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	return client.ContainerCreateResult{}, e.err
}
func (e failingEngine) CopyFromContainer(context.Context, string, client.CopyFromContainerOptions) (client.CopyFromContainerResult, error) {
	return client.CopyFromContainerResult{}, e.err
}
func (e failingEngine) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	return client.ContainerListResult{}, e.err
}
func (e failingEngine) ContainerRemove(context.Context, string, client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	return client.ContainerRemoveResult{}, e.err
}

func TestPrepareWithoutEngine(t *testing.T) {
	f := newFixture(t, `services:
  app:
    image: example/none:1
    volumes:
      - ./state:/state
`)
	p := load(t, f, "noengine")
	ctx := context.Background()
	// a dry-run always plans: the owner is unknown, and a real run is refused
	if plan, err := Prepare(ctx, nil, p, PlanOptions{}); err != nil || !plan.NoEngine || plan.Conversions[0].Owner != OwnerUnknown {
		t.Errorf("got %v, %+v, want a plan with the owner unknown for lack of an engine", err, plan)
	} else if err := plan.Check(); !errors.Is(err, ErrOwnerUnknown) || !strings.Contains(err.Error(), ErrNoEngine.Error()) {
		t.Errorf("got %v, want ErrOwnerUnknown saying there is no engine", err)
	}
	plan, err := Prepare(ctx, nil, p, PlanOptions{Owner: "1000:1000"})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Conversions) != 1 || plan.Conversions[0].Owner != "1000:1000" {
		t.Errorf("got %+v, want state owned by 1000:1000", plan.Conversions)
	}
	boom := errors.New("engine exploded")
	if _, err := Prepare(ctx, failingEngine{boom}, p, PlanOptions{}); !errors.Is(err, boom) {
		t.Errorf("got %v, want the engine's error wrapped", err)
	}
	if plan, err := Prepare(ctx, nil, p, PlanOptions{Owner: "node"}); err != nil || !plan.NoEngine || plan.Conversions[0].OwnerFrom != OwnerFromUnknown {
		t.Errorf("got %v, %+v, want the owner unknown for a user name", err, plan)
	}
}

func TestDeriveKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/home/me/.openclaw", "openclaw"},
		{"/srv/My Data", "my-data"},
		{"/", ""},
		{"/a/__", ""},
		{"/a/état", "-tat"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := deriveKey(tt.in); got != tt.want && !(tt.want == "-tat" && got == "tat") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	tests := []struct{ src, want string }{
		{dir, ""},
		{file, ReasonFile},
		{filepath.Join(dir, "missing"), ReasonMissing},
		{"/", ReasonSystem},
		{"/etc", ReasonSystem},
		{"/proc/self", ReasonSystem},
		{"/dev/null", ReasonDevice},
		{"/var/lib/docker", ReasonSystem},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			facts, err := volumes.InspectSourcesLocal([]volumes.SourceRequest{{Path: tt.src}})
			if err != nil {
				t.Fatal(err)
			}
			if got := classify(tt.src, facts[tt.src]); got != tt.want && !(tt.src == "/var/lib/docker" && got == ReasonMissing) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPrepareOverrideAndInterpolation plans a project of a base file and an
// override file whose sources come from .env, applies the edits and compares the
// real `docker compose config` of both versions.
func TestPrepareOverrideAndInterpolation(t *testing.T) {
	eng := dockertest.Engine(t)
	image := userImage(t, "node")
	f := newFixture(t, strings.ReplaceAll(`services:
  gateway:
    image: IMAGE
    volumes:
      - ${STATE_DIR}:/home/node/.openclaw
`, "IMAGE", image))
	override := filepath.Join(f.dir, "compose.override.yaml")
	if err := os.WriteFile(override, []byte(`# local additions
services:
  gateway:
    volumes:
      - type: bind
        source: ${WORKSPACE_DIR:-./workspace}
        target: /home/node/workspace
        read_only: true
  cli:
    image: `+image+`
    volumes:
      - ${STATE_DIR}:/home/node/.openclaw
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, ".env"), []byte("STATE_DIR=./state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	project := dockertest.Name("mig")
	opts := compose.Options{Files: []string{f.file, override}, ProjectName: project}
	p, err := compose.Load(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The workspace is read-only everywhere: kept unless included.
	plan, err := Prepare(context.Background(), eng, p, PlanOptions{Include: []string{"workspace"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Conversions) != 2 || len(plan.Edits) != 2 {
		t.Fatalf("got %d conversions and %d edits, want 2 and 2", len(plan.Conversions), len(plan.Edits))
	}
	for _, c := range plan.Conversions {
		for _, m := range c.Mounts {
			want := override
			if m.Service == "gateway" && m.Target == "/home/node/.openclaw" {
				want = f.file
			}
			if m.File != want {
				t.Errorf("got file %s for %s:%s, want %s", m.File, m.Service, m.Target, want)
			}
		}
	}
	before := composeConfig(t, f, project, override)
	if err := compose.Apply(plan.Edits); err != nil {
		t.Fatal(err)
	}
	after := composeConfig(t, f, project, override)
	compareConfigs(t, before, after, plan)
	p2, err := compose.Load(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Prepare(context.Background(), eng, p2, PlanOptions{Include: []string{"workspace"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Conversions) != 0 {
		t.Errorf("planning again: got %+v, want nothing to convert", again.Conversions)
	}
}

// TestPrepareOwnerConflict: services that share a directory but run as different
// (non-root) users need --owner.
func TestPrepareOwnerConflict(t *testing.T) {
	eng := dockertest.Engine(t)
	image := userImage(t, "node")
	f := newFixture(t, strings.ReplaceAll(`services:
  a:
    image: IMAGE
    volumes: ["./state:/state"]
  b:
    image: IMAGE
    user: nobody
    volumes: ["./state:/state"]
  c:
    image: IMAGE
    user: "0"
    volumes: ["./state:/state"]
`, "IMAGE", image))
	p := load(t, f, dockertest.Name("mig"))
	_, err := Prepare(context.Background(), eng, p, PlanOptions{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "1000:1000, 65534:65534") {
		t.Fatalf("got %v, want ErrInvalid naming both owners", err)
	}
	plan, err := Prepare(context.Background(), eng, p, PlanOptions{Owner: "node"})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Conversions[0].Owner; got != "1000:1000" {
		t.Errorf("got owner %s, want 1000:1000", got)
	}
}

// TestPrepareSingleLetterDir: "d:/data" would read as a Windows drive path, so a
// directory named d gets the key d-data, and --volume-name refuses one letter.
func TestPrepareSingleLetterDir(t *testing.T) {
	f := newFixture(t, `services:
  app:
    image: example/app:1
    volumes:
      - ./d:/data
`)
	os.Mkdir(filepath.Join(f.dir, "d"), 0o755)
	p := load(t, f, "letters")
	plan, err := Prepare(context.Background(), nil, p, PlanOptions{Owner: "1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Conversions[0].Volume; got != "d-data" {
		t.Errorf("got key %s, want d-data", got)
	}
	if _, err := Prepare(context.Background(), nil, p, PlanOptions{Owner: "1:1", VolumeNames: map[string]string{"d": "x"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid for a one-letter key", err)
	}
}

// TestPrepareBootstrapUser: an image that starts as root and drops to
// MOLTCTL_USER (moltctl bootstrap) gives its data to that user; the service's
// environment overrides the image's.
func TestPrepareBootstrapUser(t *testing.T) {
	eng := dockertest.Engine(t)
	bootstrapImage := userImage(t, "root\nENV MOLTCTL_USER=node")
	rootImage := userImage(t, "root")
	tests := []struct {
		name, image, env, want string
	}{
		{"image env", bootstrapImage, "", "1000:1000"},
		{"service env overrides", bootstrapImage, "    environment: {MOLTCTL_USER: nobody}\n", "65534:65534"},
		{"service env on a root image", rootImage, "    environment: [MOLTCTL_USER=node]\n", "1000:1000"},
		{"root image: the directory's owner", rootImage, "", "0:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "services:\n  app:\n    image: "+tt.image+"\n"+tt.env+"    volumes: [\"./state:/state\"]\n")
			plan, err := Prepare(context.Background(), eng, load(t, f, dockertest.Name("mig")), PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := plan.Conversions[0].Owner; got != tt.want {
				t.Errorf("got owner %s, want %s", got, tt.want)
			}
		})
	}
}

// probeEngine lists probe containers and records what is removed.
type probeEngine struct {
	failingEngine
	items   []container.Summary
	removed []string
}

func (e *probeEngine) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	return client.ContainerListResult{Items: e.items}, nil
}
func (e *probeEngine) ContainerRemove(_ context.Context, id string, _ client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	e.removed = append(e.removed, id)
	return client.ContainerRemoveResult{}, nil
}

// TestRemoveStaleProbes: only probes a killed run left (never started, older
// than staleProbe) are removed; a probe another run uses now is not.
func TestRemoveStaleProbes(t *testing.T) {
	old := time.Now().Add(-time.Hour).Unix()
	e := &probeEngine{items: []container.Summary{
		{ID: "left", State: container.StateCreated, Created: old},
		{ID: "fresh", State: container.StateCreated, Created: time.Now().Unix()},
		{ID: "started", State: container.StateRunning, Created: old},
	}}
	removeStaleProbes(context.Background(), e)
	if !slices.Equal(e.removed, []string{"left"}) {
		t.Errorf("got removed %v, want [left]", e.removed)
	}
}
