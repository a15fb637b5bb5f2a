package compose

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/moltctl/moltctl/internal/safefs"
)

// BackupSuffix is appended to a compose file's path to name the copy of its
// previous content that Apply keeps.
const BackupSuffix = ".moltctl-backup"

// ErrChanged is wrapped by Apply's error when a file no longer has the content
// its Edit was computed from.
var ErrChanged = errors.New("changed since it was read")

// ErrNotReplaceable is wrapped by CheckReplaceable's error when a compose file
// can't be replaced atomically (not a regular file, or a directory moltctl
// can't create files in).
var ErrNotReplaceable = errors.New("can't be replaced atomically")

// Apply writes the edits, one file after the other. For each file it first checks
// that the file still holds Edit.Old and is a regular file or a symlink to one
// (then the link's target is written and the link kept), then writes Edit.Old
// to PATH+BackupSuffix and Edit.New to the file, each atomically: a temporary
// file in the same directory, fsync, rename over the target, fsync of the
// directory. Both keep the file's mode and owner. A crash at any moment leaves
// every file either old or new, never partly written, and the backup complete
// whenever the file is new. It stops at the first error; files written before
// it stay written (their backups hold the old content).
func Apply(edits []Edit) error {
	for _, e := range edits {
		if err := applyOne(e, true); err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
	}
	return nil
}

// Restore writes the edits as Apply does but leaves the backups alone: an
// undo (Edit.New is the content before Apply) keeps the pre-edit backup.
func Restore(edits []Edit) error {
	for _, e := range edits {
		if err := applyOne(e, false); err != nil {
			return fmt.Errorf("restoring %s: %w", e.Path, err)
		}
	}
	return nil
}

// target returns the regular file path names (through symlinks) and its info.
func target(path string) (string, os.FileInfo, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return "", nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("%q is not a regular file", real)
	}
	return real, fi, nil
}

func applyOne(e Edit, backup bool) error {
	real, fi, err := target(e.Path)
	if err != nil {
		return err
	}
	cur, err := os.ReadFile(real)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, e.Old) {
		return ErrChanged
	}
	if backup {
		if err := writeAtomic(e.Path+BackupSuffix, e.Old, fi); err != nil {
			return err // names the backup's path
		}
	}
	return writeAtomic(real, e.New, fi)
}

// CheckReplaceable checks, without changing anything, that Apply can replace
// each file: it is a regular file or a symlink to one, and a file can be
// created (and is removed again) in the directory of the file's target and in
// the one its backup goes to. Errors wrap ErrNotReplaceable.
func CheckReplaceable(paths []string) error {
	for _, p := range paths {
		real, _, err := target(p)
		if err != nil {
			return fmt.Errorf("compose file %q %w: %w", p, ErrNotReplaceable, err)
		}
		if fi, err := os.Lstat(p + BackupSuffix); err == nil && !fi.Mode().IsRegular() {
			return fmt.Errorf("compose file %q %w: its backup %q is not a regular file", p, ErrNotReplaceable, p+BackupSuffix)
		}
		for _, dir := range []string{filepath.Dir(real), filepath.Dir(p)} {
			f, err := os.CreateTemp(dir, ".moltctl-probe-*")
			if err != nil {
				return fmt.Errorf("compose file %q %w: directory %q: %w", p, ErrNotReplaceable, dir, err)
			}
			f.Close()
			os.Remove(f.Name())
		}
	}
	return nil
}

// writeAtomic replaces path with data atomically and durably
// (safefs.WriteFile), with the mode and, when root, the owner of like.
func writeAtomic(path string, data []byte, like os.FileInfo) error {
	o := safefs.WriteOptions{Perm: like.Mode().Perm()}
	if st, ok := like.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		o.Owner = &safefs.Owner{UID: int(st.Uid), GID: int(st.Gid)}
	}
	return safefs.WriteFile(path, data, o)
}
