package helperfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCopyTreeExclude copies a config directory that holds the workspace of
// another volume (the openclaw layout): the workspace's content stays out of
// the copy, full and delta, and out of the verification, while its directory
// is there, empty, owned by the planned owner, as the mount point.
func TestCopyTreeExclude(t *testing.T) {
	src := t.TempDir()
	for p, content := range map[string]string{
		"openclaw.json":            "{}\n",
		"agents/main.md":           "hi\n",
		"workspace/AGENTS.md":      "# agents\n",
		"workspace/notes/todo.txt": "todo\n",
	} {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(src, p), []byte(content), 0o644))
	}
	must(t, os.Chmod(filepath.Join(src, "workspace"), 0o750))
	dst := newDst(t)
	opts := passOptions{Src: src, Dst: dst, UID: testUID, GID: testGID, Exclude: []string{"workspace"}}
	res, err := copyPass(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 4 { // openclaw.json, agents, agents/main.md, workspace
		t.Errorf("got %d entries copied, want 4 (the workspace's content left out)", res.Files)
	}
	checkMountPoint(t, dst)

	// The service writes into both while the full pass is done.
	time.Sleep(10 * time.Millisecond)
	must(t, os.WriteFile(filepath.Join(src, "openclaw.json"), []byte(`{"v": 2}`+"\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "workspace/new.md"), []byte("new\n"), 0o644))
	opts.Delta = true
	if _, err := copyPass(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	checkMountPoint(t, dst)
	if b, err := os.ReadFile(filepath.Join(dst, "openclaw.json")); err != nil || string(b) != `{"v": 2}`+"\n" {
		t.Errorf("got openclaw.json %q (%v) after the delta, want the new content", b, err)
	}

	rep, err := verifyTree(src, dst, verifyOptions{UID: testUID, GID: testGID, Exclude: []string{"workspace"}, Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) > 0 {
		t.Errorf("verify with the exclusion: got differences %q, want none", rep.Differences)
	}
	rep, err = verifyTree(src, dst, verifyOptions{UID: testUID, GID: testGID, Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) == 0 {
		t.Errorf("verify without the exclusion: got no differences, want the workspace's content missing")
	}
}

// checkMountPoint fails unless dst/workspace is an empty directory with the
// source's mode owned by the test owner.
func checkMountPoint(tb testing.TB, dst string) {
	tb.Helper()
	names, err := os.ReadDir(filepath.Join(dst, "workspace"))
	if err != nil || len(names) != 0 {
		tb.Errorf("got workspace in the volume with %d entries (%v), want an empty directory", len(names), err)
	}
	var st unix.Stat_t
	must(tb, unix.Lstat(filepath.Join(dst, "workspace"), &st))
	if st.Uid != testUID || st.Gid != testGID || st.Mode&0o7777 != 0o750 {
		tb.Errorf("got workspace %d:%d mode %04o, want %d:%d 0750", st.Uid, st.Gid, st.Mode&0o7777, testUID, testGID)
	}
}
