package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for i, content := range []string{"one", "two, longer"} {
		if err := WriteFile(p, []byte(content), WriteOptions{Perm: 0o640}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != content {
			t.Errorf("write %d: got %q, want %q", i, b, content)
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o640 {
		t.Errorf("got mode %o, want 640", got)
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 1 {
		t.Errorf("got %d entries in the directory, want only the file (no temporary file left)", len(names))
	}
}

func TestWriteFileRefusesNonRegular(t *testing.T) {
	for _, kind := range []string{"directory", "symlink", "dangling symlink"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			outside := filepath.Join(t.TempDir(), "outside")
			switch kind {
			case "directory":
				os.Mkdir(p, 0o700)
			case "symlink":
				os.WriteFile(outside, []byte("keep"), 0o600)
				os.Symlink(outside, p)
			case "dangling symlink":
				os.Symlink(outside, p)
			}
			err := WriteFile(p, []byte("x"), WriteOptions{})
			if !errors.Is(err, ErrNotRegular) {
				t.Fatalf("got %v, want ErrNotRegular", err)
			}
			if !strings.Contains(err.Error(), `"`+p+`"`) {
				t.Errorf("got %q, want the path quoted", err)
			}
			if b, err := os.ReadFile(outside); kind == "symlink" && string(b) != "keep" {
				t.Errorf("the symlink's target changed: %q, %v", b, err)
			} else if kind == "dangling symlink" && err == nil {
				t.Error("a file was created through the dangling symlink")
			}
			names, _ := os.ReadDir(dir)
			if len(names) != 1 {
				t.Errorf("got %d entries, want 1 (no temporary file left)", len(names))
			}
		})
	}
}

func TestWriteFileAtOwner(t *testing.T) {
	dockertest.Root(t)
	dir := t.TempDir()
	d, _ := os.Open(dir)
	defer d.Close()
	if err := WriteFileAt(int(d.Fd()), "f", []byte("x"), WriteOptions{Perm: 0o644, Owner: &Owner{UID: 1234, GID: 5678}}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(filepath.Join(dir, "f"), &st)
	if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o644 {
		t.Errorf("got %d:%d %o, want 1234:5678 644", st.Uid, st.Gid, st.Mode&0o7777)
	}
}
