package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/helperfs"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/safefs"
)

// copyBackCase is a bind directory (the test tree: files, symlinks, one
// pointing outside, hardlinks, xattrs, odd names) and a volume that was
// copied from it with the numeric owners kept, finished, and then written to
// the way a service would: a file added, one removed, one changed.
type copyBackCase struct {
	tr     *testTree
	vol    string
	before map[string]*safefs.Entry // the bind directory before the copy-back
	hopts  HelperOptions
}

func newCopyBackCase(tb testing.TB, eng Engine) *copyBackCase {
	tb.Helper()
	c := &copyBackCase{tr: makeTree(tb), hopts: helperOpts(tb)}
	c.vol = testVolume(tb, eng, CreateOptions{})
	ctx := context.Background()
	if _, err := Copy(ctx, eng, CopyOptions{Source: c.tr.Src, Volume: c.vol, KeepOwner: true, Helper: c.hopts}); err != nil {
		tb.Fatal(err)
	}
	if err := Finish(ctx, eng, FinishOptions{Volume: c.vol, Helper: c.hopts}); err != nil {
		tb.Fatal(err)
	}
	inVolume(tb, c.vol, `cd /v && echo written by the service >new.txt && chown 1000:1000 new.txt &&
		rm many/a/fa && echo changed >>plain.txt && mkdir -p newdir/deep && echo deep >newdir/deep/f && ln newdir/deep/f newdir/hl`)
	c.before = snapshot(tb, c.tr.Src, "")
	return c
}

func (c *copyBackCase) kept() string {
	return filepath.Join(filepath.Dir(c.tr.Src), helperfs.KeptName(filepath.Base(c.tr.Src), "mig1"))
}

func (c *copyBackCase) staging() string {
	return filepath.Join(filepath.Dir(c.tr.Src), helperfs.StagingName(filepath.Base(c.tr.Src), "mig1"))
}

// sameTree fails unless the tree at p is byte for byte the bind directory's
// previous content: every entry (content hash, owner, mode, mtime, xattrs,
// inode) as before; the root, renamed, only by owner, mode, mtime and inode.
func (c *copyBackCase) sameAsBefore(tb testing.TB, p string) {
	tb.Helper()
	after := snapshot(tb, p, "")
	sameSnapshotExcept(tb, c.before, after, ".")
	b, a := c.before["."], after["."]
	if a == nil || a.Ino != b.Ino || a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || a.Mtime != b.Mtime {
		tb.Errorf("%s: got root %+v, want %+v (renamed, unchanged)", p, a, b)
	}
}

// checkDone fails unless the copy-back is complete: the target equals the
// volume (Verify with the numeric owners kept and every content hash), the old
// content is kept aside unchanged, nothing else is left and the outside file
// the trees link to is untouched.
func (c *copyBackCase) checkDone(tb testing.TB, eng Engine, res *CopyBackResult, outSt unix.Stat_t, outContent string) {
	tb.Helper()
	if res.Target != c.tr.Src || res.Kept != c.kept() {
		tb.Errorf("got target %q kept %q, want %q and %q", res.Target, res.Kept, c.tr.Src, c.kept())
	}
	if _, err := Verify(context.Background(), eng, VerifyOptions{Source: c.tr.Src, Volume: c.vol, KeepOwner: true, Full: true, Helper: c.hopts}); err != nil {
		tb.Errorf("the target differs from the volume: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(c.tr.Src, "new.txt")); err != nil || string(b) != "written by the service\n" {
		tb.Errorf("got new.txt %q, %v in the target, want the service's file", b, err)
	}
	var st1, st2 unix.Stat_t
	must(tb, unix.Lstat(filepath.Join(c.tr.Src, nHard1), &st1))
	must(tb, unix.Lstat(filepath.Join(c.tr.Src, nHard2), &st2))
	if st1.Ino != st2.Ino {
		tb.Errorf("got %s and %s not hard-linked in the target", nHard1, nHard2)
	}
	if l, err := os.Readlink(filepath.Join(c.tr.Src, nLinkOut)); err != nil || l != c.tr.Secret {
		tb.Errorf("got %s -> %q, %v, want the symlink to %s kept as a link", nLinkOut, l, err, c.tr.Secret)
	}
	c.sameAsBefore(tb, c.kept())
	for _, p := range []string{c.staging(), filepath.Join(c.tr.Src, StateDir)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			tb.Errorf("got %s left behind (%v)", p, err)
		}
	}
	if st, content := statOutside(tb, c.tr); st.Mode != outSt.Mode || st.Uid != outSt.Uid || st.Mtim != outSt.Mtim || content != outContent {
		tb.Errorf("the file outside the tree changed")
	}
	noHelperLeft(tb, c.vol)
}

func TestEngineCopyBack(t *testing.T) {
	eng := dockertest.Engine(t)
	ctx := context.Background()
	c := newCopyBackCase(t, eng)
	outSt, outContent := statOutside(t, c.tr)
	var events []progress.Event
	res, err := CopyBack(ctx, eng, CopyBackOptions{Volume: c.vol, Target: c.tr.Src, ID: "mig1", Helper: c.hopts,
		Progress: func(e progress.Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed || res.Copy == nil || res.Verify == nil || res.Verify.Hashed < 20 {
		t.Errorf("got %+v, want a fresh copy with every file hashed", res)
	}
	if len(events) == 0 || events[len(events)-1].Files != res.Copy.Files {
		t.Errorf("got progress %+v for %d files, want a final report", events, res.Copy.Files)
	}
	for _, e := range events {
		if e.Step != progress.CopyBack || e.Phase != progress.Running || e.Target != c.vol || e.Source != c.tr.Src {
			t.Fatalf("got event %+v, want a running copy back of volume %s into %s", e, c.vol, c.tr.Src)
		}
	}
	c.checkDone(t, eng, res, outSt, outContent)

	// Again with the same ID: found done, nothing copied or moved.
	target := snapshot(t, c.tr.Src, "")
	again, err := CopyBack(ctx, eng, CopyBackOptions{Volume: c.vol, Target: c.tr.Src, ID: "mig1", Helper: c.hopts})
	if err != nil || !again.Resumed || again.Copy != nil || again.Kept != c.kept() {
		t.Fatalf("got %+v, %v the second time, want it found done", again, err)
	}
	sameSnapshot(t, "target after the second call", target, snapshot(t, c.tr.Src, ""))
	c.checkDone(t, eng, again, outSt, outContent)
}

func TestEngineCopyBackMissingTarget(t *testing.T) {
	eng := dockertest.Engine(t)
	c := newCopyBackCase(t, eng)
	must(t, os.RemoveAll(c.tr.Src))
	res, err := CopyBack(context.Background(), eng, CopyBackOptions{Volume: c.vol, Target: c.tr.Src, ID: "mig1", Helper: c.hopts})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != "" {
		t.Errorf("got kept %q, want none (there was no previous content)", res.Kept)
	}
	if _, err := Verify(context.Background(), eng, VerifyOptions{Source: c.tr.Src, Volume: c.vol, KeepOwner: true, Full: true, Helper: c.hopts}); err != nil {
		t.Errorf("the target differs from the volume: %v", err)
	}
	if _, err := os.Lstat(c.staging()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got the staging directory left (%v)", err)
	}
}

// TestEngineCopyBackCrash kills the helper (it exits at once, as under kill -9)
// after every step, checks that the old content is whole (in the target or
// aside) and that the target holds the old content or the verified copy, then
// runs the copy-back again and checks the result.
func TestEngineCopyBackCrash(t *testing.T) {
	eng := dockertest.Engine(t)
	for _, step := range []string{"staged", "copying", "copied", "verified", "marked", "exchanged", "renamed"} {
		t.Run(step, func(t *testing.T) {
			c := newCopyBackCase(t, eng)
			outSt, outContent := statOutside(t, c.tr)
			o := CopyBackOptions{Volume: c.vol, Target: c.tr.Src, ID: "mig1", Helper: c.hopts, crashAfter: step}
			if _, err := CopyBack(context.Background(), eng, o); err == nil || !strings.Contains(err.Error(), "status 137") {
				t.Fatalf("got %v, want the helper gone with status 137 after %s", err, step)
			}
			switch step {
			case "exchanged": // the target holds the copy, the old content the staging name
				c.sameAsBefore(t, c.staging())
				if _, err := os.Stat(filepath.Join(c.tr.Src, "new.txt")); err != nil {
					t.Errorf("got %v, want the copy in the target after the exchange", err)
				}
			case "renamed":
				c.sameAsBefore(t, c.kept())
			default: // nothing exchanged yet
				c.sameAsBefore(t, c.tr.Src)
			}
			o.crashAfter = ""
			res, err := CopyBack(context.Background(), eng, o)
			if err != nil {
				t.Fatal(err)
			}
			if exchanged := step == "exchanged" || step == "renamed"; res.Resumed != exchanged {
				t.Errorf("got resumed %v after a crash after %s, want %v", res.Resumed, step, exchanged)
			}
			c.checkDone(t, eng, res, outSt, outContent)
		})
	}
}

// TestEngineCopyBackRefused: every refusal is one line wrapping ErrRefused and
// changes nothing in the parent directory, the target or what the names hold.
func TestEngineCopyBackRefused(t *testing.T) {
	eng := dockertest.Engine(t)
	img := dockertest.Busybox(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, c *copyBackCase) (target string)
		want  string
	}{
		{"target is a symlink", func(t *testing.T, c *copyBackCase) string {
			l := filepath.Join(filepath.Dir(c.tr.Src), "link")
			must(t, os.Symlink(c.tr.Src, l))
			return l
		}, "is a symlink, not a directory"},
		{"target is a file", func(t *testing.T, c *copyBackCase) string {
			return filepath.Join(c.tr.Src, "plain.txt")
		}, "is a file, not a directory"},
		{"staging name taken", func(t *testing.T, c *copyBackCase) string {
			writeFile(t, filepath.Join(c.staging(), "precious"), "mine", 0o644)
			return c.tr.Src
		}, "is not a staging directory"},
		{"kept name taken by a file", func(t *testing.T, c *copyBackCase) string {
			writeFile(t, c.kept(), "mine", 0o644)
			return c.tr.Src
		}, "not moltctl's"},
		{"target is a mount point", func(t *testing.T, c *copyBackCase) string {
			m := filepath.Join(filepath.Dir(c.tr.Src), "mnt")
			must(t, os.Mkdir(m, 0o755))
			must(t, unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"))
			t.Cleanup(func() { unix.Unmount(m, unix.MNT_DETACH) })
			writeFile(t, filepath.Join(m, "f"), "on tmpfs", 0o644)
			return m
		}, "is a mount point"},
		{"parent read-only", func(t *testing.T, c *copyBackCase) string {
			ro := filepath.Join(filepath.Dir(c.tr.Src), "ro")
			must(t, os.Mkdir(ro, 0o755))
			must(t, unix.Mount("tmpfs", ro, "tmpfs", 0, "size=1m"))
			t.Cleanup(func() { unix.Unmount(ro, unix.MNT_DETACH) })
			writeFile(t, filepath.Join(ro, "state", "f"), "old", 0o644)
			must(t, unix.Mount("", ro, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""))
			return filepath.Join(ro, "state")
		}, "not writable"},
		{"target in use", func(t *testing.T, c *copyBackCase) string {
			name := dockertest.Name("copyback-user")
			t.Cleanup(func() { dockertest.Run("docker", "rm", "-f", name) })
			dockertest.Docker(t, "run", "-d", "--name", name, "-v", c.tr.Src+":/data", img, "sleep", "300")
			return c.tr.Src
		}, "running container copyback-user"},
		{"volume in use", func(t *testing.T, c *copyBackCase) string {
			name := dockertest.Name("copyback-user")
			t.Cleanup(func() { dockertest.Run("docker", "rm", "-f", name) })
			dockertest.Docker(t, "run", "-d", "--name", name, "-v", c.vol+":/data", img, "sleep", "300")
			return c.tr.Src
		}, "running container copyback-user"},
		{"volume missing", func(t *testing.T, c *copyBackCase) string {
			dockertest.Docker(t, "volume", "rm", c.vol)
			t.Cleanup(func() {
				if _, err := dockertest.Run("docker", "volume", "inspect", c.vol); err == nil {
					t.Errorf("got volume %s created by the refused copy-back", c.vol)
				}
			})
			return c.tr.Src
		}, "the volume does not exist"},
		{"volume not finished", func(t *testing.T, c *copyBackCase) string {
			inVolume(t, c.vol, "mkdir /v/"+StateDir)
			return c.tr.Src
		}, "unfinished copy state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCopyBackCase(t, eng)
			target := tt.setup(t, c)
			parent := filepath.Dir(target)
			before := snapshot(t, parent, "")
			_, err := CopyBack(context.Background(), eng, CopyBackOptions{Volume: c.vol, Target: target, ID: "mig1", Helper: c.hopts})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line wrapping ErrRefused saying %q", err, tt.want)
			}
			sameSnapshot(t, "the parent directory", before, snapshot(t, parent, ""))
			c.sameAsBefore(t, c.tr.Src)
			noHelperLeft(t, c.vol)
		})
	}
}

func TestCopyBackBadInputs(t *testing.T) {
	tests := []struct {
		name string
		o    CopyBackOptions
		want string
	}{
		{"no volume", CopyBackOptions{Target: "/srv/x", ID: "a"}, "no volume given"},
		{"relative target", CopyBackOptions{Volume: "v", Target: "x", ID: "a"}, "want an absolute path"},
		{"root target", CopyBackOptions{Volume: "v", Target: "/", ID: "a"}, "want an absolute path"},
		{"no id", CopyBackOptions{Volume: "v", Target: "/srv/x"}, `id ""`},
		{"id with a slash", CopyBackOptions{Volume: "v", Target: "/srv/x", ID: "a/b"}, `id "a/b"`},
		{"name too long", CopyBackOptions{Volume: "v", Target: "/srv/" + strings.Repeat("n", 240), ID: "a"}, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// nil engine: the inputs are refused before any engine call
			_, err := CopyBack(context.Background(), nil, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
