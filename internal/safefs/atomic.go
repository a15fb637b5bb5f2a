package safefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WriteOptions tune WriteFile and WriteFileAt.
type WriteOptions struct {
	// Perm is the new file's permission bits (default 0600).
	Perm os.FileMode
	// Owner, when set, is given to the new file (fchown before the rename);
	// UID or GID -1 keeps that id.
	Owner *Owner
}

// Owner is a numeric owner.
type Owner struct{ UID, GID int }

// ErrNotRegular: the name an atomic write would replace is not a regular file
// (a directory, a symlink, a device): it is left alone.
var ErrNotRegular = errors.New("not a regular file")

// WriteFile replaces path with data atomically and durably: see WriteFileAt.
// The directory must exist.
func WriteFile(path string, data []byte, o WriteOptions) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("writing %q: opening its directory: %w", path, err)
	}
	defer unix.Close(dfd)
	if err := WriteFileAt(dfd, name, data, o); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	return nil
}

// WriteFileAt replaces name in the directory dirfd with data: a temporary file
// beside it (created exclusively, never through a symlink) is written,
// fsynced, renamed over name, and the directory is fsynced. A reader sees the
// old or the new content, never a mix, and after a crash the file holds one of
// them. A name that exists and is not a regular file is refused with
// ErrNotRegular. Errors name no path (the caller knows it) and wrap the errno.
func WriteFileAt(dirfd int, name string, data []byte, o WriteOptions) (err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ErrNotRegular
	} else if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	perm := o.Perm.Perm()
	if o.Perm == 0 {
		perm = 0o600
	}
	var fd int
	var tmp string
	for range 10 {
		tmp = "." + name + ".tmp-" + randHex()
		fd, err = unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	err = writeSynced(fd, data, perm, o.Owner)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return err
	}
	return SyncFd(dirfd)
}

// writeSynced writes data into the new file fd, gives it its mode (the
// umask may have narrowed it) and owner, and fsyncs it.
func writeSynced(fd int, data []byte, perm os.FileMode, owner *Owner) error {
	if _, err := WriteFull(fd, data, 0); err != nil {
		return err
	}
	if owner != nil {
		if err := unix.Fchown(fd, owner.UID, owner.GID); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(fd, uint32(perm)); err != nil {
		return err
	}
	return unix.Fsync(fd)
}

// WriteFull writes all of b at offset off of fd, retrying after EINTR and
// short writes.
func WriteFull(fd int, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Pwrite(fd, b[done:], off+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// SyncFd fsyncs an open directory (or file). EINVAL, from file systems that
// cannot sync a directory, is not an error.
func SyncFd(fd int) error {
	if err := unix.Fsync(fd); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// SyncDir fsyncs the directory dir so that a create, rename or unlink in it is
// durable.
func SyncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncing %q: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := SyncFd(fd); err != nil {
		return fmt.Errorf("syncing %q: %w", dir, err)
	}
	return nil
}

func randHex() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
