package migrate

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/volumes"
)

// TestRunTree migrates a root-owned tree holding every kind of entry, a
// symlink and a hardlink to a file outside it, names with spaces, non-ASCII
// and a newline, for a service running as 1000:1000. It checks, with a
// manifest independent of the copy engine: the volume equals the source
// (contents, modes, mtimes, xattrs, ACLs, file capability, sparseness, links,
// device and fifo), every entry of the volume belongs to 1000:1000, the
// outside file is untouched (owner, mode, content, ctime), the source is
// unchanged (ctime included), the service runs from the volume with its
// writable layer, and `docker compose up -d` recreates nothing and warns
// nothing.
func TestRunTree(t *testing.T) {
	tree := dockertest.NewTree(t)
	name, file := newProject(t, "migtree", []string{"src"}, `  app:
    image: `+dockertest.Busybox(t)+`
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes:
      - "`+tree.Src+`:/data"
`)
	eng := dockertest.Engine(t)
	dc := func(args ...string) string {
		t.Helper()
		return dockertest.Docker(t, append([]string{"compose", "-f", file}, args...)...)
	}
	dc("up", "-d")
	dc("exec", "-T", "app", "sh", "-c", "echo layer >/tmp/layer.txt")
	id := dc("ps", "-q", "app")
	source := dockertest.Manifest(t, tree.Src)
	// The oracle sees what it must compare.
	for p, want := range map[string]string{dockertest.TreeACL: "system.posix_acl_access=", dockertest.TreeSetuid: "security.capability=",
		dockertest.TreeSparse: " sparse", dockertest.TreeHard2: `linked to "hard1"`, dockertest.TreeLinkOut: "-> \"" + tree.Secret} {
		if !strings.Contains(source[p].What, want) {
			t.Fatalf("got manifest entry %q: %s, want it to show %s", p, source[p].What, want)
		}
	}
	var outside unix.Stat_t
	must(t, unix.Lstat(tree.Secret, &outside))

	rep, err := Run(context.Background(), eng, fresh(t, RunOptions{Project: selecting(file),
		Helper: volumes.HelperOptions{Binary: staticMoltctl(t)}, WaitTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	vol := name + "_src"
	if len(rep.Volumes) != 1 || rep.Volumes[0].Name != vol || rep.Volumes[0].Owner != "1000:1000" {
		t.Fatalf("got volumes %+v, want %s owned by 1000:1000", rep.Volumes, vol)
	}

	// The volume, read on the engine's host (the engine is local in tests).
	mp := dockertest.Docker(t, "volume", "inspect", "-f", "{{.Mountpoint}}", vol)
	got := dockertest.Manifest(t, mp)
	for p, want := range source {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%q: missing in the volume", p)
		case g.What != want.What:
			t.Errorf("%q: got %s, want %s", p, g.What, want.What)
		}
		if ok && g.Owner != "1000:1000" {
			t.Errorf("%q: got owner %s in the volume, want 1000:1000", p, g.Owner)
		}
	}
	for p := range got {
		if _, ok := source[p]; !ok {
			t.Errorf("%q: in the volume, not in the source", p)
		}
	}
	if g := got[dockertest.TreeOutHard].What; strings.Contains(g, "linked to") {
		t.Errorf("got %s, want the outside hardlink a file of its own in the volume", g)
	}

	// Nothing outside the volume was touched.
	var after unix.Stat_t
	must(t, unix.Lstat(tree.Secret, &after))
	if after.Uid != outside.Uid || after.Gid != outside.Gid || after.Mode != outside.Mode || after.Ctim != outside.Ctim {
		t.Errorf("got the outside file %d:%d %o ctime %v, want %d:%d %o ctime %v",
			after.Uid, after.Gid, after.Mode, after.Ctim, outside.Uid, outside.Gid, outside.Mode, outside.Ctim)
	}
	if b, _ := os.ReadFile(tree.Secret); string(b) != "outside secret" {
		t.Errorf("got the outside file %q, want it unchanged", b)
	}
	srcAfter := dockertest.Manifest(t, tree.Src)
	if len(srcAfter) != len(source) {
		t.Errorf("got %d entries in the source after, want %d", len(srcAfter), len(source))
	}
	for p, e := range srcAfter {
		if w := source[p]; e != w {
			t.Errorf("%q: the source changed: got %+v, want %+v", p, e, w)
		}
	}

	// The service runs from the volume with its writable layer, and compose keeps it.
	if got := dockertest.Docker(t, "inspect", "-f", `{{range .Mounts}}{{.Type}} {{.Name}}{{end}}`, dc("ps", "-q", "app")); got != "volume "+vol {
		t.Errorf("got /data mounted as %q, want volume %s", got, vol)
	}
	if got := dc("exec", "-T", "app", "cat", "/tmp/layer.txt", "/data/plain.txt"); got != "layer\nhello" {
		t.Errorf("got %q from the layer and the volume, want layer and hello", got)
	}
	newID := dc("ps", "-q", "app")
	if newID == id {
		t.Errorf("got the container unchanged, want it remounted")
	}
	b, err := exec.Command("docker", "compose", "-f", file, "up", "-d").CombinedOutput()
	// compose warns about a volume of someone else's ("not created by Docker
	// Compose", "not created for project") or of another config, all with
	// "already exists"; any warning at all fails.
	if up := string(b); err != nil || !strings.Contains(up, "Running") || strings.Contains(up, "Recreate") ||
		strings.Contains(up, "already exists") || strings.Contains(strings.ToLower(up), "warn") {
		t.Errorf("got `docker compose up -d` %v:\n%s\nwant the container Running, no recreate, no warning", err, up)
	}
	if got := dc("ps", "-q", "app"); got != newID {
		t.Errorf("got container %s after compose up, want %s kept", got, newID)
	}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
