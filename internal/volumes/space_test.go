package volumes

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "a/b/f"), make([]byte, 100_000), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "g"), []byte("x"), 0o644))
	must(t, os.Symlink("/etc", filepath.Join(dir, "link"))) // not followed
	got, err := Measure(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Files != 5 {
		t.Errorf("got %d files, want 5 (a, a/b, a/b/f, g, link)", got.Files)
	}
	if got.Bytes < 100_000 || got.Bytes > 1<<20 {
		t.Errorf("got %d bytes, want the 100 kB file's blocks and a few more", got.Bytes)
	}
	if _, err := Measure(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("got error %v, want one naming the missing directory", err)
	}
}

// TestFreeSpace measures a tmpfs volume of a known size through the engine
// and checks that the throwaway volume is gone afterwards.
func TestFreeSpace(t *testing.T) {
	eng := dockertest.Engine(t)
	h := helperOpts(t)
	ctx := context.Background()
	sp, err := FreeSpace(ctx, eng, FreeSpaceOptions{Helper: h, KeepHelper: true,
		DriverOpts: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Total != 8<<20 || sp.Free <= 0 || sp.Free > sp.Total || sp.FreeInodes <= 0 {
		t.Errorf("got %+v, want 8 MiB in all, some free, some inodes", *sp)
	}
	def, err := FreeSpace(ctx, eng, FreeSpaceOptions{Helper: h, KeepHelper: true})
	if err != nil {
		t.Fatal(err)
	}
	if def.Total <= 8<<20 || def.Free <= 0 {
		t.Errorf("got %+v where the engine keeps its volumes, want a real file system", *def)
	}
	if out := dockertest.Docker(t, "volume", "ls", "-q", "--filter", "label="+LabelHelper+"=space"); strings.Contains(out, "moltctl-space-") {
		t.Errorf("got throwaway volumes %q left, want none", out)
	}
}
