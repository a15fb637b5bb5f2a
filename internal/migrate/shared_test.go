package migrate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/compose"
)

// planAndCheck plans p without an engine, applies the edits and checks with
// the real `docker compose config` that only the converted mounts changed,
// each keeping its options; it returns the plan.
func planAndCheck(t *testing.T, p *compose.Project, include ...string) *Plan {
	t.Helper()
	plan, err := Prepare(context.Background(), nil, p, PlanOptions{Owner: "1000:1000", Include: include})
	if err != nil {
		t.Fatalf("got %v, want a plan", err)
	}
	before := corpusConfig(t, p)
	for _, e := range plan.Edits {
		if err := os.WriteFile(e.Path, e.New, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	compareConverted(t, before, corpusConfig(t, p), plan)
	return plan
}

func conversionOf(plan *Plan, src string) *Conversion {
	for i, c := range plan.Conversions {
		if c.Source == src {
			return &plan.Conversions[i]
		}
	}
	return nil
}

func keptOf(plan *Plan, src string) []Kept {
	var out []Kept
	for _, k := range plan.Kept {
		if k.Source == src {
			out = append(out, k)
		}
	}
	return out
}

func mountServices(c *Conversion) []string {
	var out []string
	for _, m := range c.Mounts {
		out = append(out, m.Service+":"+m.Target)
	}
	slices.Sort(out)
	return out
}

// TestPrepareAnchors: a mount reached through a YAML anchor converts when every
// use of the anchor converts alike, editing the anchor once (sentry self-hosted,
// airflow, netbox); else it stays a bind with a reason naming the anchor and
// the services, and nothing else is held back.
func TestPrepareAnchors(t *testing.T) {
	t.Run("every use converts", func(t *testing.T) {
		f := newFixture(t, `x-app: &app
  image: example/app:1
  volumes:
    - ./state:/state
x-full: &full
  <<: *app
  environment:
    FULL: "1"
services:
  a: *app
  b:
    <<: *app
  c:
    <<: *full
`)
		plan := planAndCheck(t, load(t, f, "anchors"))
		c := conversionOf(plan, filepath.Join(f.dir, "state"))
		if c == nil {
			t.Fatalf("got conversions %+v, want %s converted", plan.Conversions, filepath.Join(f.dir, "state"))
		}
		if got, want := mountServices(c), []string{"a:/state", "b:/state", "c:/state"}; !slices.Equal(got, want) {
			t.Errorf("got mounts %v, want %v", got, want)
		}
		if n := strings.Count(plan.Edits[0].Diff(), "\n-    - ./state:/state"); n != 1 {
			t.Errorf("got the anchor edited %d times, want once:\n%s", n, plan.Edits[0].Diff())
		}
	})
	t.Run("a use in another profile", func(t *testing.T) {
		f := newFixture(t, `x-app: &app
  image: example/app:1
  volumes:
    - ./state:/state
services:
  a:
    <<: *app
  debug:
    <<: *app
    profiles: [debug]
  other:
    image: example/app:1
    volumes:
      - ./other:/other
`)
		plan := planAndCheck(t, load(t, f, "anchors"))
		// Never a split: the plan sees every profile's services, so the anchor
		// converts for both.
		c := conversionOf(plan, filepath.Join(f.dir, "state"))
		if c == nil {
			t.Fatalf("got kept %+v, want ./state converted for a and debug", keptOf(plan, filepath.Join(f.dir, "state")))
		}
		if got, want := mountServices(c), []string{"a:/state", "debug:/state"}; !slices.Equal(got, want) {
			t.Errorf("got ./state converted for %v, want %v", got, want)
		}
		if conversionOf(plan, filepath.Join(f.dir, "other")) == nil {
			t.Errorf("got conversions %+v, want ./other converted all the same", plan.Conversions)
		}
	})
}

// TestPrepareSELinux: :z, :Z and bind.selinux convert with the label kept on
// the volume mount (supabase, mailcow, jitsi, lemmy); an empty directory with a
// label stays a bind, since compose drops the label of a nocopy mount.
func TestPrepareSELinux(t *testing.T) {
	f := newFixture(t, `services:
  app:
    image: example/app:1
    volumes:
      - ./state:/state:Z
      - ./other:/other:ro,z
      - type: bind
        source: ./workspace
        target: /workspace
        bind:
          selinux: z
      - ./empty:/empty:z
  writer:
    image: example/app:1
    volumes:
      - ./other:/other:z
`)
	plan := planAndCheck(t, load(t, f, "selinux"))
	for _, d := range []string{"state", "other", "workspace"} {
		if conversionOf(plan, filepath.Join(f.dir, d)) == nil {
			t.Errorf("got conversions %+v, want ./%s converted", plan.Conversions, d)
		}
	}
	if kept := keptOf(plan, filepath.Join(f.dir, "empty")); len(kept) != 1 || kept[0].Reason != ReasonSELinuxEmpty {
		t.Errorf("got kept %+v, want ./empty kept: %s", kept, ReasonSELinuxEmpty)
	}
}

// TestPrepareExtends: mounts declared in a file the services extend (zabbix)
// are rewritten there, once, with the volume declared in the project's file,
// when every service extending them converts alike; else they stay binds.
func TestPrepareExtends(t *testing.T) {
	common := `services:
  base:
    image: example/app:1
    volumes:
      - ./state:/state
`
	t.Run("every extender converts", func(t *testing.T) {
		f := newFixture(t, `services:
  web:
    extends:
      file: common.yaml
      service: base
  worker:
    extends:
      file: common.yaml
      service: base
`)
		if err := os.WriteFile(filepath.Join(f.dir, "common.yaml"), []byte(common), 0o644); err != nil {
			t.Fatal(err)
		}
		plan := planAndCheck(t, load(t, f, "extends"))
		c := conversionOf(plan, filepath.Join(f.dir, "state"))
		if c == nil {
			t.Fatalf("got conversions %+v kept %+v, want ./state converted", plan.Conversions, plan.Kept)
		}
		if got, want := mountServices(c), []string{"web:/state", "worker:/state"}; !slices.Equal(got, want) {
			t.Errorf("got mounts %v, want %v", got, want)
		}
		var paths []string
		for _, e := range plan.Edits {
			paths = append(paths, filepath.Base(e.Path))
		}
		if want := []string{"compose.yaml", "common.yaml"}; !slices.Equal(paths, want) {
			t.Errorf("got edits of %v, want %v (the volume in the project file, the mount in the extended one)", paths, want)
		}
	})
	t.Run("an extender in another profile", func(t *testing.T) {
		f := newFixture(t, `services:
  web:
    extends:
      file: common.yaml
      service: base
  worker:
    extends:
      file: common.yaml
      service: base
    profiles: [work]
`)
		if err := os.WriteFile(filepath.Join(f.dir, "common.yaml"), []byte(common), 0o644); err != nil {
			t.Fatal(err)
		}
		plan := planAndCheck(t, load(t, f, "extends"))
		// Never a split: the plan sees every profile's services, so the
		// extended service's mount converts for both (see TestPrepareAnchors).
		c := conversionOf(plan, filepath.Join(f.dir, "state"))
		if c == nil {
			t.Fatalf("got kept %+v, want ./state converted for web and worker", keptOf(plan, filepath.Join(f.dir, "state")))
		}
		if got, want := mountServices(c), []string{"web:/state", "worker:/state"}; !slices.Equal(got, want) {
			t.Errorf("got ./state converted for %v, want %v", got, want)
		}
	})
}
