package helperfs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Room is what a file system has free for an unprivileged writer.
type Room struct {
	Bytes int64
	// Inodes is -1 when the file system does not count them (btrfs, some FUSE).
	Inodes int64
}

func roomAt(fd int) (Room, error) {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return Room{}, err
	}
	return roomOf(&fs), nil
}

// roomOf is the room a statfs(2) reports.
func roomOf(fs *unix.Statfs_t) Room {
	r := Room{Bytes: int64(fs.Bavail) * int64(fs.Bsize), Inodes: -1}
	if fs.Files > 0 {
		r.Inodes = int64(fs.Ffree)
	}
	return r
}

// Fits returns nil when bytes and files (inodes) fit in r, else an error
// wrapping ErrNoInodes or ErrNoSpace that names what is needed (need, e.g.
// "the source") and what is free.
func (r Room) Fits(need string, bytes, files int64) error {
	if r.Inodes >= 0 && files > r.Inodes {
		return fmt.Errorf("%w: %s needs %d inodes, the file system has %d free", ErrNoInodes, need, files, r.Inodes)
	}
	if bytes > r.Bytes {
		return fmt.Errorf("%w: %s needs %d bytes, the file system has %d free", ErrNoSpace, need, bytes, r.Bytes)
	}
	return nil
}

// outOfInodes reports whether an ENOSPC at fd's file system came from its
// inodes running out rather than its bytes.
func outOfInodes(fd int, err error) bool {
	if !errors.Is(err, unix.ENOSPC) {
		return false
	}
	r, serr := roomAt(fd)
	return serr == nil && r.Inodes == 0
}
