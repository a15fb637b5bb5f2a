package volumes

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// entry is what a manifest records about one file system entry.
type entry struct {
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

func entryOf(st *unix.Stat_t) *entry {
	return &entry{
		Type: st.Mode & unix.S_IFMT, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Size: st.Size, Blocks: st.Blocks,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
		Dev: uint64(st.Dev), Ino: st.Ino, Nlink: uint64(st.Nlink), Rdev: uint64(st.Rdev),
	}
}

func typeName(t uint32) string {
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

// openDir opens the directory name under dirfd without following a symlink in
// its last component and checks that it is still the entry st describes.
func openDir(dirfd int, name string, st *unix.Stat_t) (*os.File, error) {
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
			return nil, unix.ENOENT // replaced while we looked: treat as vanished
		}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// openRoot opens a tree's root directory.
func openRoot(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// openFileNoFollow opens a regular file for reading without following symlinks,
// without updating its atime when allowed.
func openFileNoFollow(dirfd int, name string) (int, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	return fd, err
}

// readNames lists a directory, sorted.
func readNames(d *os.File) ([]string, error) {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// fdXattrs reads every extended attribute of an open file. Attributes the
// process may not read (trusted.*) are not listed by the kernel.
func fdXattrs(fd int) (map[string][]byte, error) {
	size, err := unix.Flistxattr(fd, nil)
	if err != nil {
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
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
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s: %w", name, err)
		}
		v := make([]byte, n)
		n, err = unix.Fgetxattr(fd, name, v)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s: %w", name, err)
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

// sortedKeys returns the keys of an xattr map in order, security.capability
// last is not needed: the caller sets attributes after chown.
func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// removeAt removes name under dirfd, recursively for a directory, never
// following symlinks. A missing entry is not an error.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	d, err := openDir(dirfd, name, nil)
	if err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	names, err := readNames(d)
	if err == nil {
		for _, n := range names {
			if err = removeAt(int(d.Fd()), n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// openBeneath opens the directory rel (slash-separated, relative) under rootfd
// one component at a time, refusing symlinks, so it never leaves the tree.
func openBeneath(rootfd int, rel string) (int, error) {
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

func joinRel(dir, name string) string {
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

// procFd is the path of an open descriptor, for the calls that have no fd form.
func procFd(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// setTimes sets an entry's atime and mtime to mtime, never following a symlink.
func setTimes(dirfd int, name string, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(mtime), unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// setFdTimes sets the times of an open file or directory.
func setFdTimes(fd int, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(mtime), unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, procFd(fd), ts, 0)
}

// hashFd returns the sha256 of an open file's content.
// hashBufs holds hashFd's read buffers: allocating (and zeroing) one per file
// made hashing many small files several times slower than sha256sum.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func hashFd(fd int) (string, error) {
	h := sha256.New()
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	var off int64
	for {
		n, err := unix.Pread(fd, buf, off)
		if err == unix.EINTR {
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

func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}
