package perms

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNotWritable is matched (errors.Is) by the error CheckWritable returns for a
// directory the caller may not write.
var ErrNotWritable = errors.New("directory not writable")

// NotWritableError names a directory the calling process may not create entries
// in, with its owner and mode.
type NotWritableError struct {
	Dir      string
	UID, GID uint32
	Mode     uint32 // permission bits
	Err      error  // what access(2) answered, e.g. EACCES or EROFS
}

func (e *NotWritableError) Error() string {
	return fmt.Sprintf("%q (owner %d:%d, mode %04o) is not writable: %v", e.Dir, e.UID, e.GID, e.Mode, e.Err)
}

// Unwrap returns the system error.
func (e *NotWritableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotWritable) true.
func (e *NotWritableError) Is(target error) bool { return target == ErrNotWritable }

// CheckWritable checks, with the effective uid and groups (faccessat2 with
// AT_EACCESS, so ACLs and read-only mounts count), that the caller may create
// and remove entries in dir. It returns a *NotWritableError when it may not,
// and a plain wrapped error when dir cannot be examined (e.g. it is missing).
func CheckWritable(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("checking %q: %w", dir, err)
	}
	err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
		return &NotWritableError{Dir: dir, UID: st.Uid, GID: st.Gid, Mode: st.Mode & 0o7777, Err: err}
	}
	return fmt.Errorf("checking %q: %w", dir, err)
}
