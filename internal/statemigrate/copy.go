package statemigrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// errChanged: the source differs from the copy after copying.
var errChanged = errors.New("copy differs from source")

// copyTree copies the contents of directory src into the existing empty
// directory dst, then gives dst src's owner, mode and times, with
// safefs.CopyTree: symlinks copied as links and never followed, files opened
// O_NOFOLLOW relative to their directory and created O_EXCL, holes, hardlinks,
// xattrs (ACLs, file capabilities), modes (setuid/setgid after chown) and
// times kept, owners and security.* xattrs too when root, other mounts not
// entered, sockets skipped (runtime, not state). Every file and directory is fsynced. An entry that
// vanishes or changes meanwhile, or a device node that can't be made, fails
// the copy: the app is stopped, so that is not a live tree's churn. It
// returns the mount points below src, which are not copied (their content
// stays where it is mounted).
func copyTree(src, dst string) ([]string, error) {
	res, err := safefs.CopyTree(context.Background(), safefs.CopyOptions{Src: src, Dst: dst, KeepOwner: true,
		ChownBestEffort: true, Sync: true, Strict: true})
	if err != nil {
		return nil, err
	}
	return res.Mounts, nil
}

// verifyTree compares src and dst (safefs.Compare): the same names, types,
// modes, sizes, contents, symlink targets, device numbers, hardlinks, xattrs
// and modification times; owners and security.* xattrs when root (without
// privileges the copy can't set them). A mount below src was not copied and is not compared.
func verifyTree(src, dst string) error {
	all := func(string) bool { return true }
	sm, mounts, err := safefs.Manifest(src, safefs.ManifestOptions{Hash: all})
	if err != nil {
		return fmt.Errorf("reading %q: %w", src, err)
	}
	dm, _, err := safefs.Manifest(dst, safefs.ManifestOptions{Hash: all})
	if err != nil {
		return fmt.Errorf("reading %q: %w", dst, err)
	}
	for _, p := range mounts {
		for q := range sm {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(sm, q)
			}
		}
	}
	unprivileged := os.Geteuid() != 0
	if unprivileged { // the copy could not set them (see copyTree)
		dropPrivilegedXattrs(sm)
		dropPrivilegedXattrs(dm)
	}
	diffs, warnings := safefs.Compare(sm, dm, safefs.CompareOptions{KeepOwner: true, IgnoreOwner: unprivileged})
	if diffs = append(diffs, warnings...); len(diffs) > 0 {
		return fmt.Errorf("verifying %q against %q: %s: %w", dst, src, diffs[0], errChanged)
	}
	return nil
}

// dropPrivilegedXattrs removes from a manifest the security.* xattrs a user
// other than root can't set.
func dropPrivilegedXattrs(m map[string]*safefs.Entry) {
	for _, e := range m {
		for k := range e.Xattrs {
			if strings.HasPrefix(k, "security.") {
				delete(e.Xattrs, k)
			}
		}
	}
}

// restoreTimes gives dir back the times of the entry st describes (writing
// the marker and renaming files in it touched them) and fsyncs it.
func restoreTimes(dir string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dir, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting the times of %q: %w", dir, err)
	}
	return safefs.SyncDir(dir)
}
