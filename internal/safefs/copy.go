package safefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrChanged: with CopyOptions.Strict, an entry vanished or changed its type
// while it was copied.
var ErrChanged = errors.New("changed during the copy")

// CopyOptions drive one copy of a source tree into a destination directory.
type CopyOptions struct {
	// Src and Dst are existing directories; Dst is empty, or for a delta
	// holds the copy Previous describes.
	Src, Dst string
	// UID and GID are every entry's owner, the root's included, unless
	// KeepOwner keeps the source's numeric ids.
	UID, GID  int
	KeepOwner bool
	// ChownBestEffort: when not root, an EPERM from chown leaves the entry
	// owned by the copying user, and one from setting an xattr (security.*:
	// file capabilities, SELinux labels) leaves it out (noted in Warnings),
	// instead of failing.
	ChownBestEffort bool
	// Previous is the manifest the previous pass returned (CopyStats.Manifest):
	// the copy is then a delta that compares the source with it, copies what
	// changed and removes from Dst what is gone. Nil: a full copy.
	Previous map[string]*Entry
	// Exclude: directories (relative to Src) copied as empty directories.
	Exclude []string
	// Reserved is a name the root of Src must not hold (Dst keeps its state
	// under it); "" for none.
	Reserved string
	// Workers copy regular files in parallel (default 1: one at a time).
	Workers int
	// Progress, when set, is called with the running totals at most five
	// times a second, and once at the end.
	Progress func(bytes, files int64)
	// Sync fsyncs every file and directory created (a copy that must be on
	// disk before the caller renames it into place).
	Sync bool
	// Strict makes what a copy of a live tree only warns about an error: an
	// entry that vanishes or changes its type meanwhile (ErrChanged), a
	// device node that can't be created.
	Strict bool
}

// CopyStats is what a copy did.
type CopyStats struct {
	Bytes int64 // data bytes copied (holes excluded)
	Files int64 // entries created
	// Delta only: source paths added, changed (content, metadata or type) and removed.
	Added, Changed, Removed []string
	// Warnings: entries not copied (other mounts, sockets, device nodes where
	// mknod is refused) and entries that vanished during the copy.
	Warnings []string
	// Mounts are the mount points met below Src (relative), not entered.
	Mounts []string
	// Manifest is the source as copied, for the next delta.
	Manifest map[string]*Entry
}

type copier struct {
	ctx       context.Context
	o         CopyOptions
	dstRoot   int
	mounts    *MountRoots
	old       map[string]*Entry   // previous manifest (delta)
	oldKids   map[string][]string // directory → children in old
	man       map[string]*Entry   // this pass's source manifest
	links     map[devIno]string   // source inode → destination path in this pass
	res       CopyStats
	buf       []byte
	cfrBroken atomic.Bool
	umask     uint32
	last      time.Time
	prune     map[string]bool // o.Exclude

	mu     sync.Mutex // guards res's lists, man, last; workers run beside the walk
	bytes  atomic.Int64
	files  atomic.Int64
	jobs   chan func(buf []byte)
	errMu  sync.Mutex
	jobErr error
}

// CopyTree copies o.Src into o.Dst by descriptor: symlinks are copied as
// links and never followed (every open is O_NOFOLLOW relative to its
// directory's descriptor, and a directory is checked to be the one listed),
// other mounts are not entered, regular files keep their holes (SEEK_DATA)
// and hardlinks are linked again; every entry gets its owner, xattrs (ACLs,
// file capabilities), mode (setuid, setgid, sticky: set after chown, which
// clears them), atime and mtime; directories' times are set after their
// content. A cancelled ctx stops it. Errors name the relative path and wrap
// the errno (ENOSPC, EDQUOT for a full destination).
func CopyTree(ctx context.Context, o CopyOptions) (*CopyStats, error) {
	src, err := OpenRoot(o.Src)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst, err := OpenRoot(o.Dst)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	var rootSt unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &rootSt); err != nil {
		return nil, fmt.Errorf("reading %q: %w", o.Src, err)
	}
	c := &copier{ctx: ctx, o: o, dstRoot: int(dst.Fd()), mounts: NewMountRoots(uint64(rootSt.Dev)),
		man: map[string]*Entry{}, links: map[devIno]string{}, buf: make([]byte, 1<<20), prune: set(o.Exclude)}
	if o.Previous != nil {
		c.old, c.oldKids = o.Previous, children(o.Previous)
	}
	c.umask = uint32(unix.Umask(0))
	unix.Umask(int(c.umask))
	root := EntryOf(&rootSt)
	c.man["."] = root
	stop := c.startWorkers()
	_, err = c.copyDir(src, dst, ".")
	stop()
	c.res.Bytes, c.res.Files = c.bytes.Load(), c.files.Load()
	if err != nil {
		return nil, err
	}
	if err := c.setMeta(c.dstRoot, -1, "", root, int(src.Fd()), rootSt.Atim.Nano(), 1<<31); err != nil {
		return nil, fmt.Errorf("setting the owner and mode of the root: %w", err)
	}
	if err := c.sync(c.dstRoot); err != nil {
		return nil, fmt.Errorf("syncing the root: %w", err)
	}
	c.res.Manifest = c.man
	c.report(true)
	return &c.res, nil
}

// startWorkers starts o.Workers file copiers (none for one) and returns the
// function that waits for them.
func (c *copier) startWorkers() (stop func()) {
	if c.o.Workers <= 1 {
		return func() {}
	}
	var workers sync.WaitGroup
	c.jobs = make(chan func([]byte))
	for i := 0; i < c.o.Workers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			buf := make([]byte, 1<<20)
			for job := range c.jobs {
				job(buf)
			}
		}()
	}
	return func() {
		close(c.jobs)
		workers.Wait()
	}
}

func children(m map[string]*Entry) map[string][]string {
	out := map[string][]string{}
	for p := range m {
		if p == "." {
			continue
		}
		d := parentRel(p)
		out[d] = append(out[d], baseRel(p))
	}
	return out
}

// MergeTouched returns the sorted union of the path lists.
func MergeTouched(old []string, lists ...[]string) []string {
	set := map[string]bool{}
	for _, p := range old {
		set[p] = true
	}
	for _, l := range lists {
		for _, p := range l {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// warn records a warning, or with o.Strict returns it as an error wrapping
// err.
func (c *copier) warn(err error, format string, args ...any) error {
	if c.o.Strict {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	c.note(format, args...)
	return nil
}

// note records a warning, also with o.Strict: what is never the tree's to copy.
func (c *copier) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Warnings = append(c.res.Warnings, msg)
}

// vanished handles an entry gone (or replaced) while it was copied.
func (c *copier) vanished(p string) error {
	return c.warn(ErrChanged, "%s: vanished during the copy", p)
}

func (c *copier) report(force bool) {
	if c.o.Progress == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(c.last) < 200*time.Millisecond {
		return
	}
	c.last = now
	c.o.Progress(c.bytes.Load(), c.files.Load())
}

func (c *copier) owner(e *Entry) (int, int) {
	if c.o.KeepOwner {
		return int(e.UID), int(e.GID)
	}
	return c.o.UID, c.o.GID
}

// chown gives fd (or name under dirfd, not followed, when fd < 0) its owner.
func (c *copier) chown(fd, dirfd int, name string, e *Entry) error {
	uid, gid := c.owner(e)
	var err error
	if fd >= 0 {
		err = unix.Fchown(fd, uid, gid)
	} else {
		err = unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if c.unprivileged(err) {
		return nil // without CAP_CHOWN the copy stays the copying user's
	}
	return err
}

// unprivileged reports an EPERM that o.ChownBestEffort tolerates: a copy by
// a user other than root can't chown, nor set security.* xattrs (file
// capabilities, SELinux labels).
func (c *copier) unprivileged(err error) bool {
	return err != nil && c.o.ChownBestEffort && errors.Is(err, unix.EPERM) && os.Geteuid() != 0
}

// sync fsyncs fd when o.Sync.
func (c *copier) sync(fd int) error {
	if !c.o.Sync {
		return nil
	}
	return SyncFd(fd)
}

// changed reports whether a source entry differs from the previous pass's.
func changed(old, e *Entry) bool {
	return old.Type != e.Type || old.Size != e.Size || old.Mtime != e.Mtime ||
		old.Ctime != e.Ctime || old.Ino != e.Ino || old.Dev != e.Dev
}

// copyDir copies the children of the source directory src (the tree's rel)
// into dst. It returns whether anything below was written.
func (c *copier) copyDir(src, dst *os.File, rel string) (bool, error) {
	if err := c.ctx.Err(); err != nil {
		return false, err
	}
	names, err := ReadNames(src)
	if err != nil {
		return false, fmt.Errorf("listing %q: %w", rel, err)
	}
	srcfd, dstfd := int(src.Fd()), int(dst.Fd())
	touched, err := c.removeGone(dstfd, rel, names)
	if err != nil {
		return false, err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // the jobs use this directory's descriptors
	for _, name := range names {
		if rel == "." && name == c.o.Reserved && name != "" {
			return false, fmt.Errorf("the source holds %q, the name the copy keeps its state under", name)
		}
		if err := c.failed(); err != nil {
			return false, err
		}
		t, err := c.copyEntry(srcfd, dstfd, rel, name, &wg)
		if err != nil {
			return false, err
		}
		touched = touched || t
	}
	wg.Wait()
	return touched, c.failed()
}

// removeGone removes from the destination directory dstfd (the tree's rel)
// what the previous pass copied there and the source no longer has.
func (c *copier) removeGone(dstfd int, rel string, names []string) (bool, error) {
	if c.old == nil {
		return false, nil
	}
	present := map[string]bool{}
	for _, n := range names {
		present[n] = true
	}
	touched := false
	for _, n := range c.oldKids[rel] {
		if !present[n] {
			if err := c.remove(dstfd, rel, n); err != nil {
				return false, err
			}
			touched = true
		}
	}
	return touched, nil
}

func (c *copier) remove(dstfd int, rel, name string) error {
	p := JoinRel(rel, name)
	if err := RemoveAt(dstfd, name); err != nil {
		return fmt.Errorf("removing %q from the copy: %w", p, err)
	}
	c.mu.Lock()
	c.res.Removed = append(c.res.Removed, p)
	c.mu.Unlock()
	return nil
}

// failed returns the first error of a copy job.
func (c *copier) failed() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.jobErr
}

// record notes a created entry.
func (c *copier) record(p string, e, old *Entry) {
	c.mu.Lock()
	c.man[p] = e
	if c.old == nil {
		// the full pass lists nothing: everything is new
	} else if old == nil {
		c.res.Added = append(c.res.Added, p)
	} else {
		c.res.Changed = append(c.res.Changed, p)
	}
	c.mu.Unlock()
	c.files.Add(1)
	c.report(false)
}

func (c *copier) copyEntry(srcfd, dstfd int, rel, name string, wg *sync.WaitGroup) (bool, error) {
	p := JoinRel(rel, name)
	var st unix.Stat_t
	if err := unix.Fstatat(srcfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if !IsNotExist(err) {
			return false, fmt.Errorf("reading %q: %w", p, err)
		}
		if err := c.vanished(p); err != nil {
			return false, err
		}
		if c.old != nil && c.old[p] != nil {
			return true, c.remove(dstfd, rel, name)
		}
		return false, nil
	}
	e := EntryOf(&st)
	var old *Entry
	if c.old != nil {
		old = c.old[p]
	}
	if e.Type == unix.S_IFDIR {
		if c.mounts.At(srcfd, name, &st) {
			c.note("%s: another mount, not copied", p)
			c.mu.Lock()
			c.res.Mounts = append(c.res.Mounts, p)
			c.mu.Unlock()
			if old != nil {
				return true, c.remove(dstfd, rel, name)
			}
			return false, nil
		}
		return c.copyDirEntry(srcfd, dstfd, rel, name, &st, e, old)
	}
	if old != nil && !changed(old, e) {
		c.keep(p, e, old)
		return false, nil
	}
	if c.old != nil {
		// new, changed or of another type: whatever the copy holds there goes
		if err := RemoveAt(dstfd, name); err != nil {
			return false, fmt.Errorf("replacing %q in the copy: %w", p, err)
		}
	}
	if c.jobs != nil && e.Type == unix.S_IFREG && e.Nlink <= 1 {
		c.queueFile(srcfd, dstfd, p, name, e, old, wg)
		return true, nil
	}
	done, err := c.create(srcfd, dstfd, p, name, e, st.Atim.Nano())
	if err != nil || !done {
		return false, err
	}
	c.record(p, e, old)
	return true, nil
}

// keep records an entry the previous pass copied and that did not change.
func (c *copier) keep(p string, e, old *Entry) {
	c.mu.Lock()
	c.man[p] = old
	c.mu.Unlock()
	if e.Type == unix.S_IFREG && e.Nlink > 1 {
		if _, ok := c.links[devIno{e.Dev, e.Ino}]; !ok {
			c.links[devIno{e.Dev, e.Ino}] = p
		}
	}
}

// queueFile hands a regular file without other links to a worker.
func (c *copier) queueFile(srcfd, dstfd int, p, name string, e, old *Entry, wg *sync.WaitGroup) {
	wg.Add(1)
	c.jobs <- func(buf []byte) {
		defer wg.Done()
		done, err := c.copyFile(srcfd, dstfd, p, name, e, buf)
		if err != nil {
			c.errMu.Lock()
			if c.jobErr == nil {
				c.jobErr = err
			}
			c.errMu.Unlock()
		} else if done {
			c.record(p, e, old)
		}
	}
}

func (c *copier) copyDirEntry(srcfd, dstfd int, rel, name string, st *unix.Stat_t, e, old *Entry) (bool, error) {
	p := JoinRel(rel, name)
	sd, err := OpenDir(srcfd, name, st)
	if err != nil {
		if IsNotExist(err) {
			return false, c.vanished(p)
		}
		return false, fmt.Errorf("opening %q: %w", p, err)
	}
	defer sd.Close()
	isNew := old == nil || old.Type != unix.S_IFDIR
	dd, err := c.makeDir(dstfd, p, name, old)
	if err != nil {
		return false, err
	}
	defer dd.Close()
	c.mu.Lock()
	c.man[p] = e
	c.mu.Unlock()
	touched := false
	if !c.prune[p] { // an excluded directory stays empty: the mount point of another volume
		if touched, err = c.copyDir(sd, dd, p); err != nil {
			return false, err
		}
	}
	c.mu.Lock()
	if isNew {
		c.files.Add(1)
		if old == nil && c.old != nil {
			c.res.Added = append(c.res.Added, p)
		} else if old != nil {
			c.res.Changed = append(c.res.Changed, p)
		}
		touched = true
	} else if old.Mode != e.Mode || old.UID != e.UID || old.GID != e.GID || old.Mtime != e.Mtime || old.Ctime != e.Ctime {
		c.res.Changed = append(c.res.Changed, p)
		touched = true
	}
	c.mu.Unlock()
	if isNew || touched || c.old == nil {
		if err := c.setMeta(int(dd.Fd()), -1, "", e, int(sd.Fd()), st.Atim.Nano(), 1<<31); err != nil {
			return false, writeErr("setting the owner and mode of", p, err)
		}
		if err := c.sync(int(dd.Fd())); err != nil {
			return false, writeErr("syncing", p, err)
		}
	}
	return touched, nil
}

// makeDir creates (or, for a delta, reuses) the destination directory name
// under dstfd and opens it. What a previous pass or an interrupted delta left
// there that is not that directory is replaced.
func (c *copier) makeDir(dstfd int, p, name string, old *Entry) (*os.File, error) {
	if old != nil && old.Type != unix.S_IFDIR {
		if err := RemoveAt(dstfd, name); err != nil {
			return nil, fmt.Errorf("replacing %q in the copy: %w", p, err)
		}
	}
	isNew := old == nil || old.Type != unix.S_IFDIR
	if err := unix.Mkdirat(dstfd, name, 0o700); err != nil && !(errors.Is(err, unix.EEXIST) && !isNew) {
		if errors.Is(err, unix.EEXIST) && c.old != nil { // left over from an interrupted delta
			if err = RemoveAt(dstfd, name); err == nil {
				err = unix.Mkdirat(dstfd, name, 0o700)
			}
		}
		if err != nil {
			return nil, writeErr("creating directory", p, err)
		}
	}
	dd, err := OpenDir(dstfd, name, nil)
	if err != nil && (IsNotExist(err) || errors.Is(err, unix.ELOOP)) {
		// the copy has something else there (an interrupted delta): replace it
		if err = RemoveAt(dstfd, name); err == nil {
			if err = unix.Mkdirat(dstfd, name, 0o700); err == nil {
				dd, err = OpenDir(dstfd, name, nil)
			}
		}
	}
	if err != nil {
		return nil, writeErr("opening directory", p, err)
	}
	return dd, nil
}

// create makes the entry p (name under dstfd) like the source entry e.
func (c *copier) create(srcfd, dstfd int, p, name string, e *Entry, atime int64) (bool, error) {
	switch e.Type {
	case unix.S_IFREG:
		return c.copyFile(srcfd, dstfd, p, name, e, c.buf)
	case unix.S_IFLNK:
		return c.symlink(srcfd, dstfd, p, name, e, atime)
	case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
		return c.mknod(dstfd, p, name, e, atime)
	default:
		// sockets: runtime, not state
		c.note("%s: %s not copied", p, TypeName(e.Type))
		return false, nil
	}
}

func (c *copier) symlink(srcfd, dstfd int, p, name string, e *Entry, atime int64) (bool, error) {
	target, err := readlinkAt(srcfd, name)
	if err != nil {
		if IsNotExist(err) || errors.Is(err, unix.EINVAL) {
			return false, c.vanished(p)
		}
		return false, fmt.Errorf("reading symlink %q: %w", p, err)
	}
	e.Link = target
	if err := unix.Symlinkat(target, dstfd, name); err != nil {
		return false, writeErr("creating symlink", p, err)
	}
	if err := c.chown(-1, dstfd, name, e); err != nil {
		return false, writeErr("setting the owner of", p, err)
	}
	if err := setTimes(dstfd, name, atime, e.Mtime); err != nil {
		return false, writeErr("setting the times of", p, err)
	}
	return true, nil
}

func (c *copier) mknod(dstfd int, p, name string, e *Entry, atime int64) (bool, error) {
	if err := unix.Mknodat(dstfd, name, e.Type|0o600, int(e.Rdev)); err != nil {
		if e.Type != unix.S_IFIFO && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) {
			return false, c.warn(err, "%s: %s not created", p, TypeName(e.Type))
		}
		return false, writeErr("creating "+TypeName(e.Type), p, err)
	}
	if err := c.chown(-1, dstfd, name, e); err != nil {
		return false, writeErr("setting the owner of", p, err)
	}
	if err := unix.Fchmodat(dstfd, name, e.Mode, 0); err != nil {
		return false, writeErr("setting the mode of", p, err)
	}
	if err := setTimes(dstfd, name, atime, e.Mtime); err != nil {
		return false, writeErr("setting the times of", p, err)
	}
	return true, nil
}

// writeErr names a failed write in the destination.
func writeErr(what, p string, err error) error {
	return fmt.Errorf("%s %q: %w", what, p, err)
}

func (c *copier) copyFile(srcfd, dstfd int, p, name string, e *Entry, buf []byte) (bool, error) {
	key := devIno{e.Dev, e.Ino}
	if e.Nlink > 1 {
		if done, err := c.linkAgain(dstfd, p, name, e); done || err != nil {
			return done, err
		}
	}
	sfd, err := openFileNoFollow(srcfd, name)
	if err != nil {
		if IsNotExist(err) || errors.Is(err, unix.ELOOP) {
			return false, c.vanished(p)
		}
		return false, fmt.Errorf("opening %q: %w", p, err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return false, fmt.Errorf("reading %q: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || c.o.Strict && (uint64(st.Dev) != e.Dev || st.Ino != e.Ino) {
		return false, c.warn(ErrChanged, "%s: replaced during the copy", p)
	}
	*e = *EntryOf(&st) // what is copied is what the next pass compares with
	// created with its final permission bits: no chmod needed afterwards unless
	// setuid/setgid/sticky (cleared by chown), xattrs or the umask say so
	dfd, err := unix.Openat(dstfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, e.Mode&0o777)
	if err != nil {
		return false, writeErr("creating", p, err)
	}
	defer unix.Close(dfd)
	if err := c.copyData(sfd, dfd, e.Size, e.Blocks*512 >= e.Size, buf); err != nil {
		return false, writeErr("copying", p, err)
	}
	if err := c.setMeta(dfd, dstfd, name, e, sfd, st.Atim.Nano(), e.Mode&0o777&^c.umask); err != nil {
		return false, writeErr("setting the owner and mode of", p, err)
	}
	if err := c.sync(dfd); err != nil {
		return false, writeErr("syncing", p, err)
	}
	if e.Nlink > 1 {
		c.mu.Lock()
		c.links[key] = p
		c.mu.Unlock()
	}
	return true, nil
}

// linkAgain links p to the copy of an earlier link of the same source inode;
// false when there is none (or it vanished): the file is then copied.
func (c *copier) linkAgain(dstfd int, p, name string, e *Entry) (bool, error) {
	c.mu.Lock()
	first, ok := c.links[devIno{e.Dev, e.Ino}]
	c.mu.Unlock()
	if !ok {
		return false, nil
	}
	dir, err := OpenBeneath(c.dstRoot, parentRel(first))
	if err == nil {
		err = unix.Linkat(dir, baseRel(first), dstfd, name, 0)
		unix.Close(dir)
	}
	if err == nil {
		// record what was copied for the whole group, so that a delta
		// pass decides the same for every link of it
		c.mu.Lock()
		if fe := c.man[first]; fe != nil {
			*e = *fe
		}
		c.mu.Unlock()
		return true, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return false, writeErr("linking", p, err)
	}
	return false, nil // the first link vanished: copy this one on its own
}

// copyData copies the data regions of src into dst, leaving holes as holes.
// A fully allocated file (dense) has no holes to look for.
func (c *copier) copyData(src, dst int, size int64, dense bool, buf []byte) error {
	if dense {
		return c.copyRange(src, dst, 0, size, buf)
	}
	var off int64
	for off < size {
		data, err := unix.Seek(src, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil { // no SEEK_DATA on this file system: all data
			return c.copyRange(src, dst, off, size-off, buf)
		}
		hole, err := unix.Seek(src, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if err := c.copyRange(src, dst, data, hole-data, buf); err != nil {
			return err
		}
		off = hole
	}
	return unix.Ftruncate(dst, size)
}

func (c *copier) copyRange(src, dst int, off, n int64, buf []byte) error {
	for n > 0 {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		chunk := min(n, 1<<30)
		var w int
		var err error
		if !c.cfrBroken.Load() {
			roff, woff := off, off
			w, err = unix.CopyFileRange(src, &roff, dst, &woff, int(chunk), 0)
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
				c.cfrBroken.Store(true)
				continue
			}
		} else {
			chunk = min(chunk, int64(len(buf)))
			var r int
			r, err = unix.Pread(src, buf[:chunk], off)
			if err == nil && r > 0 {
				w, err = WriteFull(dst, buf[:r], off)
			}
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if w == 0 {
			return nil // the file shrank while copying: the delta pass settles it
		}
		off += int64(w)
		n -= int64(w)
		c.bytes.Add(int64(w))
		c.report(false)
	}
	return nil
}

// setMeta gives an open destination file or directory (fd) its owner,
// xattrs, mode and times, in that order: chown clears setuid/setgid and file
// capabilities, so the mode and security.capability come after it. The xattrs
// are read from the open source sfd. For a file, dirfd/name set the times.
// created is the mode the entry was created with.
func (c *copier) setMeta(fd, dirfd int, name string, e *Entry, sfd int, atime int64, created uint32) error {
	if err := c.chown(fd, -1, "", e); err != nil {
		return err
	}
	xs, err := fdXattrs(sfd)
	if err != nil {
		return err
	}
	// ACLs before the mode (chmod rewrites the ACL mask from the mode's group bits, as the source has it)
	for _, k := range sortedKeys(xs) {
		if err := unix.Fsetxattr(fd, k, xs[k], 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
				c.note("%s: xattr %s not supported by the destination's file system", name, k)
				continue
			}
			if c.unprivileged(err) {
				c.note("%s: xattr %s not set without privileges", name, k)
				continue
			}
			return fmt.Errorf("setting xattr %q: %w", k, err)
		}
	}
	if len(xs) > 0 || e.Mode != created {
		if err := unix.Fchmod(fd, e.Mode); err != nil {
			return err
		}
	}
	if dirfd >= 0 {
		return setTimes(dirfd, name, atime, e.Mtime)
	}
	return SetFdTimes(fd, atime, e.Mtime)
}
