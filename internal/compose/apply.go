package compose

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// BackupSuffix is appended to a compose file's path to name the copy of its
// previous content that Apply keeps.
const BackupSuffix = ".moltctl-backup"

// ErrChanged is wrapped by Apply's error when a file no longer has the content
// its Edit was computed from.
var ErrChanged = errors.New("changed since it was read")

// Apply writes the edits, one file after the other. For each file it first checks
// that the file still holds Edit.Old and is a regular file (not a symlink), then
// writes Edit.Old to PATH+BackupSuffix and Edit.New to PATH, each atomically:
// a temporary file in the same directory, fsync, rename over the target, fsync
// of the directory. Both keep the file's mode and owner. A crash at any moment
// leaves every file either old or new, never partly written, and the backup
// complete whenever the file is new. It stops at the first error; files written
// before it stay written (their backups hold the old content).
func Apply(edits []Edit) error {
	for _, e := range edits {
		if err := applyOne(e); err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
	}
	return nil
}

func applyOne(e Edit) error {
	fi, err := os.Lstat(e.Path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (a symlink?)")
	}
	cur, err := os.ReadFile(e.Path)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, e.Old) {
		return ErrChanged
	}
	if err := writeAtomic(e.Path+BackupSuffix, e.Old, fi); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	return writeAtomic(e.Path, e.New, fi)
}

// writeAtomic replaces path with data through a temporary file in its directory,
// with the mode and owner of like.
func writeAtomic(path string, data []byte, like os.FileInfo) (err error) {
	dir := filepath.Dir(path)
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file", path)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(like.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := like.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err = f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
