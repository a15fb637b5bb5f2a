// Package statefile keeps the small JSON files with which moltctl's multi-step
// operations (remount, migrate, copy-back) record their last completed step,
// so that a kill -9 between any two steps can be finished or undone. Files are
// written atomically and durably, 0600 in a 0700 directory (they can hold
// compose files' content).
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Save writes v as indented JSON to path: a temporary file in the same
// directory (created 0700 when missing), fsync, rename over path, fsync of the
// directory. A reader sees the old or the new content, never a mix.
func Save(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, werr)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
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

// CrashAfter kills the process with SIGKILL, never returning, when the
// environment variable hook holds step. Tests set it to simulate a crash right
// after a step was journaled.
func CrashAfter(hook, step string) {
	if step != "" && os.Getenv(hook) == step {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
