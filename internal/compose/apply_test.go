package compose

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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

func TestApplyRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.yaml")
	link := filepath.Join(dir, "compose.yaml")
	old := []byte("services: {}\n")
	os.WriteFile(real, old, 0o644)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func()
		path  string
	}{
		{"symlinked compose file", func() {}, link},
		{"symlinked backup", func() { os.Symlink(filepath.Join(dir, "elsewhere"), real+BackupSuffix) }, real},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			if err := Apply([]Edit{{Path: tt.path, Old: old, New: []byte("x: 1\n")}}); err == nil {
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
