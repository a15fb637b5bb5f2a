package volumes

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"

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
	// Other packages' tests measure at the same time: look for this test's volumes only.
	mine := map[string]string{"io.moltctl.test": dockertest.Name("freespace")}
	sp, err := FreeSpace(ctx, eng, FreeSpaceOptions{Helper: h, KeepHelper: true, Labels: mine,
		DriverOpts: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Total != 8<<20 || sp.Free <= 0 || sp.Free > sp.Total || sp.FreeInodes <= 0 {
		t.Errorf("got %+v, want 8 MiB in all, some free, some inodes", *sp)
	}
	def, err := FreeSpace(ctx, eng, FreeSpaceOptions{Helper: h, KeepHelper: true, Labels: mine})
	if err != nil {
		t.Fatal(err)
	}
	if def.Total <= 8<<20 || def.Free <= 0 {
		t.Errorf("got %+v where the engine keeps its volumes, want a real file system", *def)
	}
	if out := dockertest.Docker(t, "volume", "ls", "-q", "--filter", "label="+LabelHelper+"=space", "--filter", "label=io.moltctl.test="+mine["io.moltctl.test"]); strings.Contains(out, "moltctl-space-") {
		t.Errorf("got throwaway volumes %q left, want none", out)
	}
}

// TestRemoveHelperInUse: a dry-run's FreeSpace imports the helper image and
// removes it again; when another run of the same binary started a helper
// container from it meanwhile, the image stays for that run and FreeSpace
// still answers.
func TestRemoveHelperInUse(t *testing.T) {
	eng := dockertest.Engine(t)
	h := helperOpts(t)
	ctx := context.Background()
	must(t, RemoveHelper(ctx, eng, h))
	ref, _, err := helperRef(h)
	must(t, err)
	other := &otherRun{Engine: eng, ref: ref}
	t.Cleanup(func() {
		if other.id != "" {
			eng.ContainerRemove(ctx, other.id, client.ContainerRemoveOptions{Force: true})
		}
		RemoveHelper(ctx, eng, h)
	})
	if _, err := FreeSpace(ctx, other, FreeSpaceOptions{Helper: h}); err != nil {
		t.Fatalf("got %v, want the free space while another run uses the helper image", err)
	}
	if other.id == "" {
		t.Fatal("got no removal of the helper image, want FreeSpace to remove the image it imported")
	}
	if _, err := eng.ImageInspect(ctx, ref); err != nil {
		t.Errorf("got %v, want the helper image kept for the run that uses it", err)
	}
}

// otherRun creates a container from the helper image just before the first
// removal of it, as a concurrent migration would.
type otherRun struct {
	Engine
	ref string
	id  string
}

func (o *otherRun) ImageRemove(ctx context.Context, ref string, opts client.ImageRemoveOptions) (client.ImageRemoveResult, error) {
	if ref == o.ref && o.id == "" {
		c, err := o.Engine.ContainerCreate(ctx, client.ContainerCreateOptions{Image: ref, Name: "moltctl-other-run-" + randHex()})
		if err != nil {
			return client.ImageRemoveResult{}, err
		}
		o.id = c.ID
	}
	return o.Engine.ImageRemove(ctx, ref, opts)
}
