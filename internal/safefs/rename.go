package safefs

import (
	"errors"

	"golang.org/x/sys/unix"
)

// RenameNoReplace renames oldname under olddirfd to newname under newdirfd
// and fails with an error wrapping unix.EEXIST when newname exists (use
// unix.AT_FDCWD and paths for either). Where renameat2(RENAME_NOREPLACE) is
// not supported (EINVAL from FUSE and some network file systems, ENOSYS from
// old kernels) it checks and then renames: callers hold a lock or own both
// names, so only a process that ignores the lock can slip in between, and
// rename(2) then still refuses a non-empty directory (ENOTEMPTY) or a file
// (ENOTDIR); at worst an empty directory created in that window is replaced.
func RenameNoReplace(olddirfd int, oldname string, newdirfd int, newname string) error {
	err := TestHooks.Renameat2(olddirfd, oldname, newdirfd, newname, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(newdirfd, newname, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return unix.EEXIST
	} else if !errors.Is(err, unix.ENOENT) {
		return err
	}
	return unix.Renameat(olddirfd, oldname, newdirfd, newname)
}

// Exchange swaps aname under adirfd and bname under bdirfd in one atomic
// renameat2(RENAME_EXCHANGE). There is no fallback: ExchangeUnsupported
// tells the errors of file systems that cannot do it.
func Exchange(adirfd int, aname string, bdirfd int, bname string) error {
	return TestHooks.Renameat2(adirfd, aname, bdirfd, bname, unix.RENAME_EXCHANGE)
}

// ExchangeUnsupported reports whether err says that the file system (or the
// kernel) cannot exchange two names atomically.
func ExchangeUnsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}
