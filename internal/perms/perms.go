// Package perms fixes the ownership of a directory tree safely, the way an image
// entrypoint running as root must: it reaches the tree under one trust rule for
// symlinks (only root's, in root-only directories, each trusted only as far as
// its own target) and refuses system directories, walks by file descriptor,
// never follows a symlink below, never leaves the tree or crosses into another
// mount, never chowns a hardlinked file that also lives elsewhere, and only
// touches entries whose owner is wrong (so setuid/setgid bits on entries
// already right are kept).
//
// It also checks, for a non-root start, that a directory is writable.
package perms

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Options tune Fix.
type Options struct {
	// UID and GID are the owner every entry must have. Both are required (>= 0).
	UID, GID int
	// MaxSkips bounds Stats.Skipped (default 100); further skips are only counted
	// in Stats.SkippedTotal.
	MaxSkips int
	// Workers is how many directories are walked at once (default 4; 1 walks
	// sequentially).
	Workers int
	// DryRun examines the tree and counts what would change without chowning.
	DryRun bool
}

// SkipReason says why Fix left an entry alone although its owner was wrong or it
// could not look inside.
type SkipReason int

const (
	// SkipMount: the entry is a mount point (another filesystem or a bind
	// mount); Fix does not cross into it nor change it.
	SkipMount SkipReason = iota + 1
	// SkipHardlink: a non-directory with more than one link whose owner is
	// wrong; chowning it would also chown the file's other names, which may
	// live outside the tree.
	SkipHardlink
	// SkipChanged: the entry was replaced (e.g. by a symlink) while Fix ran.
	SkipChanged
	// SkipNoAccess: a directory root may not open (a capability set without
	// CAP_DAC_OVERRIDE, e.g. --cap-drop ALL --cap-add CHOWN,SETUID,SETGID, and a
	// mode such as 0700). The directory itself now belongs to the user, who can
	// fix what is inside; its contents were not examined.
	SkipNoAccess
)

func (r SkipReason) String() string {
	switch r {
	case SkipMount:
		return "mount point"
	case SkipHardlink:
		return "hardlinked elsewhere"
	case SkipChanged:
		return "changed during the walk"
	case SkipNoAccess:
		return "root may not open it without CAP_DAC_OVERRIDE; its contents are left to the user"
	}
	return fmt.Sprintf("reason %d", int(r))
}

// Skip is one entry Fix left alone, named by its path under the root.
type Skip struct {
	Path   string
	Reason SkipReason
}

// Stats is what Fix found and did.
type Stats struct {
	Entries      int64  // entries examined, the root included
	Changed      int64  // entries chowned (or that would be, with DryRun)
	SetIDCleared int64  // chowned non-directories that had setuid/setgid bits, which chown clears
	Skipped      []Skip // the first Options.MaxSkips entries left alone
	SkippedTotal int64  // all entries left alone
}

// ErrSymlink is returned (wrapped) when the root, or a component of its path
// that is not trusted, is a symlink.
var ErrSymlink = errors.New("refusing to follow a symlink")

// Fix makes uid:gid (Options.UID/GID) the owner of root and of every entry below
// it, changing only entries whose owner is wrong. The root itself is always
// checked. Entries that are mount points, non-directories with more than one
// link, entries replaced during the walk, and directories the caller may not
// open (SkipNoAccess: given to the user, contents left to it) are skipped and
// reported in Stats. Symlinks are chowned themselves (lchown), never their
// targets. The walk holds a bounded number of descriptors whatever the depth.
//
// The root's path is resolved under the package's one trust rule (see
// Resolve): a symlink is followed only when it and the directory holding it
// belong to root and are not group- or world-writable, and only as far as its
// own target; the root itself must be a directory, not a symlink (ErrSymlink),
// and not a system directory (ErrSystemDir). Ids must be 0 <= id < 2^31.
// Fix stops at the first I/O error or when ctx is done, returning the stats so far.
func Fix(ctx context.Context, root string, opts Options) (Stats, error) {
	if !ValidID(opts.UID) || !ValidID(opts.GID) {
		return Stats{}, fmt.Errorf("fixing ownership of %q: invalid owner %d:%d", root, opts.UID, opts.GID)
	}
	if opts.MaxSkips <= 0 {
		opts.MaxSkips = 100
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	r, err := resolve(root, false)
	if err != nil {
		return Stats{}, fmt.Errorf("fixing ownership of %q: %w", root, err)
	}
	w := newWalker(ctx, root, opts)
	fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		// Root may not read it (no CAP_DAC_OVERRIDE): the user's to fix.
		w.noAccessFd(r.fd, root)
		unix.Close(r.fd)
		if w.err != nil {
			return w.stats(), fmt.Errorf("fixing ownership of %q: %w", root, w.err)
		}
		return w.stats(), nil
	}
	unix.Close(r.fd)
	if err != nil {
		return Stats{}, fmt.Errorf("fixing ownership of %q: %w", root, err)
	}
	err = w.run(fd)
	if err != nil {
		return w.stats(), fmt.Errorf("fixing ownership of %q: %w", root, err)
	}
	return w.stats(), nil
}

// ValidID reports whether id is a user or group id the kernel and Fix take:
// 0 <= id < 2^31 (-1 means "unchanged" to chown, and the kernel refuses ids
// from 2^31 on in user namespaces and setgroups).
func ValidID(id int) bool { return id >= 0 && id < 1<<31 }
