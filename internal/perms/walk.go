package perms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// The walk. Every directory is opened relative to its parent's descriptor with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV) (or openat with
// O_NOFOLLOW plus a device and mountinfo check where openat2 is missing), listed
// with getdents into a large buffer, and every entry is examined with
// statx(AT_SYMLINK_NOFOLLOW) relative to that descriptor, which also reports
// mount roots (STATX_ATTR_MOUNT_ROOT). A directory is chowned through its own
// descriptor after its children, so it stays root-only while they are fixed.
//
// An entry whose owner is wrong is changed in one of two ways:
//   - in a "sealed" directory (owned by root, not group- or world-writable) nobody
//     but root can swap the entry between statx and fchownat, so
//     fchownat(dirfd, name, AT_SYMLINK_NOFOLLOW) is safe;
//   - elsewhere the entry is pinned first: openat2(O_PATH|O_NOFOLLOW) gives a
//     descriptor of the inode itself (of the symlink, if it is one), fstat on
//     it re-checks type, link count and owner, and fchownat(fd, "",
//     AT_EMPTY_PATH) changes exactly that inode. An attacker swapping the name
//     for a symlink or a hardlink to a file outside changes nothing: the link
//     itself is chowned, or the hardlink's count (> 1) makes it a skip.

// forceNoOpenat2 makes the walk use its openat fallback (tests).
var forceNoOpenat2 bool

// testHookBeforeChange, when set (tests), runs after an entry was examined and
// before it is opened or changed: where an attacker would swap it.
var testHookBeforeChange func(path string)

const direntBufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, direntBufSize); return &b }}

type walker struct {
	ctx      context.Context
	root     string
	opts     Options
	uid, gid uint32
	openat2  bool
	mounts   map[string]bool // mount points from mountinfo, only when statx or openat2 can't tell
	sem      chan struct{}

	entries, changed, setid, skippedTotal atomic.Int64
	mu                                    sync.Mutex
	skipped                               []Skip
	errOnce                               sync.Once
	err                                   error
	failed                                atomic.Bool
}

func newWalker(ctx context.Context, root string, opts Options) *walker {
	w := &walker{ctx: ctx, root: root, opts: opts, uid: uint32(opts.UID), gid: uint32(opts.GID), openat2: !forceNoOpenat2}
	if opts.Workers > 1 {
		w.sem = make(chan struct{}, opts.Workers-1)
	}
	return w
}

func (w *walker) stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Stats{
		Entries:      w.entries.Load(),
		Changed:      w.changed.Load(),
		SetIDCleared: w.setid.Load(),
		Skipped:      append([]Skip(nil), w.skipped...),
		SkippedTotal: w.skippedTotal.Load(),
	}
}

func (w *walker) fail(err error) {
	w.errOnce.Do(func() { w.err = err; w.failed.Store(true) })
}

func (w *walker) skip(path string, r SkipReason) {
	w.skippedTotal.Add(1)
	w.mu.Lock()
	if len(w.skipped) < w.opts.MaxSkips {
		w.skipped = append(w.skipped, Skip{Path: path, Reason: r})
	}
	w.mu.Unlock()
}

func (w *walker) run(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	if w.openat2 {
		// Probe once: kernels before 5.6 answer ENOSYS.
		nfd, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
		if err != nil {
			w.openat2 = false
		} else {
			unix.Close(nfd)
		}
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &stx); err != nil || !w.openat2 ||
		stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		mounts, err := safefs.MountPointsUnder(w.root)
		if err != nil {
			// Without statx, openat2 or the mount table a bind mount of the
			// same file system below root can't be told: stop, change nothing.
			unix.Close(fd)
			return fmt.Errorf("telling its mount points without openat2: %w", err)
		}
		w.mounts = mounts
	}
	w.entries.Add(1)
	w.subdir(fd, w.root, &st, 0)
	if w.failed.Load() {
		return w.err
	}
	return w.ctx.Err()
}

// subdir walks the directory open as fd (fstat st) at depth below the root,
// chowns it when wrong and closes fd. Past deepAfter levels it goes on with
// deep, which holds a bounded number of descriptors.
func (w *walker) subdir(fd int, path string, st *unix.Stat_t, depth int) {
	if depth >= deepAfter {
		if pfd := w.deep(fd, path, st, depth, false); pfd >= 0 {
			unix.Close(pfd)
		}
		return
	}
	defer unix.Close(fd)
	sealed := st.Uid == 0 && st.Mode&0o022 == 0
	var wg sync.WaitGroup
	w.dir(fd, path, st.Dev, sealed, func(name []byte) { w.childDir(fd, path, st.Dev, name, depth+1, &wg) })
	wg.Wait()
	if w.failed.Load() {
		return
	}
	w.chownSelf(fd, path, st)
}

// chownSelf gives the directory open as fd (fstat st) to the user when wrong.
func (w *walker) chownSelf(fd int, path string, st *unix.Stat_t) {
	if st.Uid == w.uid && st.Gid == w.gid {
		return
	}
	w.changed.Add(1)
	if w.opts.DryRun {
		return
	}
	if err := unix.Fchown(fd, int(w.uid), int(w.gid)); err != nil {
		w.fail(&pathError{op: "chown", path: path, err: err})
	}
}

// deepAfter is the depth from which the walk stops holding one descriptor per
// level: each directory there is listed first, then its subdirectories are
// walked one at a time with its own descriptor closed, and it is re-opened
// through the subdirectory's ".." afterwards, checked to be the same inode.
// Up to deepAfter descriptors per worker, then a handful whatever the depth.
const deepAfter = 64

// deep walks the directory open as fd (fstat st) sequentially, chowns it when
// wrong and closes fd. With wantParent it first opens its "..", which it
// returns (-1 when it could not: the caller then stops, see SkipChanged).
func (w *walker) deep(fd int, path string, st *unix.Stat_t, depth int, wantParent bool) int {
	sealed := st.Uid == 0 && st.Mode&0o022 == 0
	var subdirs [][]byte
	w.dir(fd, path, st.Dev, sealed, func(name []byte) { subdirs = append(subdirs, append([]byte(nil), name...)) })
	for _, name := range subdirs {
		if w.failed.Load() {
			break
		}
		cfd, cst, ok := w.openChild(fd, path, st.Dev, name)
		if !ok {
			continue
		}
		unix.Close(fd)
		fd = w.deep(cfd, childPath(path, name), cst, depth+1, true)
		if fd < 0 {
			return -1
		}
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
			// The subdirectory was moved meanwhile: its ".." is not this
			// directory any more. Leave the rest to the next run.
			unix.Close(fd)
			w.skip(path, SkipChanged)
			return -1
		}
	}
	defer unix.Close(fd)
	if w.failed.Load() {
		return -1
	}
	w.chownSelf(fd, path, st)
	if !wantParent {
		return -1
	}
	pfd, err := unix.Openat(fd, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		w.fail(&pathError{op: "re-opening the parent of", path: path, err: err})
		return -1
	}
	return pfd
}

type pathError struct {
	op, path string
	err      error
}

func (e *pathError) Error() string { return fmt.Sprintf("%s %q: %v", e.op, e.path, e.err) }
func (e *pathError) Unwrap() error { return e.err }

// dir lists the directory open as fd and handles every entry: non-directories
// itself, directories through onDir (name NUL-terminated, valid during the
// call only).
func (w *walker) dir(fd int, path string, dev uint64, sealed bool, onDir func(name []byte)) {
	if w.ctx.Err() != nil {
		w.fail(w.ctx.Err())
		return
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for !w.failed.Load() {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			w.fail(&pathError{op: "reading directory", path: path, err: err})
			return
		}
		if n <= 0 {
			return
		}
		for off := 0; off < n; {
			reclen := int(*(*uint16)(unsafe.Pointer(&buf[off+16])))
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			off += reclen
			nl := 0
			for nl < len(name) && name[nl] != 0 {
				nl++
			}
			if nl == 1 && name[0] == '.' || nl == 2 && name[0] == '.' && name[1] == '.' {
				continue
			}
			if nl == len(name) {
				continue // not NUL-terminated: cannot happen
			}
			w.entries.Add(1)
			w.entry(fd, path, dev, sealed, name[:nl+1], typ, onDir)
			if w.failed.Load() {
				return
			}
		}
	}
}

func childPath(dir string, name []byte) string {
	return dir + "/" + string(name[:len(name)-1])
}

// entry handles one directory entry; name is NUL-terminated.
func (w *walker) entry(dirfd int, path string, dev uint64, sealed bool, name []byte, typ uint8, onDir func([]byte)) {
	if typ == unix.DT_DIR {
		onDir(name)
		return
	}
	var stx unix.Statx_t
	err := statx(dirfd, name, &stx)
	if errors.Is(err, unix.ENOENT) {
		return // removed meanwhile: nothing to fix
	}
	if err != nil {
		w.fail(&pathError{op: "examining", path: childPath(path, name), err: err})
		return
	}
	if stx.Mode&unix.S_IFMT == unix.S_IFDIR {
		onDir(name)
		return
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 ||
		w.mounts != nil && w.mounts[childPath(path, name)] {
		w.skip(childPath(path, name), SkipMount)
		return
	}
	if stx.Uid == w.uid && stx.Gid == w.gid {
		return
	}
	if stx.Nlink > 1 {
		w.skip(childPath(path, name), SkipHardlink)
		return
	}
	if testHookBeforeChange != nil {
		testHookBeforeChange(childPath(path, name))
	}
	if sealed {
		w.changed.Add(1)
		if stx.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && stx.Mode&unix.S_IFMT == unix.S_IFREG {
			w.setid.Add(1)
		}
		if w.opts.DryRun {
			return
		}
		err := fchownat(dirfd, name, w.uid, w.gid, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			w.fail(&pathError{op: "chown", path: childPath(path, name), err: err})
		}
		return
	}
	w.pinned(dirfd, path, dev, name)
}

// pinned chowns a non-directory entry through an O_PATH descriptor of it, after
// re-checking what that descriptor refers to.
func (w *walker) pinned(dirfd int, path string, dev uint64, name []byte) {
	fd, err := w.openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.ENOENT):
		return
	case errors.Is(err, unix.EXDEV):
		w.skip(childPath(path, name), SkipMount)
		return
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EAGAIN):
		w.skip(childPath(path, name), SkipChanged)
		return
	case err != nil:
		w.fail(&pathError{op: "opening", path: childPath(path, name), err: err})
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.fail(&pathError{op: "examining", path: childPath(path, name), err: err})
		return
	}
	switch {
	case st.Dev != dev:
		w.skip(childPath(path, name), SkipMount)
		return
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		w.skip(childPath(path, name), SkipChanged) // became a directory: next run
		return
	case st.Uid == w.uid && st.Gid == w.gid:
		return
	case st.Nlink > 1:
		w.skip(childPath(path, name), SkipHardlink)
		return
	}
	w.changed.Add(1)
	if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && st.Mode&unix.S_IFMT == unix.S_IFREG {
		w.setid.Add(1)
	}
	if w.opts.DryRun {
		return
	}
	if err := unix.Fchownat(fd, "", int(w.uid), int(w.gid), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		w.fail(&pathError{op: "chown", path: childPath(path, name), err: err})
	}
}

// childDir opens the directory entry name in dirfd without following symlinks
// or crossing mounts and walks it, in another goroutine when a worker is free.
func (w *walker) childDir(dirfd int, path string, dev uint64, name []byte, depth int, wg *sync.WaitGroup) {
	fd, st, ok := w.openChild(dirfd, path, dev, name)
	if !ok {
		return
	}
	cpath := childPath(path, name)
	if w.sem != nil && depth < deepAfter {
		select {
		case w.sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer func() { <-w.sem; wg.Done() }()
				w.subdir(fd, cpath, st, depth)
			}()
			return
		default:
		}
	}
	w.subdir(fd, cpath, st, depth)
}

// openChild opens the directory entry name in dirfd for reading, without
// following symlinks or crossing mounts. ok is false when the entry is to be
// left alone (reported) or the walk failed.
func (w *walker) openChild(dirfd int, path string, dev uint64, name []byte) (fd int, st *unix.Stat_t, ok bool) {
	cpath := childPath(path, name)
	if testHookBeforeChange != nil {
		testHookBeforeChange(cpath)
	}
	fd, err := w.openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.ENOENT):
		return -1, nil, false
	case errors.Is(err, unix.EXDEV):
		w.skip(cpath, SkipMount)
		return -1, nil, false
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EAGAIN):
		// Replaced by a symlink or a file since it was listed: leave it to the next run.
		w.skip(cpath, SkipChanged)
		return -1, nil, false
	case errors.Is(err, unix.EACCES):
		w.noAccess(dirfd, path, dev, name)
		return -1, nil, false
	case err != nil:
		w.fail(&pathError{op: "opening", path: cpath, err: err})
		return -1, nil, false
	}
	st = new(unix.Stat_t)
	if err := unix.Fstat(fd, st); err != nil {
		unix.Close(fd)
		w.fail(&pathError{op: "examining", path: cpath, err: err})
		return -1, nil, false
	}
	if st.Dev != dev || w.mounts != nil && w.mounts[cpath] {
		unix.Close(fd)
		w.skip(cpath, SkipMount)
		return -1, nil, false
	}
	return fd, st, true
}

// noAccess handles a directory root may not open (a capability set without
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, and a mode such as 0700): the
// directory itself is given to the user through an O_PATH descriptor when its
// owner is wrong, and its contents are left to the user, who can fix its own
// tree (SkipNoAccess).
func (w *walker) noAccess(dirfd int, path string, dev uint64, name []byte) {
	cpath := childPath(path, name)
	fd, err := w.openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		w.fail(&pathError{op: "opening", path: cpath, err: err})
		return
	}
	defer unix.Close(fd)
	w.noAccessPinned(fd, cpath, dev)
}

// noAccessFd is noAccess for the root, open as the O_PATH descriptor fd.
func (w *walker) noAccessFd(fd int, path string) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.fail(&pathError{op: "examining", path: path, err: err})
		return
	}
	w.entries.Add(1)
	w.noAccessPinned(fd, path, st.Dev)
}

func (w *walker) noAccessPinned(fd int, cpath string, dev uint64) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.fail(&pathError{op: "examining", path: cpath, err: err})
		return
	}
	switch {
	case st.Dev != dev:
		w.skip(cpath, SkipMount)
		return
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		w.skip(cpath, SkipChanged)
		return
	}
	w.skip(cpath, SkipNoAccess)
	if st.Uid == w.uid && st.Gid == w.gid {
		return
	}
	w.changed.Add(1)
	if w.opts.DryRun {
		return
	}
	if err := unix.Fchownat(fd, "", int(w.uid), int(w.gid), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
		w.fail(&pathError{op: "chown", path: cpath, err: err})
	}
}

// openat opens name beneath dirfd: openat2 with RESOLVE_BENEATH,
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_XDEV (EXDEV for a mount point), else
// openat with O_NOFOLLOW (the caller compares devices).
func (w *walker) openat(dirfd int, name []byte, flags int) (int, error) {
	for {
		var fd uintptr
		var errno unix.Errno
		if w.openat2 {
			how := unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS}
			fd, _, errno = unix.Syscall6(unix.SYS_OPENAT2, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
		} else {
			fd, _, errno = unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(flags), 0, 0, 0)
		}
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

const statxMask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_NLINK | unix.STATX_UID | unix.STATX_GID

func statx(dirfd int, name []byte, stx *unix.Statx_t) error {
	_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])),
		uintptr(unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC), statxMask, uintptr(unsafe.Pointer(stx)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func fchownat(dirfd int, name []byte, uid, gid uint32, flags int) error {
	_, _, errno := unix.Syscall6(unix.SYS_FCHOWNAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(uid), uintptr(gid), uintptr(flags), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
