package volumes

import (
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// TestInspectSources looks at one tree of every kind through the engine and
// on this host: both must say the same, the missing path must not be
// created, and the nesting must see through a symlink and a bind mount.
func TestInspectSources(t *testing.T) {
	eng := dockertest.Engine(t)
	dockertest.Root(t)
	h := helperOpts(t)
	dir := t.TempDir()
	p := func(rel string) string { return filepath.Join(dir, rel) }
	must(t, os.MkdirAll(p("data/inner/deep"), 0o755))
	must(t, os.WriteFile(p("data/f"), make([]byte, 100_000), 0o644))
	must(t, os.WriteFile(p("data/inner/g"), make([]byte, 50_000), 0o644))
	must(t, os.Mkdir(p("empty"), 0o700))
	must(t, os.Chown(p("empty"), 1234, 5678))
	must(t, os.WriteFile(p("file"), []byte("x"), 0o644))
	must(t, os.Symlink(p("data"), p("link")))
	must(t, os.MkdirAll(p("other/dir"), 0o755))
	must(t, os.Mkdir(p("data/mnt"), 0o755))
	// a bind mount of other/dir at data/mnt: the engine's host shows other/dir below data
	must(t, unix.Mount(p("other/dir"), p("data/mnt"), "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(p("data/mnt"), unix.MNT_DETACH) })
	l, err := net.Listen("unix", p("sock"))
	must(t, err)
	defer l.Close()
	reqs := []SourceRequest{
		{Path: p("data"), Measure: true, Bind: true},
		{Path: p("data/inner"), Measure: true, Bind: true},
		{Path: p("link"), Bind: true},
		{Path: p("other/dir"), Bind: true},
		{Path: p("empty"), Measure: true, Bind: true},
		{Path: p("file"), Bind: true},
		{Path: p("sock"), Bind: true},
		{Path: p("missing"), Measure: true, Bind: true},
		{Path: "/", Shallow: true},
	}
	local, err := InspectSourcesLocal(reqs)
	must(t, err)
	remote, err := InspectSources(context.Background(), eng, InspectSourcesOptions{Sources: reqs, Helper: h, KeepHelper: true})
	must(t, err)
	if _, err := os.Lstat(p("missing")); err == nil {
		t.Errorf("got %s created, want it left missing", p("missing"))
	}
	kinds := map[string]string{"data": KindDir, "data/inner": KindDir, "link": KindDir, "other/dir": KindDir, "empty": KindDir,
		"file": KindFile, "sock": KindSocket, "missing": KindMissing}
	for name, got := range map[string]map[string]*SourceInfo{"local": local, "engine": remote} {
		t.Run(name, func(t *testing.T) {
			for rel, want := range kinds {
				if s := got[p(rel)]; s == nil || s.Kind != want {
					t.Errorf("%s: got %+v, want kind %s", rel, s, want)
				}
			}
			if e := got[p("empty")]; !e.Empty || e.Owner != "1234:5678" || !e.Measured || e.Files != 0 {
				t.Errorf("empty: got %+v, want empty, owned by 1234:5678, measured 0 files", e)
			}
			d := got[p("data")]
			if d.Empty || !d.Measured || d.Files != 3 || d.Bytes < 100_000 || d.Bytes > 200_000 {
				t.Errorf("data: got %+v, want f, inner and mnt (inner's content left out, mnt not entered)", d)
			}
			if !slices.Contains(d.Mounts, "mnt") {
				t.Errorf("data: got mounts %q, want mnt", d.Mounts)
			}
			if in := got[p("data/inner")]; !in.Measured || in.Files != 2 {
				t.Errorf("data/inner: got %+v, want deep and g measured", in)
			}
			if d.Under[p("data/inner")] != "inner" || d.Under[p("link")] != "." {
				t.Errorf("data: got under %v, want inner at inner and link as the same directory", d.Under)
			}
			if got[p("link")].Under[p("data")] != "." {
				t.Errorf("link: got under %v, want data as the same directory", got[p("link")].Under)
			}
		})
	}
	// Only the engine's view knows a bind mount on the host shows other/dir below data.
	if rel := remote[p("data")].Under[p("other/dir")]; rel != "mnt" {
		t.Errorf("engine: got other/dir under data at %q, want mnt", rel)
	}
	for _, path := range slices.Sorted(maps.Keys(local)) {
		l, r := *local[path], *remote[path]
		l.Under, r.Under = nil, nil
		if path == "/" {
			continue // the client's root and the engine's are the same here, but mounts differ
		}
		if !reflect.DeepEqual(l, r) {
			t.Errorf("%s: got %+v through the engine, want %+v as on this host", path, r, l)
		}
	}
}
