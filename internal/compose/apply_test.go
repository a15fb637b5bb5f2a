package compose

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

func TestApply(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	old := []byte("services: {}\n")
	if err := os.WriteFile(file, old, 0o640); err != nil {
		t.Fatal(err)
	}
	edit := Edit{Path: file, Old: old, New: []byte("services: {}\nvolumes: {}\n")}
	if err := Apply([]Edit{edit}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, edit.New) {
		t.Errorf("got %q, want %q", got, edit.New)
	}
	if got, _ := os.ReadFile(file + BackupSuffix); !bytes.Equal(got, old) {
		t.Errorf("got backup %q, want %q", got, old)
	}
	for _, p := range []string{file, file + BackupSuffix} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: got mode %v (%v), want 0640", p, fi.Mode().Perm(), err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("got %d entries in the directory, want the file and its backup only", len(entries))
	}

	// The same edit again: the file no longer holds Old.
	if err := Apply([]Edit{edit}); !errors.Is(err, ErrChanged) {
		t.Errorf("got %v, want ErrChanged", err)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, edit.New) {
		t.Errorf("got %q changed by a refused edit", got)
	}
}

// TestApplySymlinks: a symlinked compose file is written through to its
// target and stays a link (the backup beside the link); a symlinked backup is
// refused with nothing written.
func TestApplySymlinks(t *testing.T) {
	old := []byte("services: {}\n")
	newer := []byte("x: 1\n")
	t.Run("symlinked compose file", func(t *testing.T) {
		dir := t.TempDir()
		real := filepath.Join(dir, "real", "real.yaml")
		os.Mkdir(filepath.Dir(real), 0o755)
		link := filepath.Join(dir, "compose.yaml")
		os.WriteFile(real, old, 0o644)
		if err := os.Symlink("real/real.yaml", link); err != nil {
			t.Fatal(err)
		}
		if err := CheckReplaceable([]string{link}); err != nil {
			t.Fatalf("got %v, want the symlinked file replaceable", err)
		}
		if err := Apply([]Edit{{Path: link, Old: old, New: newer}}); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("got %v, %v, want the link kept", fi, err)
		}
		if got, _ := os.ReadFile(real); !bytes.Equal(got, newer) {
			t.Errorf("got target %q, want %q", got, newer)
		}
		if got, _ := os.ReadFile(link + BackupSuffix); !bytes.Equal(got, old) {
			t.Errorf("got backup %q, want %q", got, old)
		}
		// Restore puts the old content back through the link and keeps the backup.
		if err := Restore([]Edit{{Path: link, Old: newer, New: old}}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(real); !bytes.Equal(got, old) {
			t.Errorf("got target %q after Restore, want %q", got, old)
		}
		if got, _ := os.ReadFile(link + BackupSuffix); !bytes.Equal(got, old) {
			t.Errorf("got backup %q after Restore, want the pre-edit %q", got, old)
		}
	})
	t.Run("symlinked backup", func(t *testing.T) {
		dir := t.TempDir()
		real := filepath.Join(dir, "compose.yaml")
		os.WriteFile(real, old, 0o644)
		os.Symlink(filepath.Join(dir, "elsewhere"), real+BackupSuffix)
		if err := CheckReplaceable([]string{real}); !errors.Is(err, ErrNotReplaceable) {
			t.Errorf("got %v, want ErrNotReplaceable", err)
		}
		if err := Apply([]Edit{{Path: real, Old: old, New: newer}}); err == nil {
			t.Fatal("got no error, want a refusal")
		}
		if got, _ := os.ReadFile(real); !bytes.Equal(got, old) {
			t.Errorf("got %q, want the file untouched", got)
		}
		if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); err == nil {
			t.Errorf("got a write through the symlink")
		}
	})
}

// TestCheckReplaceableReadOnly: a directory no file can be created in (chattr
// +i for root, mode 0555 otherwise) is refused.
func TestCheckReplaceableReadOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(dir, 0o755)
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, []byte("services: {}\n"), 0o644)
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
			t.Fatalf("chattr +i: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", dir).Run() })
	} else {
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	err := CheckReplaceable([]string{file})
	if !errors.Is(err, ErrNotReplaceable) || !strings.Contains(err.Error(), strconv.Quote(dir)) {
		t.Fatalf("got %v, want ErrNotReplaceable naming %q", err, dir)
	}
}

func TestCheckRereadable(t *testing.T) {
	for _, tt := range []struct {
		files []string
		want  error
	}{
		{nil, nil},
		{[]string{"compose.yaml"}, nil},
		{[]string{"compose.yaml", "-"}, ErrStdin},
	} {
		if got := (Options{Files: tt.files}).CheckRereadable(); !errors.Is(got, tt.want) {
			t.Errorf("files %q: got %v, want %v", tt.files, got, tt.want)
		}
	}
}

// TestDiffApplies checks every golden rewrite's diff with the real patch(1):
// applied to the input it must give the golden output.
func TestDiffApplies(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		dockertest.Unavailable(t, "no patch(1) on this machine (scripts/setup installs it)")
	}
	goldens, _ := filepath.Glob("testdata/rewrite/*.golden.yaml")
	tests := append(goldens, "synthetic")
	for _, g := range tests {
		t.Run(filepath.Base(g), func(t *testing.T) {
			var a, b []byte
			if g == "synthetic" {
				var sa, sb strings.Builder
				for i := range 300 {
					line := strings.Repeat("x", i%7) + "\n"
					sa.WriteString(line)
					if i%37 == 0 {
						sb.WriteString("changed\n")
					} else if i%53 != 0 {
						sb.WriteString(line)
					}
				}
				a, b = []byte(sa.String()), []byte(sb.String()+"tail")
			} else {
				a, _ = os.ReadFile(strings.TrimSuffix(g, ".golden.yaml") + ".input.yaml")
				b, _ = os.ReadFile(g)
			}
			dir := t.TempDir()
			f := filepath.Join(dir, "f.yaml")
			os.WriteFile(f, a, 0o644)
			diff := unifiedDiff(f, f, a, b)
			if bytes.Equal(a, b) {
				if diff != "" {
					t.Errorf("got a diff of equal files:\n%s", diff)
				}
				return
			}
			cmd := exec.Command("patch", "-p0", "-s", "--no-backup-if-mismatch", f)
			cmd.Stdin = strings.NewReader(diff)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("patch: %v: %s\n%s", err, out, diff)
			}
			if got, _ := os.ReadFile(f); !bytes.Equal(got, b) {
				t.Errorf("got after patch\n%s\nwant\n%s\ndiff was\n%s", got, b, diff)
			}
		})
	}
}
