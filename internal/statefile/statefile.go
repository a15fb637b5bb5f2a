// Package statefile owns moltctl's state directory (Dir, ProjectDir), the
// per-project lock (Lock) and the journals (Journal) with which the multi-step
// operations (migrate, its copy-back, remount, group remounts) record their
// last completed step, so that a kill -9 between any two steps can be
// finished or undone; and the one crash-point mechanism the kill -9 tests use
// (Arm, CrashEnv). Files are written atomically and durably, 0600 in a 0700
// directory (they can hold compose files' content).
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/moltctl/moltctl/internal/safefs"
)

// Save writes v as indented JSON to path, 0600, atomically and durably
// (safefs.WriteFile: temporary file, fsync, rename, directory fsync) in its
// directory, created 0700 when missing. A reader sees the old or the new
// content, never a mix.
func Save(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := safefs.WriteFile(path, b, safefs.WriteOptions{Perm: 0o600}); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Load reads the JSON at path into v. It returns false, nil when the file does
// not exist.
func Load(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	return true, nil
}

// Remove removes the file at path; a missing file is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// ErrNoRoom: the file system of the state directory can't hold the journals
// of a run.
var ErrNoRoom = errors.New("not enough room for moltctl's journals")

// Free returns the bytes and inodes an unprivileged writer has free on the
// file system holding path (inodes -1 when the file system does not count
// them).
func Free(path string) (bytes, inodes int64, err error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(path, &fs); err != nil {
		return 0, 0, fmt.Errorf("measuring the free space of %q: %w", path, err)
	}
	inodes = -1
	if fs.Files > 0 {
		inodes = int64(fs.Ffree)
	}
	return int64(fs.Bavail) * int64(fs.Bsize), inodes, nil
}

// CheckRoom returns an error wrapping ErrNoRoom unless the file system of dir
// (or of its nearest existing parent) has bytes and inodes free.
func CheckRoom(dir string, bytes, inodes int64) error {
	p := dir
	for {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			break
		}
		p = filepath.Dir(p)
	}
	freeBytes, freeInodes, err := Free(p)
	if err != nil {
		return err
	}
	if freeInodes >= 0 && freeInodes < inodes {
		return fmt.Errorf("state directory %q: %w: %d inodes free, %d needed", dir, ErrNoRoom, freeInodes, inodes)
	}
	if freeBytes < bytes {
		return fmt.Errorf("state directory %q: %w: %d bytes free, %d needed", dir, ErrNoRoom, freeBytes, bytes)
	}
	return nil
}
