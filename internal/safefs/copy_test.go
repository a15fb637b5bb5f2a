package safefs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMeasureSkipsBindMounts: a bind mount of the same file system below the
// root is not measured, as the copy does not enter it (volumes' old measure
// compared st_dev only, so it counted what the copy then left out).
func TestMeasureSkipsBindMounts(t *testing.T) {
	dir, _, mnt, _, _ := mountFixture(t)
	if err := os.WriteFile(filepath.Join(mnt, "big"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	bytes, files, err := Measure(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// src holds big too (it is the mount's source): counted once, through src
	if bytes >= 2<<20 || bytes < 1<<20 || files != 5 {
		t.Errorf("got %d bytes, %d files, want big counted once (through src) and 5 entries", bytes, files)
	}
}

// TestCopyTreeStrict: sockets are runtime, not state: noted, never an error;
// with Strict, an entry that vanishes fails the copy with ErrChanged; times
// (atime too) are kept and Sync makes no difference to the result.
func TestCopyTreeStrict(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	atime := time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(src, "f"), atime, old)
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res, err := CopyTree(context.Background(), CopyOptions{Src: src, Dst: dst, KeepOwner: true, ChownBestEffort: true, Sync: true, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "socket not copied") {
		t.Errorf("got warnings %q, want the socket noted", res.Warnings)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mtim.Sec != old.Unix() || st.Atim.Sec != atime.Unix() || st.Mode&0o7777 != 0o640 {
		t.Errorf("got mode %o mtime %d atime %d, want 640, %d, %d", st.Mode&0o7777, st.Mtim.Sec, st.Atim.Sec, old.Unix(), atime.Unix())
	}

	t.Run("vanished", func(t *testing.T) {
		dst := t.TempDir()
		c := &copier{ctx: context.Background(), o: CopyOptions{Strict: true}, man: map[string]*Entry{}, links: map[devIno]string{}}
		d, _ := os.Open(src)
		defer d.Close()
		dd, _ := os.Open(dst)
		defer dd.Close()
		_, err := c.copyEntry(int(d.Fd()), int(dd.Fd()), ".", "gone", nil)
		if !errors.Is(err, ErrChanged) {
			t.Errorf("got %v, want ErrChanged", err)
		}
		c.o.Strict = false
		if _, err := c.copyEntry(int(d.Fd()), int(dd.Fd()), ".", "gone", nil); err != nil || len(c.res.Warnings) != 1 {
			t.Errorf("not strict: got %v, warnings %q, want a warning", err, c.res.Warnings)
		}
	})
}
