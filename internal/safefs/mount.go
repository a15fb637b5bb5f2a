package safefs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// TestHooks replace system calls in the tests of packages built on safefs
// (a kernel without STATX_ATTR_MOUNT_ROOT, a file system that answers EINVAL
// to RENAME_NOREPLACE). Production code never sets them.
var TestHooks = struct {
	// StatxMountRoot asks whether name under dirfd (not followed) is a mount
	// root; known is false when the kernel or file system does not say.
	StatxMountRoot func(dirfd int, name string) (root, known bool, err error)
	// Renameat2 is unix.Renameat2.
	Renameat2 func(olddirfd int, oldpath string, newdirfd int, newpath string, flags uint) error
	// MountInfo is the mount table read by the fallback.
	MountInfo string
}{StatxMountRoot: statxMountRoot, Renameat2: unix.Renameat2, MountInfo: "/proc/self/mountinfo"}

// statxMountRoot asks statx whether name under dirfd (not followed) is a
// mount root. known is false when the kernel (before 5.8), a seccomp profile
// or the file system does not report STATX_ATTR_MOUNT_ROOT.
func statxMountRoot(dirfd int, name string) (root, known bool, err error) {
	var stx unix.Statx_t
	err = unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_BASIC_STATS, &stx)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, false, nil
	}
	return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, true, nil
}

// IsMountPoint reports whether path (not followed if it is a symlink) is the
// root of a mount: statx STATX_ATTR_MOUNT_ROOT where the kernel has it, else
// the mount table. Comparing st_dev with the parent would miss bind mounts
// of the same file system, so it is not used.
func IsMountPoint(path string) (bool, error) {
	root, known, err := TestHooks.StatxMountRoot(unix.AT_FDCWD, path)
	if err != nil {
		return false, fmt.Errorf("checking whether %q is a mount point: %w", path, err)
	}
	if known {
		return root, nil
	}
	return InMountTable(path)
}

// InMountTable reports whether path, its parent directory resolved, is listed
// as a mount point in /proc/self/mountinfo. Callers that saw EXDEV from a
// rename ask it too, in case statx was wrong.
func InMountTable(path string) (bool, error) {
	parent, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return false, fmt.Errorf("resolving %q: %w", filepath.Dir(path), err)
	}
	want := filepath.Join(parent, filepath.Base(path))
	points, err := MountPoints()
	if err != nil {
		return false, err
	}
	for _, p := range points {
		if p == want {
			return true, nil
		}
	}
	return false, nil
}

// Mount is one line of a mountinfo table (proc(5)).
type Mount struct {
	// Dev is the file system's "major:minor".
	Dev string
	// Root is the mounted directory's path inside its file system (a bind
	// mount's source).
	Root string
	// Point is where it is mounted.
	Point string
}

// Mounts returns this process's mount table.
func Mounts() ([]Mount, error) {
	f, err := os.Open(TestHooks.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	return ParseMountInfo(f)
}

// MountPoints returns every mount point of this process's mount table.
func MountPoints() ([]string, error) {
	mounts, err := Mounts()
	if err != nil {
		return nil, err
	}
	points := make([]string, len(mounts))
	for i, m := range mounts {
		points[i] = m.Point
	}
	return points, nil
}

// MountPointsUnder returns the mount points strictly below root (an absolute,
// resolved path) as a set of paths.
func MountPointsUnder(root string) (map[string]bool, error) {
	points, err := MountPoints()
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(root, "/") + "/"
	set := map[string]bool{}
	for _, p := range points {
		if strings.HasPrefix(p, prefix) {
			set[p] = true
		}
	}
	return set, nil
}

// ParseMountInfo parses a mountinfo table (proc(5): ID PARENT MAJ:MIN ROOT
// POINT ...), with the kernel's octal escapes (\040 space, \011 tab, \012
// newline, \134 backslash) decoded. Blank lines are skipped; a line with
// fewer than five fields is an error, not a mount point to miss.
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 5 {
			return nil, fmt.Errorf("parsing the mount table, line %d: %d fields, want at least 5", n, len(fields))
		}
		out = append(out, Mount{Dev: fields[2], Root: unescapeOctal(fields[3]), Point: unescapeOctal(fields[4])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return out, nil
}

// unescapeOctal decodes backslash-octal escapes (\ooo); anything else is kept.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 16)
			if v <= 0xff {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// MountRoots tells, during one walk of a tree, whether a directory entry is
// the root of another mount. The zero value is not usable; see NewMountRoots.
type MountRoots struct {
	rootDev uint64
	once    sync.Once
	table   map[string]bool
	err     error
}

// NewMountRoots returns a MountRoots for a tree whose root is on device rootDev.
func NewMountRoots(rootDev uint64) *MountRoots { return &MountRoots{rootDev: rootDev} }

// At reports whether name under dirfd, whose lstat is st, is a mount root:
// another file system (st_dev differs from the root's), or a mount of the same
// one (a bind mount) that statx STATX_ATTR_MOUNT_ROOT reports, or, where the
// kernel does not report that attribute, that the mount table lists (read
// once per MountRoots). An unreadable mount table counts as a mount, so that
// a walk stops rather than copying or changing what it can't place.
func (m *MountRoots) At(dirfd int, name string, st *unix.Stat_t) bool {
	if uint64(st.Dev) != m.rootDev {
		return true
	}
	if root, known, err := TestHooks.StatxMountRoot(dirfd, name); err == nil && known {
		return root
	}
	dir, err := os.Readlink(ProcFd(dirfd))
	if err != nil {
		return true
	}
	m.once.Do(func() {
		var points []string
		if points, m.err = MountPoints(); m.err == nil {
			m.table = map[string]bool{}
			for _, p := range points {
				m.table[p] = true
			}
		}
	})
	return m.err != nil || m.table[filepath.Join(dir, name)]
}

// ProcFd is the path of an open descriptor, for the calls that have no fd form.
func ProcFd(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
