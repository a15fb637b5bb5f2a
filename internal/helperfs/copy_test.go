package helperfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/safefs"
)

const testUID, testGID = 1000, 1000

func copyLocal(tb testing.TB, src, dst string, delta bool) *CopyResult {
	tb.Helper()
	res, err := copyPass(context.Background(), passOptions{Src: src, Dst: dst, UID: testUID, GID: testGID, Delta: delta, Workers: 2})
	if err != nil {
		tb.Fatalf("copy (delta %v): %v", delta, err)
	}
	return res
}

func verifyLocal(tb testing.TB, src, dst string, full bool) *VerifyReport {
	tb.Helper()
	rep, err := verifyTree(src, dst, verifyOptions{UID: testUID, GID: testGID, Full: full})
	if err != nil {
		tb.Fatalf("verify: %v", err)
	}
	return rep
}

func newDst(tb testing.TB) string {
	tb.Helper()
	d := filepath.Join(tb.TempDir(), "vol")
	must(tb, os.Mkdir(d, 0o755))
	return d
}

func TestCopyTreeKeepsEverything(t *testing.T) {
	tr := makeTree(t)
	dst := newDst(t)
	before := snapshot(t, tr.Src, "")
	outSt, outContent := statOutside(t, tr)

	res := copyLocal(t, tr.Src, dst, false)
	if res.Files == 0 || res.Bytes == 0 {
		t.Errorf("got %d files, %d bytes copied, want more", res.Files, res.Bytes)
	}
	rep := verifyLocal(t, tr.Src, dst, true)
	if len(rep.Differences) > 0 {
		t.Fatalf("verify: got differences %q, want none", rep.Differences)
	}
	if rep.Hashed == 0 {
		t.Errorf("got %d files hashed, want all", rep.Hashed)
	}

	got := snapshot(t, dst, StateDir)
	for p, e := range got {
		if e.UID != testUID || e.GID != testGID {
			t.Errorf("%q: got owner %d:%d, want %d:%d", p, e.UID, e.GID, testUID, testGID)
		}
	}
	checks := []struct {
		name string
		ok   func(e *safefs.Entry) bool
		want string
	}{
		{nSetuid, func(e *safefs.Entry) bool { return e.Mode == 0o4755 && len(e.Xattrs["security.capability"]) > 0 }, "mode 4755 and a capability"},
		{nSgidDir, func(e *safefs.Entry) bool { return e.Mode == 0o2775 }, "mode 2775"},
		{nSticky, func(e *safefs.Entry) bool { return e.Mode == 0o1777 }, "mode 1777"},
		{nSparse, func(e *safefs.Entry) bool { return e.Size == 8<<20 && e.Blocks*512 < 1<<20 }, "8 MiB with holes"},
		{nFifo, func(e *safefs.Entry) bool { return e.Type == unix.S_IFIFO }, "a fifo"},
		{nACL, func(e *safefs.Entry) bool {
			return len(e.Xattrs["system.posix_acl_access"]) > 0 && string(e.Xattrs["user.comment"]) == "a comment"
		}, "ACL and user xattr"},
		{nACLDir, func(e *safefs.Entry) bool { return len(e.Xattrs["system.posix_acl_default"]) > 0 }, "a default ACL"},
		{nLinkOut, func(e *safefs.Entry) bool { return e.Type == unix.S_IFLNK && e.Link == tr.Secret }, "a symlink to the outside file"},
		{nOutHard, func(e *safefs.Entry) bool { return e.Type == unix.S_IFREG && e.Nlink == 1 }, "a regular file on its own"},
		{nHard2, func(e *safefs.Entry) bool { return e.Nlink == 2 && e.Ino == got[nHard1].Ino }, "linked with " + nHard1},
		{nNewline, func(e *safefs.Entry) bool { return e.Type == unix.S_IFREG }, "a file"},
		{nUnicode, func(e *safefs.Entry) bool { return e.Type == unix.S_IFREG }, "a file"},
		{nEmptyDir, func(e *safefs.Entry) bool { return e.Type == unix.S_IFDIR && e.Mode == 0o700 }, "an empty directory"},
	}
	if before[nDev] != nil {
		checks = append(checks, struct {
			name string
			ok   func(e *safefs.Entry) bool
			want string
		}{nDev, func(e *safefs.Entry) bool { return e.Type == unix.S_IFCHR && e.Rdev == before[nDev].Rdev }, "the device node"})
	}
	for _, c := range checks {
		t.Run(strings.ReplaceAll(c.name, "/", "_"), func(t *testing.T) {
			e := got[c.name]
			if e == nil || !c.ok(e) {
				t.Errorf("%q: got %+v, want %s", c.name, e, c.want)
			}
		})
	}
	if got[nOutHard].Hash != before[nOutHard].Hash {
		t.Errorf("%q: content differs from the outside file", nOutHard)
	}

	sameSnapshot(t, "source", before, snapshot(t, tr.Src, ""))
	st, content := statOutside(t, tr)
	if st.Uid != outSt.Uid || st.Gid != outSt.Gid || st.Mode != outSt.Mode || st.Ctim != outSt.Ctim || content != outContent {
		t.Errorf("outside file changed: got %d:%d %o %q, want %d:%d %o %q", st.Uid, st.Gid, st.Mode, content, outSt.Uid, outSt.Gid, outSt.Mode, outContent)
	}
}

func TestCopyTreeKeepOwner(t *testing.T) {
	tr := makeTree(t)
	dst := newDst(t)
	if _, err := copyPass(context.Background(), passOptions{Src: tr.Src, Dst: dst, KeepOwner: true}); err != nil {
		t.Fatal(err)
	}
	rep, err := verifyTree(tr.Src, dst, verifyOptions{KeepOwner: true})
	must(t, err)
	if len(rep.Differences) > 0 {
		t.Fatalf("got differences %q, want none", rep.Differences)
	}
	got := snapshot(t, dst, StateDir)
	if e := got[nOther]; e.UID != 1234 || e.GID != 5678 {
		t.Errorf("%q: got owner %d:%d, want 1234:5678", nOther, e.UID, e.GID)
	}
}

// touch changes a file's content keeping its size, as an app rewriting state does.
func rewrite(tb testing.TB, p, content string) {
	tb.Helper()
	must(tb, os.WriteFile(p, []byte(content), 0o644))
}

func TestDeltaCopiesOnlyWhatChanged(t *testing.T) {
	tr := makeTree(t)
	dst := newDst(t)
	copyLocal(t, tr.Src, dst, false)
	s := func(n string) string { return filepath.Join(tr.Src, n) }

	rewrite(t, s("many/a/fa"), "DATA a")                    // changed content, same size
	must(t, os.Remove(s("many/b/fb")))                      // deleted
	writeFile(t, s("many/new file"), "new", 0o644)          // added
	must(t, os.Remove(s(nLinkIn)))                          // type change: symlink → directory
	must(t, os.Mkdir(s(nLinkIn), 0o755))                    //
	writeFile(t, s(nLinkIn+"/inside"), "in", 0o644)         //
	must(t, os.RemoveAll(s(nEmptyDir)))                     // type change: directory → file
	writeFile(t, s(nEmptyDir), "was a dir", 0o644)          //
	must(t, os.Chmod(s("plain.txt"), 0o600))                // metadata only
	must(t, os.Link(s(nSpaces), s("sub/link to spaces")))   // a new hardlink
	must(t, os.Rename(s(nUnicode), s("many/c/"+nUnicode)))  // moved
	must(t, os.Symlink(tr.Outside, s("sub/deeper/escape"))) // a symlink to an outside dir
	must(t, os.RemoveAll(s("sub/deeper/hard2")))            // a hardlink removed
	writeFile(t, s("sub/deeper/hard2"), "no longer linked", 0o644)

	res := copyLocal(t, tr.Src, dst, true)
	sort.Strings(res.Added)
	sort.Strings(res.Changed)
	sort.Strings(res.Removed)
	wantAdded := []string{nLinkIn + "/inside", "many/c/" + nUnicode, "many/new file", "sub/deeper/escape", "sub/link to spaces"}
	wantChanged := []string{nEmptyDir, nHard1, nLinkIn, "many/a/fa", nSpaces, "plain.txt", "sub/deeper/hard2"}
	wantRemoved := []string{"many/b/fb", nUnicode}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"added", res.Added, wantAdded}, {"changed", res.Changed, wantChanged}, {"removed", res.Removed, wantRemoved}} {
		// directories whose content changed are listed too; files must match exactly
		var files []string
		for _, p := range c.got {
			if e := snapshot(t, dst, StateDir)[p]; e == nil || e.Type != unix.S_IFDIR || p == nLinkIn {
				files = append(files, p)
			}
		}
		if !reflect.DeepEqual(files, c.want) {
			t.Errorf("%s: got %q, want %q", c.what, files, c.want)
		}
	}
	rep := verifyLocal(t, tr.Src, dst, false)
	if len(rep.Differences) > 0 {
		t.Fatalf("verify after delta: got differences %q, want none", rep.Differences)
	}
	if rep.Hashed < len(wantAdded) {
		t.Errorf("got %d files hashed, want at least the %d touched", rep.Hashed, len(wantAdded))
	}
	if rep := verifyLocal(t, tr.Src, dst, true); len(rep.Differences) > 0 {
		t.Fatalf("full verify after delta: got differences %q, want none", rep.Differences)
	}
	// nothing written through the escaping symlink
	entries, err := os.ReadDir(tr.Outside)
	must(t, err)
	if len(entries) != 1 {
		t.Errorf("outside dir: got %d entries, want 1", len(entries))
	}
	// a second delta with nothing changed copies nothing
	res = copyLocal(t, tr.Src, dst, true)
	if len(res.Added)+len(res.Changed)+len(res.Removed) != 0 || res.Bytes != 0 {
		t.Errorf("idle delta: got added %q changed %q removed %q, %d bytes, want nothing", res.Added, res.Changed, res.Removed, res.Bytes)
	}
}

func TestDeltaNeedsFullPass(t *testing.T) {
	src, dst := t.TempDir(), newDst(t)
	_, err := copyPass(context.Background(), passOptions{Src: src, Dst: dst, Delta: true})
	if !errors.Is(err, ErrNoFirstPass) {
		t.Fatalf("got %v, want ErrNoFirstPass", err)
	}
}

func TestFullPassAgainReplacesPartialCopy(t *testing.T) {
	tr := makeTree(t)
	dst := newDst(t)
	writeFile(t, filepath.Join(dst, "leftover"), "from an interrupted pass", 0o644)
	must(t, os.Symlink("/etc", filepath.Join(dst, "many")))
	copyLocal(t, tr.Src, dst, false)
	if rep := verifyLocal(t, tr.Src, dst, true); len(rep.Differences) > 0 {
		t.Fatalf("got differences %q, want none", rep.Differences)
	}
}

func TestVerifyCatchesDifferences(t *testing.T) {
	tr := makeTree(t)
	cases := []struct {
		name  string
		plant func(tb testing.TB, dst string)
		full  bool
		want  string
	}{
		{"content same size and mtime", func(tb testing.TB, dst string) {
			p := filepath.Join(dst, "plain.txt")
			var st unix.Stat_t
			must(tb, unix.Stat(p, &st))
			must(tb, os.WriteFile(p, []byte("HELLO\n"), 0o644))
			must(tb, unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim}))
		}, true, "plain.txt: content differs"},
		{"mode", func(tb testing.TB, dst string) { must(tb, os.Chmod(filepath.Join(dst, nSetuid), 0o755)) }, false, nSetuid + ": mode"},
		{"owner", func(tb testing.TB, dst string) { must(tb, os.Lchown(filepath.Join(dst, nLinkOut), 0, 0)) }, false, nLinkOut + ": owner 0:0"},
		{"xattr", func(tb testing.TB, dst string) {
			must(tb, unix.Removexattr(filepath.Join(dst, nACL), "user.comment"))
		}, false, nACL + ": xattr user.comment missing"},
		{"extra", func(tb testing.TB, dst string) { writeFile(tb, filepath.Join(dst, "extra"), "x", 0o644) }, false, "extra: in the volume"},
		{"missing", func(tb testing.TB, dst string) { must(tb, os.Remove(filepath.Join(dst, nFifo))) }, false, nFifo + ": missing"},
		{"hardlink broken", func(tb testing.TB, dst string) {
			p := filepath.Join(dst, nHard2)
			must(tb, os.Remove(p))
			writeFile(tb, p, "linked\n", 0o644)
		}, false, nHard2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := newDst(t)
			copyLocal(t, tr.Src, dst, false)
			c.plant(t, dst)
			rep := verifyLocal(t, tr.Src, dst, c.full)
			found := false
			for _, d := range rep.Differences {
				if strings.HasPrefix(d, c.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("got differences %q, want one starting with %q", rep.Differences, c.want)
			}
		})
	}
}

func TestParseOwner(t *testing.T) {
	cases := []struct {
		in       string
		keep     bool
		uid, gid int
		ok       bool
	}{{"1000:1000", false, 1000, 1000, true}, {"0:5", false, 0, 5, true}, {"node", false, 0, 0, false},
		{"1000", false, 0, 0, false}, {"", true, -1, -1, true}, {"", false, 0, 0, false}, {"-1:2", false, 0, 0, false}}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			u, g, err := ParseOwner(c.in, c.keep)
			if (err == nil) != c.ok || u != c.uid || g != c.gid {
				t.Errorf("got %d, %d, %v, want %d, %d, ok=%v", u, g, err, c.uid, c.gid, c.ok)
			}
		})
	}
}

func TestInterruptedFullPassDropsOldManifest(t *testing.T) {
	tr := makeTree(t)
	dst := newDst(t)
	copyLocal(t, tr.Src, dst, false)
	// a second full pass that fails half way (cancelled) must not leave the
	// first pass's manifest for a delta pass to trust
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := copyPass(ctx, passOptions{Src: tr.Src, Dst: dst, UID: testUID, GID: testGID}); err == nil {
		t.Fatal("cancelled full pass: got no error, want one")
	}
	_, err := copyPass(context.Background(), passOptions{Src: tr.Src, Dst: dst, UID: testUID, GID: testGID, Delta: true})
	if !errors.Is(err, ErrNoFirstPass) {
		t.Fatalf("delta after an interrupted full pass: got %v, want ErrNoFirstPass", err)
	}
}

func TestCopyTreeDoesNotEnterOtherMounts(t *testing.T) {
	src, other, dst := t.TempDir(), t.TempDir(), newDst(t)
	writeFile(t, filepath.Join(src, "kept"), "kept", 0o644)
	writeFile(t, filepath.Join(other, "foreign"), "from another mount", 0o644)
	must(t, os.Mkdir(filepath.Join(src, "mnt"), 0o755))
	dockertest.Root(t)
	if err := unix.Mount(other, filepath.Join(src, "mnt"), "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting a directory as root: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(src, "mnt"), unix.MNT_DETACH) })
	res := copyLocal(t, src, dst, false)
	if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0], "mnt: another mount") {
		t.Errorf("warnings: got %q, want one about mnt", res.Warnings)
	}
	if _, err := os.Lstat(filepath.Join(dst, "mnt")); !os.IsNotExist(err) {
		t.Errorf("mnt in the volume: got %v, want it absent", err)
	}
	rep := verifyLocal(t, src, dst, true)
	if len(rep.Differences) > 0 {
		t.Errorf("verify: got differences %q, want none", rep.Differences)
	}
}
