package dockertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Names in the test tree (NewTree) worth checking one by one.
const (
	TreeSparse   = "sparse file"
	TreeSetuid   = "bin/setuid-cap"
	TreeFifo     = "fifo"
	TreeDev      = "dev-null"
	TreeACL      = "acl file.txt"
	TreeACLDir   = "acl dir"
	TreeHard1    = "hard1"
	TreeHard2    = "sub/deeper/hard2"
	TreeLinkIn   = "link-in"
	TreeLinkOut  = "link-out"
	TreeOutHard  = "outside-hard"
	TreeSpaces   = "name with spaces"
	TreeUnicode  = "naïve ünïcode 日本"
	TreeNewline  = "new\nline"
	TreeEmptyDir = "empty dir"
	TreeSgidDir  = "shared"
	TreeSticky   = "tmp"
	TreeOther    = "owned-by-1234"
)

// Tree is a source tree with every kind of entry a copy must keep, owned by
// root, beside an Outside directory that its symlink TreeLinkOut and its
// hardlink TreeOutHard point at (the file Secret).
type Tree struct {
	Src, Outside, Secret string
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// WriteFile writes a file with exactly mode, making its parent directories.
func WriteFile(tb testing.TB, p, content string, mode os.FileMode) {
	tb.Helper()
	must(tb, os.MkdirAll(filepath.Dir(p), 0o755))
	must(tb, os.WriteFile(p, []byte(content), mode))
	must(tb, os.Chmod(p, mode))
}

// ACLXattr encodes a POSIX access ACL: owner rw, user 4321 r, group r, mask r, other none.
func ACLXattr() []byte {
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

// CapXattr encodes a v2 file capability: cap_net_bind_service+ep.
func CapXattr() []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, []uint32{0x02000001, 1 << 10, 0, 0, 0})
	return b.Bytes()
}

// NewTree builds a Tree under a new temporary directory: regular, sparse,
// setuid files with a file capability, a fifo, a device node (when mknod is
// allowed), ACLs and user xattrs, hardlinks inside the tree and to Secret,
// symlinks inside, outside and dangling, names with spaces, non-ASCII and a
// newline, setgid and sticky directories, a file of another owner, and distinct
// old mtimes everywhere. It needs root.
func NewTree(tb testing.TB) *Tree {
	tb.Helper()
	Root(tb)
	base := tb.TempDir()
	must(tb, os.Chmod(base, 0o755))
	t := &Tree{Src: filepath.Join(base, "src"), Outside: filepath.Join(base, "outside")}
	t.Secret = filepath.Join(t.Outside, "secret")
	must(tb, os.MkdirAll(t.Src, 0o755))
	WriteFile(tb, t.Secret, "outside secret", 0o600)
	s := func(n string) string { return filepath.Join(t.Src, n) }

	WriteFile(tb, s("plain.txt"), "hello\n", 0o644)
	// sparse: data at 0 and at 6 MiB, holes around, 8 MiB long
	f, err := os.Create(s(TreeSparse))
	must(tb, err)
	f.WriteAt(bytes.Repeat([]byte("a"), 4096), 0)
	f.WriteAt(bytes.Repeat([]byte("b"), 4096), 6<<20)
	must(tb, f.Truncate(8<<20))
	f.Close()
	WriteFile(tb, s(TreeSetuid), "#!/bin/sh\n", 0o755)
	must(tb, unix.Setxattr(s(TreeSetuid), "security.capability", CapXattr(), 0))
	must(tb, unix.Chmod(s(TreeSetuid), 0o4755))
	must(tb, unix.Mkfifo(s(TreeFifo), 0o640))
	if err := unix.Mknod(s(TreeDev), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		tb.Logf("no device node in the test tree: %v", err)
	}
	WriteFile(tb, s(TreeACL), "acl\n", 0o640)
	must(tb, unix.Setxattr(s(TreeACL), "system.posix_acl_access", ACLXattr(), 0))
	must(tb, unix.Setxattr(s(TreeACL), "user.comment", []byte("a comment"), 0))
	must(tb, os.Mkdir(s(TreeACLDir), 0o750))
	must(tb, unix.Setxattr(s(TreeACLDir), "system.posix_acl_default", ACLXattr(), 0))
	must(tb, unix.Setxattr(s(TreeACLDir), "user.dir", []byte("d"), 0))
	WriteFile(tb, s(TreeHard1), "linked\n", 0o644)
	must(tb, os.MkdirAll(filepath.Dir(s(TreeHard2)), 0o755))
	must(tb, os.Link(s(TreeHard1), s(TreeHard2)))
	must(tb, os.Symlink("plain.txt", s(TreeLinkIn)))
	must(tb, os.Symlink(t.Secret, s(TreeLinkOut)))
	must(tb, os.Symlink("does/not/exist", s("dangling")))
	must(tb, os.Link(t.Secret, s(TreeOutHard)))
	WriteFile(tb, s(TreeSpaces), "spaces\n", 0o644)
	WriteFile(tb, s(TreeUnicode), "unicode\n", 0o644)
	WriteFile(tb, s(TreeNewline), "newline\n", 0o644)
	must(tb, os.Mkdir(s(TreeEmptyDir), 0o700))
	must(tb, os.Mkdir(s(TreeSgidDir), 0o755))
	must(tb, unix.Chmod(s(TreeSgidDir), 0o2775))
	must(tb, os.Mkdir(s(TreeSticky), 0o755))
	must(tb, unix.Chmod(s(TreeSticky), 0o1777))
	WriteFile(tb, s(TreeSgidDir+"/in-shared"), "x", 0o664)
	WriteFile(tb, s(TreeOther), "other owner\n", 0o600)
	must(tb, os.Lchown(s(TreeOther), 1234, 5678))
	must(tb, os.Lchown(s(TreeLinkIn), 1234, 5678))
	for i := 0; i < 20; i++ {
		WriteFile(tb, s(filepath.Join("many", string(rune('a'+i%5)), "f"+string(rune('a'+i)))), "data "+string(rune('a'+i)), 0o644)
	}
	// distinct, old mtimes everywhere, children before parents
	var paths []string
	must(tb, filepath.WalkDir(t.Src, func(p string, _ fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		ts := unix.NsecToTimespec(1500000000_123456789 + int64(i)*1000)
		must(tb, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	return t
}

// Entry is one entry of a Manifest: what a faithful copy keeps, as text, and
// its owner, apart.
type Entry struct {
	What  string // type, mode, size, mtime, link target, device, xattrs, content hash, sparseness, hardlink group
	Owner string // uid:gid
	Ctime int64  // ns; only for before/after checks of one tree
}

// Manifest walks root without following symlinks and describes every entry,
// independently of the code under test. Hardlinks are grouped by the first
// path (in walk order) of the inode within the tree.
func Manifest(tb testing.TB, root string) map[string]Entry {
	tb.Helper()
	m := map[string]Entry{}
	first := map[[2]uint64]string{}
	must(tb, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "mode %o mtime %d", st.Mode, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %q", target)
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(&b, " rdev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			fmt.Fprintf(&b, " size %d sha256 %s", st.Size, hex.EncodeToString(sum[:8]))
			if st.Blocks*512 < st.Size {
				b.WriteString(" sparse")
			}
			key := [2]uint64{st.Dev, st.Ino}
			if g, ok := first[key]; ok {
				fmt.Fprintf(&b, " linked to %q", g)
			} else {
				first[key] = rel
			}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			b.WriteString(xattrs(tb, p))
		}
		m[rel] = Entry{What: b.String(), Owner: fmt.Sprintf("%d:%d", st.Uid, st.Gid), Ctime: st.Ctim.Nano()}
		return nil
	}))
	return m
}

func xattrs(tb testing.TB, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		v := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(p, name, v)
		must(tb, err)
		fmt.Fprintf(&b, " %s=%x", name, v[:k])
	}
	return b.String()
}
