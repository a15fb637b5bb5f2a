package statemigrate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// errChanged: the source differs from the copy after copying.
var errChanged = errors.New("copy differs from source")

// copyTree copies the contents of directory src into the existing empty
// directory dst, then gives dst src's mode, owner and times. Symlinks are
// copied as links and never followed; files are opened with O_NOFOLLOW and
// created with O_EXCL; modes (including setuid/setgid, set after chown),
// owners (when permitted) and modification times are kept; sockets are
// skipped (runtime, not state). Every file and directory is fsynced.
func copyTree(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("reading %q: %w", src, err)
	}
	for _, e := range entries {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if err := copyEntry(s, d); err != nil {
			return err
		}
	}
	return finishEntry(dst, st, true)
}

func copyEntry(s, d string) error {
	st, err := os.Lstat(s)
	if err != nil {
		return fmt.Errorf("reading %q: %w", s, err)
	}
	switch m := st.Mode(); {
	case m.IsDir():
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("creating %q: %w", d, err)
		}
		return copyTree(s, d)
	case m.IsRegular():
		if err := copyFile(s, d, st); err != nil {
			return err
		}
	case m&os.ModeSymlink != 0:
		link, err := os.Readlink(s)
		if err != nil {
			return fmt.Errorf("reading link %q: %w", s, err)
		}
		if err := os.Symlink(link, d); err != nil {
			return fmt.Errorf("creating link %q: %w", d, err)
		}
	case m&os.ModeNamedPipe != 0:
		if err := unix.Mkfifo(d, 0o600); err != nil {
			return fmt.Errorf("creating fifo %q: %w", d, err)
		}
	case m&os.ModeDevice != 0:
		sys := st.Sys().(*syscall.Stat_t)
		kind := uint32(unix.S_IFBLK)
		if m&os.ModeCharDevice != 0 {
			kind = unix.S_IFCHR
		}
		if err := unix.Mknod(d, kind|0o600, int(sys.Rdev)); err != nil {
			return fmt.Errorf("creating device %q: %w", d, err)
		}
	default: // sockets
		return nil
	}
	return finishEntry(d, st, false)
}

func copyFile(s, d string, st os.FileInfo) error {
	in, err := os.OpenFile(s, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", s, err)
	}
	defer in.Close()
	if fst, err := in.Stat(); err != nil || !os.SameFile(fst, st) {
		return fmt.Errorf("copying %q: %w", s, errChanged)
	}
	out, err := os.OpenFile(d, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("creating %q: %w", d, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %q: %w", s, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("syncing %q: %w", d, err)
	}
	return out.Close()
}

// finishEntry sets owner, then mode (chown clears setuid/setgid), then
// times, never following a symlink; directories are fsynced.
func finishEntry(d string, st os.FileInfo, dir bool) error {
	sys := st.Sys().(*syscall.Stat_t)
	if err := unix.Lchown(d, int(sys.Uid), int(sys.Gid)); err != nil {
		// Without CAP_CHOWN the copy stays owned by the user running it.
		if !errors.Is(err, unix.EPERM) || os.Geteuid() == 0 {
			return fmt.Errorf("setting owner of %q: %w", d, err)
		}
	}
	if st.Mode()&os.ModeSymlink == 0 {
		if err := unix.Fchmodat(unix.AT_FDCWD, d, uint32(sys.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("setting mode of %q: %w", d, err)
		}
	}
	ts := []unix.Timespec{unix.Timespec(sys.Atim), unix.Timespec(sys.Mtim)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, d, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %q: %w", d, err)
	}
	if dir {
		return safefs.SyncDir(d)
	}
	return nil
}

// verifyTree compares src and dst: the same names, types, permission bits,
// sizes, contents, link targets and file modification times; dst may hold
// the names in extra, at its top level only. Owners are compared when root.
func verifyTree(src, dst string, extra map[string]bool) error {
	se, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("verifying %q: %w", src, err)
	}
	de, err := os.ReadDir(dst)
	if err != nil {
		return fmt.Errorf("verifying %q: %w", dst, err)
	}
	want := map[string]bool{}
	for _, e := range se {
		if e.Type()&os.ModeSocket != 0 {
			continue
		}
		want[e.Name()] = true
		if err := verifyEntry(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	for _, e := range de {
		if !want[e.Name()] && !extra[e.Name()] {
			return fmt.Errorf("verifying %q: extra %q: %w", dst, e.Name(), errChanged)
		}
	}
	return nil
}

func verifyEntry(s, d string) error {
	ss, err := os.Lstat(s)
	if err != nil {
		return fmt.Errorf("verifying %q: %w", s, err)
	}
	ds, err := os.Lstat(d)
	if err != nil {
		return fmt.Errorf("verifying %q: %w", d, err)
	}
	sm, dm := ss.Mode(), ds.Mode()
	fail := func(what string) error { return fmt.Errorf("verifying %q: %s: %w", s, what, errChanged) }
	if sm.Type() != dm.Type() {
		return fail("type")
	}
	if sm&os.ModeSymlink == 0 && ss.Sys().(*syscall.Stat_t).Mode&0o7777 != ds.Sys().(*syscall.Stat_t).Mode&0o7777 {
		return fail("mode")
	}
	if os.Geteuid() == 0 {
		a, b := ss.Sys().(*syscall.Stat_t), ds.Sys().(*syscall.Stat_t)
		if a.Uid != b.Uid || a.Gid != b.Gid {
			return fail("owner")
		}
	}
	switch {
	case sm.IsDir():
		return verifyTree(s, d, nil)
	case sm&os.ModeSymlink != 0:
		a, err1 := os.Readlink(s)
		b, err2 := os.Readlink(d)
		if err1 != nil || err2 != nil || a != b {
			return fail("link target")
		}
	case sm.IsRegular():
		if ss.Size() != ds.Size() || !ss.ModTime().Equal(ds.ModTime()) {
			return fail("size or modification time")
		}
		same, err := sameContent(s, d)
		if err != nil {
			return fmt.Errorf("verifying %q: %w", s, err)
		}
		if !same {
			return fail("content")
		}
	}
	return nil
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.OpenFile(a, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.OpenFile(b, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64*1024), make([]byte, 64*1024)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == io.EOF || eb == io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}
