package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRenameNoReplace: with renameat2 and with the fallback for file systems
// that answer EINVAL or ENOSYS, an existing target is never replaced and the
// error is EEXIST for errors.Is (one of the two old copies compared the errno
// with != and so would have taken a wrapped EINVAL for a real failure).
func TestRenameNoReplace(t *testing.T) {
	for _, mode := range []string{"renameat2", "EINVAL", "wrapped ENOSYS"} {
		t.Run(mode, func(t *testing.T) {
			real := TestHooks.Renameat2
			t.Cleanup(func() { TestHooks.Renameat2 = real })
			switch mode {
			case "EINVAL":
				TestHooks.Renameat2 = func(int, string, int, string, uint) error { return unix.EINVAL }
			case "wrapped ENOSYS":
				TestHooks.Renameat2 = func(int, string, int, string, uint) error {
					return &os.SyscallError{Syscall: "renameat2", Err: unix.ENOSYS}
				}
			}
			dir := t.TempDir()
			a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
			os.WriteFile(a, []byte("a"), 0o600)
			os.WriteFile(b, []byte("b"), 0o600)
			if err := RenameNoReplace(unix.AT_FDCWD, a, unix.AT_FDCWD, b); !errors.Is(err, unix.EEXIST) {
				t.Errorf("existing target: got %v, want EEXIST", err)
			}
			if got, _ := os.ReadFile(b); string(got) != "b" {
				t.Errorf("target replaced: got %q", got)
			}
			if err := RenameNoReplace(unix.AT_FDCWD, a, unix.AT_FDCWD, c); err != nil {
				t.Fatalf("absent target: got %v, want nil", err)
			}
			if got, _ := os.ReadFile(c); string(got) != "a" {
				t.Errorf("got %q in the new name, want a", got)
			}
		})
	}
}

func TestExchange(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Mkdir(a, 0o700)
	os.WriteFile(filepath.Join(a, "in-a"), nil, 0o600)
	os.Mkdir(b, 0o700)
	if err := Exchange(unix.AT_FDCWD, a, unix.AT_FDCWD, b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b, "in-a")); err != nil {
		t.Errorf("got %v, want a's content under b", err)
	}
	if !ExchangeUnsupported(&os.SyscallError{Syscall: "renameat2", Err: unix.EOPNOTSUPP}) {
		t.Error("a wrapped EOPNOTSUPP: got supported, want unsupported")
	}
}
