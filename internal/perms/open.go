package perms

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The one trust rule. A path is resolved from "/" one component at a time,
// each opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) where the
// kernel has it, else openat(O_NOFOLLOW): the kernel never follows a link for
// us. A symlink met on the way is trusted only when it is owned by root and
// sits in a root-owned directory that is not group- or world-writable (the
// image made it; nobody else can swap it), and only as far as its own target
// string: that string's components are resolved the same way, so a link inside
// the target is trusted only if it passes the same rule itself. A link the app
// user owns, or one in a directory the user can write, is never followed, not
// even behind a trusted one. The state directory itself must be a directory,
// not a link.

// maxLinks bounds the trusted links followed in one path, as the kernel's 40.
const maxLinks = 40

// ErrSystemDir is returned (wrapped) for a state directory that is, or is
// under, one of the system's own trees (/etc, /usr, /proc, …) or is a top-level
// directory shared by everything (/, /home, /var, …): giving it to the app user
// would give away the system.
var ErrSystemDir = errors.New("refusing a system directory")

// systemTrees are refused with everything below them.
var systemTrees = []string{
	"/bin", "/boot", "/dev", "/etc", "/proc", "/root", "/run", "/sbin", "/sys", "/usr",
	"/var/cache/apt", "/var/lib/apt", "/var/lib/dpkg", "/var/lock", "/var/log", "/var/run", "/var/spool",
}

// systemDirs are refused themselves; a directory below them is fine.
var systemDirs = []string{"/", "/home", "/media", "/mnt", "/opt", "/srv", "/tmp", "/var", "/var/lib", "/var/tmp"}

// SystemDir reports whether the clean absolute path p is a system directory a
// state directory must not be (see ErrSystemDir): one of the system trees or
// below one (every top-level /lib* included), or one of the shared top-level
// directories themselves.
func SystemDir(p string) bool {
	for _, d := range systemDirs {
		if p == d {
			return true
		}
	}
	for _, t := range systemTrees {
		if p == t || strings.HasPrefix(p, t+"/") {
			return true
		}
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return strings.HasPrefix(first, "lib")
}

// MkdirAll creates dir and any missing parents (mode 0755, owned by the caller)
// under the trust rule above. An existing dir is fine; a dir that is a symlink
// is ErrSymlink, one that is or resolves into a system directory ErrSystemDir.
func MkdirAll(dir string) error {
	r, err := resolve(dir, true)
	if err != nil {
		return fmt.Errorf("creating %q: %w", dir, err)
	}
	unix.Close(r.fd)
	return nil
}

// Resolve returns the path dir really names, resolved under the trust rule
// above (trusted links replaced by their targets), without creating anything:
// a missing tail is appended as given. It is ErrSymlink when an untrusted link
// is on the way and ErrSystemDir when dir is or resolves into a system
// directory.
func Resolve(dir string) (string, error) {
	r, err := resolve(dir, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) && r.missing != "" {
			return r.real + "/" + r.missing, nil
		}
		return "", fmt.Errorf("resolving %q: %w", dir, err)
	}
	unix.Close(r.fd)
	return r.real, nil
}

// resolved is where resolve ended.
type resolved struct {
	fd      int    // an O_PATH descriptor of the directory (-1 on error)
	real    string // its path with trusted links replaced ("" for "/")
	missing string // on ENOENT without create: the rest of the path from the missing component
}

// chain is the directories from "/" to the one resolve is in: their
// descriptors and real names. ".." in a link's target pops one.
type chain struct {
	fds   []int
	names []string
}

func (c *chain) top() int { return c.fds[len(c.fds)-1] }

// path returns the real path of the current directory, extended by extra.
func (c *chain) path(extra ...string) string {
	return "/" + strings.Join(append(append([]string{}, c.names...), extra...), "/")
}

func (c *chain) push(fd int, name string) { c.fds, c.names = append(c.fds, fd), append(c.names, name) }

// pop goes up one directory; at "/" it stays (as the kernel does).
func (c *chain) pop() {
	if len(c.fds) > 1 {
		unix.Close(c.top())
		c.fds, c.names = c.fds[:len(c.fds)-1], c.names[:len(c.names)-1]
	}
}

// toRoot goes back to "/", for an absolute link target.
func (c *chain) toRoot() {
	for len(c.fds) > 1 {
		c.pop()
	}
}

func (c *chain) close() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
}

// resolve opens the absolute path dir (cleaned first, ".." included) under the
// trust rule. With create, missing components are made (mode 0755). It
// returns an O_PATH descriptor of the directory.
func resolve(dir string, create bool) (resolved, error) {
	res := resolved{fd: -1}
	if !filepath.IsAbs(dir) {
		return res, fmt.Errorf("%q is not an absolute path", dir)
	}
	clean := filepath.Clean(dir)
	if SystemDir(clean) {
		return res, fmt.Errorf("%q: %w", clean, ErrSystemDir)
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return res, fmt.Errorf("opening /: %w", err)
	}
	c := &chain{fds: []int{root}}
	defer c.close()
	queue := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	links := 0
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			c.pop()
			continue
		}
		path := c.path(name)
		if SystemDir(path) && (len(queue) == 0 || !isTreeAncestor(path)) {
			return res, fmt.Errorf("%q resolves to %q: %w", clean, path, ErrSystemDir)
		}
		fd, err := openComponent(c.top(), name)
		if errors.Is(err, unix.ENOENT) {
			if !create {
				res.real, res.missing = strings.TrimSuffix(c.path(), "/"), strings.Join(append([]string{name}, queue...), "/")
				return res, fmt.Errorf("%q: %w", path, err)
			}
			if merr := unix.Mkdirat(c.top(), name, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
				return res, fmt.Errorf("making directory %q: %w", path, merr)
			}
			fd, err = openComponent(c.top(), name)
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			target, terr := trustedTarget(c.top(), name, path, len(queue) == 0)
			if terr != nil {
				return res, terr
			}
			if links++; links > maxLinks {
				return res, fmt.Errorf("%q: %w", path, unix.ELOOP)
			}
			if strings.HasPrefix(target, "/") {
				c.toRoot()
			}
			queue = append(strings.Split(target, "/"), queue...)
			continue
		}
		if err != nil {
			return res, fmt.Errorf("opening %q: %w", path, err)
		}
		c.push(fd, name)
	}
	if len(c.names) == 0 {
		return res, fmt.Errorf("%q resolves to /: %w", clean, ErrSystemDir)
	}
	if p := c.path(); SystemDir(p) {
		return res, fmt.Errorf("%q resolves to %q: %w", clean, p, ErrSystemDir)
	}
	res.fd, res.real = c.top(), c.path()
	c.fds = c.fds[:len(c.fds)-1] // handed to the caller, not closed
	return res, nil
}

// isTreeAncestor reports whether p is only a shared directory (such as /var)
// that may still lead to a fine one, rather than a system tree.
func isTreeAncestor(p string) bool {
	for _, d := range systemDirs {
		if p == d {
			return true
		}
	}
	return false
}

// openComponent opens the single name c in dirfd as a directory, never
// following a symlink: ELOOP or ENOTDIR when it is one.
func openComponent(dirfd int, c string) (int, error) {
	for {
		fd, err := openComponentOnce(dirfd, c)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

func openComponentOnce(dirfd int, c string) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !forceNoOpenat2 {
		fd, err := unix.Openat2(dirfd, c, &unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) { // EPERM: seccomp profiles that predate openat2
			return fd, err
		}
	}
	return unix.Openat(dirfd, c, flags, 0)
}

// trustedTarget returns the target string of the symlink c in dirfd when the
// trust rule allows following it. last says c is the directory itself, which
// must not be a link.
func trustedTarget(dirfd int, c, path string, last bool) (string, error) {
	var lst unix.Stat_t
	if err := unix.Fstatat(dirfd, c, &lst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "", fmt.Errorf("examining %q: %w", path, err)
	}
	if lst.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", fmt.Errorf("opening %q: %w", path, unix.ENOTDIR)
	}
	if last {
		return "", fmt.Errorf("%q: %w", path, ErrSymlink)
	}
	var dst unix.Stat_t
	if err := unix.Fstat(dirfd, &dst); err != nil {
		return "", fmt.Errorf("examining the directory holding %q: %w", path, err)
	}
	if lst.Uid != 0 || dst.Uid != 0 || dst.Mode&0o022 != 0 {
		return "", fmt.Errorf("%q (not owned by root in a root-only directory): %w", path, ErrSymlink)
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, c, buf)
	if err != nil {
		return "", fmt.Errorf("reading the link %q: %w", path, err)
	}
	if n == 0 || n >= len(buf) {
		return "", fmt.Errorf("reading the link %q: %w", path, unix.ENAMETOOLONG)
	}
	return string(buf[:n]), nil
}
