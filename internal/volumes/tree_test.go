package volumes

import (
	"bytes"
	"encoding/binary"
	"github.com/moltctl/moltctl/internal/dockertest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
)

// Names in the test tree worth checking one by one.
const (
	nSparse   = "sparse file"
	nSetuid   = "bin/setuid-cap"
	nFifo     = "fifo"
	nDev      = "dev-null"
	nACL      = "acl file.txt"
	nACLDir   = "acl dir"
	nHard1    = "hard1"
	nHard2    = "sub/deeper/hard2"
	nLinkIn   = "link-in"
	nLinkOut  = "link-out"
	nOutHard  = "outside-hard"
	nSpaces   = "name with spaces"
	nUnicode  = "naïve ünïcode 日本"
	nNewline  = "new\nline"
	nEmptyDir = "empty dir"
	nSgidDir  = "shared"
	nSticky   = "tmp"
	nOther    = "owned-by-1234"
)

// testTree is a source tree with every kind of entry, owned by root, next to
// an outside directory that its symlink and hardlink point at.
type testTree struct {
	Src, Outside, Secret string
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func writeFile(tb testing.TB, p, content string, mode os.FileMode) {
	tb.Helper()
	must(tb, os.MkdirAll(filepath.Dir(p), 0o755))
	must(tb, os.WriteFile(p, []byte(content), mode))
	must(tb, os.Chmod(p, mode))
}

// aclXattr encodes a POSIX access ACL: owner rw, user 4321 r, group r, mask r, other none.
func aclXattr() []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(2))
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{1, 6, 0xffffffff}, {2, 4, 4321}, {4, 4, 0xffffffff}, {0x10, 4, 0xffffffff}, {0x20, 0, 0xffffffff}} {
		binary.Write(&b, binary.LittleEndian, e.tag)
		binary.Write(&b, binary.LittleEndian, e.perm)
		binary.Write(&b, binary.LittleEndian, e.id)
	}
	return b.Bytes()
}

// capXattr encodes a v2 file capability: cap_net_bind_service+ep.
func capXattr() []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, []uint32{0x02000001, 1 << 10, 0, 0, 0})
	return b.Bytes()
}

// makeTree builds a testTree under a new temporary directory. It needs root.
func makeTree(tb testing.TB) *testTree {
	tb.Helper()
	dockertest.Root(tb)
	base := tb.TempDir()
	must(tb, os.Chmod(base, 0o755))
	t := &testTree{Src: filepath.Join(base, "src"), Outside: filepath.Join(base, "outside")}
	t.Secret = filepath.Join(t.Outside, "secret")
	must(tb, os.MkdirAll(t.Src, 0o755))
	writeFile(tb, t.Secret, "outside secret", 0o600)
	s := func(n string) string { return filepath.Join(t.Src, n) }

	writeFile(tb, s("plain.txt"), "hello\n", 0o644)
	// sparse: data at 0 and at 6 MiB, holes around, 8 MiB long
	f, err := os.Create(s(nSparse))
	must(tb, err)
	f.WriteAt(bytes.Repeat([]byte("a"), 4096), 0)
	f.WriteAt(bytes.Repeat([]byte("b"), 4096), 6<<20)
	must(tb, f.Truncate(8<<20))
	f.Close()
	writeFile(tb, s(nSetuid), "#!/bin/sh\n", 0o755)
	must(tb, unix.Setxattr(s(nSetuid), "security.capability", capXattr(), 0))
	must(tb, unix.Chmod(s(nSetuid), 0o4755))
	must(tb, unix.Mkfifo(s(nFifo), 0o640))
	if err := unix.Mknod(s(nDev), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		tb.Logf("no device node in the test tree: %v", err)
	}
	writeFile(tb, s(nACL), "acl\n", 0o640)
	must(tb, unix.Setxattr(s(nACL), "system.posix_acl_access", aclXattr(), 0))
	must(tb, unix.Setxattr(s(nACL), "user.comment", []byte("a comment"), 0))
	must(tb, os.Mkdir(s(nACLDir), 0o750))
	must(tb, unix.Setxattr(s(nACLDir), "system.posix_acl_default", aclXattr(), 0))
	must(tb, unix.Setxattr(s(nACLDir), "user.dir", []byte("d"), 0))
	writeFile(tb, s(nHard1), "linked\n", 0o644)
	must(tb, os.MkdirAll(filepath.Dir(s(nHard2)), 0o755))
	must(tb, os.Link(s(nHard1), s(nHard2)))
	must(tb, os.Symlink("plain.txt", s(nLinkIn)))
	must(tb, os.Symlink(t.Secret, s(nLinkOut)))
	must(tb, os.Symlink("does/not/exist", s("dangling")))
	must(tb, os.Link(t.Secret, s(nOutHard)))
	writeFile(tb, s(nSpaces), "spaces\n", 0o644)
	writeFile(tb, s(nUnicode), "unicode\n", 0o644)
	writeFile(tb, s(nNewline), "newline\n", 0o644)
	must(tb, os.Mkdir(s(nEmptyDir), 0o700))
	must(tb, os.Mkdir(s(nSgidDir), 0o755))
	must(tb, unix.Chmod(s(nSgidDir), 0o2775))
	must(tb, os.Mkdir(s(nSticky), 0o755))
	must(tb, unix.Chmod(s(nSticky), 0o1777))
	writeFile(tb, s(nSgidDir+"/in-shared"), "x", 0o664)
	writeFile(tb, s(nOther), "other owner\n", 0o600)
	must(tb, os.Lchown(s(nOther), 1234, 5678))
	must(tb, os.Lchown(s(nLinkIn), 1234, 5678))
	for i := 0; i < 20; i++ {
		writeFile(tb, s(filepath.Join("many", string(rune('a'+i%5)), "f"+string(rune('a'+i)))), "data "+string(rune('a'+i)), 0o644)
	}
	// distinct, old mtimes everywhere, directories last
	m, _, err := manifest(t.Src, "", nil)
	must(tb, err)
	var paths []string
	for p := range m {
		paths = append(paths, p)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths))) // children before parents
	for i, p := range paths {
		ts := []unix.Timespec{unix.NsecToTimespec(1500000000_123456789 + int64(i)*1000), unix.NsecToTimespec(1500000000_123456789 + int64(i)*1000)}
		must(tb, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(t.Src, p), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	return t
}

// snapshot is a manifest with every content hashed, for before/after comparisons.
func snapshot(tb testing.TB, root, skip string) map[string]*entry {
	tb.Helper()
	m, _, err := manifest(root, skip, func(string) bool { return true })
	must(tb, err)
	return m
}

func sameSnapshot(tb testing.TB, what string, before, after map[string]*entry) {
	tb.Helper()
	if len(before) != len(after) {
		tb.Errorf("%s: got %d entries, want %d", what, len(after), len(before))
	}
	for p, b := range before {
		if a := after[p]; !reflect.DeepEqual(a, b) {
			tb.Errorf("%s: %q changed: got %+v, want %+v", what, p, a, b)
		}
	}
}

func statOutside(tb testing.TB, t *testTree) (unix.Stat_t, string) {
	tb.Helper()
	var st unix.Stat_t
	must(tb, unix.Lstat(t.Secret, &st))
	b, err := os.ReadFile(t.Secret)
	must(tb, err)
	return st, string(b)
}
