package perms

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MkdirAll creates dir and any missing parents (mode 0755, owned by the caller)
// without following an untrusted symlink on the way (see Fix for which are
// trusted). An existing dir is fine; a dir that is a symlink is ErrSymlink.
func MkdirAll(dir string) error {
	fd, err := openDir(dir, true)
	if err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	unix.Close(fd)
	return nil
}

// openDir opens the absolute path dir component by component from "/", each
// with O_NOFOLLOW. A symlink on the way is followed only when it is owned by
// root and sits in a root-owned directory that is not group- or world-writable
// (the image made it; nobody else can swap it). The last component must be a
// real directory. With create, missing components are made (mode 0755).
// It returns a read-only directory descriptor.
func openDir(dir string, create bool) (int, error) {
	if !filepath.IsAbs(dir) {
		return -1, fmt.Errorf("%q is not an absolute path", dir)
	}
	comps := strings.Split(strings.Trim(filepath.Clean(dir), "/"), "/")
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /: %w", err)
	}
	if len(comps) == 1 && comps[0] == "" {
		unix.Close(fd)
		return -1, errors.New("refusing the root directory /")
	}
	for i, c := range comps {
		last := i == len(comps)-1
		flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		}
		nfd, err := unix.Openat(fd, c, flags, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if merr := unix.Mkdirat(fd, c, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
				unix.Close(fd)
				return -1, fmt.Errorf("making directory %s: %w", component(comps, i), merr)
			}
			nfd, err = unix.Openat(fd, c, flags, 0)
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			nfd, err = followTrusted(fd, c, comps, i, last)
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

func component(comps []string, i int) string { return "/" + strings.Join(comps[:i+1], "/") }

// followTrusted opens the symlink c in dirfd when it may be trusted.
func followTrusted(dirfd int, c string, comps []string, i int, last bool) (int, error) {
	path := component(comps, i)
	var lst unix.Stat_t
	if err := unix.Fstatat(dirfd, c, &lst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, fmt.Errorf("examining %s: %w", path, err)
	}
	if lst.Mode&unix.S_IFMT != unix.S_IFLNK {
		return -1, fmt.Errorf("opening %s: %w", path, unix.ENOTDIR)
	}
	if last {
		return -1, fmt.Errorf("%s: %w", path, ErrSymlink)
	}
	var dst unix.Stat_t
	if err := unix.Fstat(dirfd, &dst); err != nil {
		return -1, fmt.Errorf("examining the directory holding %s: %w", path, err)
	}
	if lst.Uid != 0 || dst.Uid != 0 || dst.Mode&0o022 != 0 {
		return -1, fmt.Errorf("%s (not owned by root in a root-only directory): %w", path, ErrSymlink)
	}
	fd, err := unix.Openat(dirfd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening %s: %w", path, err)
	}
	return fd, nil
}
