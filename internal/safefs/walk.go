package safefs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// Entry is what a manifest records about one file system entry.
type Entry struct {
	Type   uint32 // S_IFMT bits
	Mode   uint32 // permission bits with setuid, setgid and sticky (07777)
	UID    uint32
	GID    uint32
	Size   int64
	Blocks int64 // 512-byte blocks allocated
	Mtime  int64 // ns since the epoch
	Ctime  int64 // ns since the epoch
	Dev    uint64
	Ino    uint64
	Nlink  uint64
	Rdev   uint64
	Link   string            // symlink target
	Xattrs map[string][]byte `json:",omitempty"` // only in verification manifests
	Hash   string            `json:",omitempty"` // sha256 of the content, only when asked
}

// EntryOf is the Entry of an lstat.
func EntryOf(st *unix.Stat_t) *Entry {
	return &Entry{
		Type: st.Mode & unix.S_IFMT, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Size: st.Size, Blocks: st.Blocks,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
		Dev: uint64(st.Dev), Ino: st.Ino, Nlink: uint64(st.Nlink), Rdev: uint64(st.Rdev),
	}
}

// TypeName names an S_IFMT type for messages.
func TypeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

type devIno struct{ dev, ino uint64 }

// OpenDir opens the directory name under dirfd without following a symlink in
// its last component; when st is set it checks that it is still the entry st
// describes (else ENOENT: replaced while we looked, treat as vanished).
func OpenDir(dirfd int, name string, st *unix.Stat_t) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if st != nil {
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil {
			unix.Close(fd)
			return nil, err
		}
		if now.Dev != st.Dev || now.Ino != st.Ino {
			unix.Close(fd)
			return nil, unix.ENOENT
		}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// OpenRoot opens a tree's root directory (symlinks in the path are followed:
// the caller names the tree).
func OpenRoot(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openFileNoFollow opens a regular file (or fifo) for reading without
// following symlinks or blocking, without updating its atime when allowed.
func openFileNoFollow(dirfd int, name string) (int, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	return fd, err
}

// listAt lists the open directory dirfd, sorted, through a descriptor of
// its own (dirfd's offset is left alone).
func listAt(dirfd int) ([]string, error) {
	d, err := OpenDir(dirfd, ".", nil)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return ReadNames(d)
}

// ReadNames lists a directory, sorted.
func ReadNames(d *os.File) ([]string, error) {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// fdXattrs reads every extended attribute of an open file (ACLs and file
// capabilities included). Attributes the process may not read (trusted.*)
// are not listed by the kernel.
func fdXattrs(fd int) (map[string][]byte, error) {
	size, err := unix.Flistxattr(fd, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	size, err = unix.Flistxattr(fd, buf)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, name := range splitNul(buf[:size]) {
		n, err := unix.Fgetxattr(fd, name, nil)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %q: %w", name, err)
		}
		v := make([]byte, n)
		n, err = unix.Fgetxattr(fd, name, v)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %q: %w", name, err)
		}
		out[name] = v[:n]
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// sortedKeys returns the keys of an xattr map in order.
func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RemoveAt removes name under dirfd, recursively for a directory, never
// following symlinks. A missing entry is not an error.
func RemoveAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	d, err := OpenDir(dirfd, name, nil)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	names, err := ReadNames(d)
	if err == nil {
		for _, n := range names {
			if err = RemoveAt(int(d.Fd()), n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// Clear empties the directory dirfd, keeping the entry named keep ("" for
// none).
func Clear(dirfd int, keep string) error {
	names, err := listAt(dirfd)
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == keep {
			continue
		}
		if err := RemoveAt(dirfd, n); err != nil {
			return fmt.Errorf("removing %q: %w", n, err)
		}
	}
	return nil
}

// OpenBeneath opens the directory rel (slash-separated, relative) under rootfd
// one component at a time, refusing symlinks, so it never leaves the tree.
func OpenBeneath(rootfd int, rel string) (int, error) {
	fd, err := unix.Dup(rootfd)
	if err != nil {
		return -1, err
	}
	if rel == "." || rel == "" {
		return fd, nil
	}
	for _, c := range splitPath(rel) {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

func splitPath(rel string) []string {
	var out []string
	for rel != "" {
		i := 0
		for i < len(rel) && rel[i] != '/' {
			i++
		}
		out = append(out, rel[:i])
		if i == len(rel) {
			break
		}
		rel = rel[i+1:]
	}
	return out
}

// JoinRel joins a tree-relative directory ("." for the root) and a name.
func JoinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

func parentRel(rel string) string {
	d := path.Dir(rel)
	if d == "" {
		return "."
	}
	return d
}

func baseRel(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// setTimes sets an entry's atime and mtime, never following a symlink.
func setTimes(dirfd int, name string, atime, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// SetFdTimes sets the atime and mtime of an open file or directory.
func SetFdTimes(fd int, atime, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, ProcFd(fd), ts, 0)
}

// hashBufs holds hashFd's read buffers: allocating (and zeroing) one per file
// made hashing many small files several times slower than sha256sum.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// hashFd returns the sha256 of an open file's content.
func hashFd(fd int) (string, error) {
	h := sha256.New()
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	var off int64
	for {
		n, err := unix.Pread(fd, buf, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			break
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// IsNotExist reports whether err says an entry is gone (ENOENT, or ENOTDIR
// for a directory replaced by a file).
func IsNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// Lookup lstats name under dirfd; nil when it does not exist.
func Lookup(dirfd int, name string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking at %q: %w", name, err)
	}
	return &st, nil
}

// readlinkAt reads the target of the symlink name under dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
