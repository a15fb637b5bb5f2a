package statemigrate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// statxMountRoot asks statx whether path is a mount root. known is false when
// the kernel (before 5.8) or filesystem does not report STATX_ATTR_MOUNT_ROOT.
// A variable so tests can force the mountinfo fallback.
var statxMountRoot = func(path string) (root, known bool, err error) {
	var stx unix.Statx_t
	err = unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_BASIC_STATS, &stx)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return false, false, nil // no statx (old kernel, seccomp): fall back
	}
	if err != nil {
		return false, false, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, false, nil
	}
	return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, true, nil
}

// mountInfoPath is read by the fallback; a variable for tests.
var mountInfoPath = "/proc/self/mountinfo"

// isMountPoint reports whether path (not followed if it is a symlink) is the
// root of a mount: statx STATX_ATTR_MOUNT_ROOT where the kernel has it, else
// /proc/self/mountinfo. Comparing st_dev with the parent would miss bind
// mounts of the same filesystem, so it is not used.
func isMountPoint(path string) (bool, error) {
	root, known, err := statxMountRoot(path)
	if err != nil {
		return false, fmt.Errorf("checking whether %q is a mount point: %w", path, err)
	}
	if known {
		return root, nil
	}
	return mountInfoHas(path)
}

// mountInfoHas reports whether the canonical form of path is listed as a
// mount point in mountinfo.
func mountInfoHas(path string) (bool, error) {
	parent, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return false, fmt.Errorf("resolving %q: %w", filepath.Dir(path), err)
	}
	want := filepath.Join(parent, filepath.Base(path))
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return false, fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	points, err := parseMountPoints(f)
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

// parseMountPoints returns the mount point field (the fifth) of every line
// of a mountinfo table, with the kernel's octal escapes (\040 space, \011
// tab, \012 newline, \134 backslash) decoded.
func parseMountPoints(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 5 {
			return nil, fmt.Errorf("parsing mount table line %d: %d fields, want at least 5", n, len(fields))
		}
		out = append(out, unescapeOctal(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	return out, nil
}

// unescapeOctal decodes backslash-octal escapes (\ooo); anything else is
// kept as is.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
