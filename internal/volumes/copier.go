package volumes

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// StateDir is the hidden directory at the root of a volume being filled that
// keeps the first pass's manifest for the delta pass and the list of what the
// delta touched for verification. Finish removes it.
const StateDir = ".moltctl-migrate"

// treeOptions drive one copy of a source tree into a destination tree, both
// local paths (inside the helper container: /from and /to).
type treeOptions struct {
	Src, Dst  string
	UID, GID  int  // the planned owner
	KeepOwner bool // keep numeric ids instead
	Delta     bool
	Progress  func(Progress)
	// Workers copy regular files in parallel (default 1: one at a time).
	Workers int
	// Reserve is how many bytes the full pass leaves free beyond the copy
	// (for the snapshots of the writable layers).
	Reserve int64
	// Exclude: directories (relative to Src) copied as empty directories.
	Exclude []string
}

type copier struct {
	ctx       context.Context
	o         treeOptions
	dstRoot   int
	rootDev   uint64
	mounts    *safefs.MountRoots
	old       map[string]*entry   // first pass's manifest (delta)
	oldKids   map[string][]string // directory → children in old
	man       map[string]*entry   // this pass's source manifest
	links     map[devIno]string   // source inode → destination path in this pass
	res       CopyResult
	buf       []byte
	cfrBroken atomic.Bool
	umask     uint32
	last      time.Time
	total     Progress
	prune     map[string]bool // o.Exclude

	mu     sync.Mutex // guards res's lists, man, last; workers run beside the walk
	bytes  atomic.Int64
	files  atomic.Int64
	jobs   chan func(buf []byte)
	errMu  sync.Mutex
	jobErr error
}

// copyTree copies o.Src into o.Dst. The full pass empties o.Dst (except the
// state directory) first; the delta pass compares the source with the manifest
// the previous pass stored and copies only what changed. The new manifest is
// stored in o.Dst/StateDir before copyTree returns.
func copyTree(ctx context.Context, o treeOptions) (*CopyResult, error) {
	start := time.Now()
	src, err := openRoot(o.Src)
	if err != nil {
		return nil, fmt.Errorf("opening the source: %w", err)
	}
	defer src.Close()
	dst, err := openRoot(o.Dst)
	if err != nil {
		return nil, fmt.Errorf("opening the volume: %w", err)
	}
	defer dst.Close()
	var rootSt unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &rootSt); err != nil {
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	c := &copier{ctx: ctx, o: o, dstRoot: int(dst.Fd()), rootDev: uint64(rootSt.Dev), mounts: safefs.NewMountRoots(uint64(rootSt.Dev)),
		man: map[string]*entry{}, links: map[devIno]string{}, buf: make([]byte, 1<<20), prune: pruneSet(o.Exclude)}
	c.res.Pass = PassFull
	c.umask = uint32(unix.Umask(0))
	unix.Umask(int(c.umask))
	st, err := openState(c.dstRoot)
	if err != nil {
		return nil, err
	}
	if o.Delta {
		c.res.Pass = PassDelta
		if st.Manifest == nil {
			return nil, fmt.Errorf("delta pass: %w", ErrNoFirstPass)
		}
		c.old = st.Manifest
		c.oldKids = children(c.old)
	} else {
		// a full pass interrupted after this point must not leave the old
		// manifest for a delta pass to trust
		if err := dropState(c.dstRoot); err != nil {
			return nil, err
		}
		st = &state{Version: 1}
		if err := c.clear(); err != nil {
			return nil, err
		}
		st.Touched = nil
		// space: the volume's file system must hold what the source allocates
		need, files, err := scanSize(int(src.Fd()), ".", c.rootDev, c.prune)
		if err != nil {
			return nil, fmt.Errorf("measuring the source: %w", err)
		}
		c.total = Progress{TotalBytes: need, TotalFiles: files}
		if room, err := roomAt(c.dstRoot); err == nil {
			what := "the source"
			if o.Reserve > 0 {
				what = fmt.Sprintf("the source (%d bytes) with the %d bytes kept for the snapshots", need, o.Reserve)
			}
			if err := room.Fits(what, need+o.Reserve, files); err != nil {
				return nil, err
			}
		}
	}
	root := entryOf(&rootSt)
	c.man["."] = root
	var workers sync.WaitGroup
	if o.Workers > 1 {
		c.jobs = make(chan func([]byte))
		for i := 0; i < o.Workers; i++ {
			workers.Add(1)
			go func() {
				defer workers.Done()
				buf := make([]byte, 1<<20)
				for job := range c.jobs {
					job(buf)
				}
			}()
		}
	}
	_, err = c.copyDir(src, dst, ".", root)
	if c.jobs != nil {
		close(c.jobs)
		workers.Wait()
	}
	c.res.Bytes, c.res.Files = c.bytes.Load(), c.files.Load()
	if err != nil {
		return nil, err
	}
	if err := c.setMeta(c.dstRoot, -1, "", root, int(src.Fd()), 1<<31); err != nil {
		return nil, fmt.Errorf("setting the owner of the volume root: %w", err)
	}
	if o.Delta {
		st.Touched = mergeTouched(st.Touched, c.res.Changed, c.res.Added)
	}
	st.Manifest = c.man
	if err := saveState(c.dstRoot, st, root.Mtime); err != nil {
		return nil, err
	}
	c.res.Duration = time.Since(start)
	c.report(true)
	return &c.res, nil
}

func children(m map[string]*entry) map[string][]string {
	out := map[string][]string{}
	for p := range m {
		if p == "." {
			continue
		}
		d := parentRel(p)
		out[d] = append(out[d], p[len(p)-len(baseRel(p)):])
	}
	return out
}

func baseRel(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func mergeTouched(old []string, lists ...[]string) []string {
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

// clear empties the destination, keeping the state directory.
func (c *copier) clear() error {
	d, err := openDir(c.dstRoot, ".", nil)
	if err != nil {
		return fmt.Errorf("emptying the volume: %w", err)
	}
	defer d.Close()
	names, err := readNames(d)
	if err != nil {
		return fmt.Errorf("emptying the volume: %w", err)
	}
	for _, n := range names {
		if n == StateDir {
			continue
		}
		if err := removeAt(c.dstRoot, n); err != nil {
			return fmt.Errorf("emptying the volume: removing %q: %w", n, err)
		}
	}
	return nil
}

// scanSize sums the bytes the source's regular files allocate (sparse holes
// excluded) plus a block per other entry, staying on the root's file system
// and out of the pruned directories (rel is fd's path in the tree).
func scanSize(fd int, rel string, rootDev uint64, prune map[string]bool) (int64, int64, error) {
	d, err := openDir(fd, ".", nil)
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	names, err := readNames(d)
	if err != nil {
		return 0, 0, err
	}
	var bytes, files int64
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		files++
		bytes += st.Blocks * 512
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && uint64(st.Dev) == rootDev && !prune[joinRel(rel, n)] {
			sub, err := openDir(int(d.Fd()), n, &st)
			if err != nil {
				continue
			}
			b, f, _ := scanSize(int(sub.Fd()), joinRel(rel, n), rootDev, prune)
			sub.Close()
			bytes += b
			files += f
		}
	}
	return bytes, files, nil
}

func (c *copier) warn(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Warnings = append(c.res.Warnings, fmt.Sprintf(format, args...))
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
	p := c.total
	p.Pass = c.res.Pass
	p.Bytes, p.Files = c.bytes.Load(), c.files.Load()
	c.o.Progress(p)
}

func (c *copier) owner(e *entry) (int, int) {
	if c.o.KeepOwner {
		return int(e.UID), int(e.GID)
	}
	return c.o.UID, c.o.GID
}

// changed reports whether a source entry differs from the previous pass's.
func changed(old, e *entry) bool {
	return old.Type != e.Type || old.Size != e.Size || old.Mtime != e.Mtime ||
		old.Ctime != e.Ctime || old.Ino != e.Ino || old.Dev != e.Dev
}

// copyDir copies the children of the source directory src (the tree's rel)
// into dst. It returns whether anything below was written.
func (c *copier) copyDir(src, dst *os.File, rel string, dirEntry *entry) (bool, error) {
	if err := c.ctx.Err(); err != nil {
		return false, err
	}
	names, err := readNames(src)
	if err != nil {
		return false, fmt.Errorf("listing %q: %w", rel, err)
	}
	srcfd, dstfd := int(src.Fd()), int(dst.Fd())
	touched := false
	if c.old != nil {
		present := map[string]bool{}
		for _, n := range names {
			present[n] = true
		}
		for _, n := range c.oldKids[rel] {
			if !present[n] {
				if err := c.remove(dstfd, rel, n); err != nil {
					return false, err
				}
				touched = true
			}
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait() // the jobs use this directory's descriptors
	for _, name := range names {
		if rel == "." && name == StateDir {
			return false, fmt.Errorf("the source holds %q, the name moltctl keeps its copy state under", name)
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

func (c *copier) remove(dstfd int, rel, name string) error {
	p := joinRel(rel, name)
	if err := removeAt(dstfd, name); err != nil {
		return fmt.Errorf("removing %q from the volume: %w", p, err)
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
func (c *copier) record(p string, e, old *entry) {
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
	p := joinRel(rel, name)
	var st unix.Stat_t
	if err := unix.Fstatat(srcfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if isNotExist(err) {
			c.warn("%s: vanished during the copy", p)
			if c.old != nil && c.old[p] != nil {
				return true, c.remove(dstfd, rel, name)
			}
			return false, nil
		}
		return false, fmt.Errorf("reading %q: %w", p, err)
	}
	e := entryOf(&st)
	var old *entry
	if c.old != nil {
		old = c.old[p]
	}
	if e.Type == unix.S_IFDIR {
		if c.mounts.At(srcfd, name, &st) {
			c.warn("%s: another mount, not copied", p)
			if old != nil {
				return true, c.remove(dstfd, rel, name)
			}
			return false, nil
		}
		return c.copyDirEntry(srcfd, dstfd, rel, name, &st, e, old)
	}
	if old != nil && !changed(old, e) {
		c.mu.Lock()
		c.man[p] = old
		c.mu.Unlock()
		if e.Type == unix.S_IFREG && e.Nlink > 1 {
			if _, ok := c.links[devIno{e.Dev, e.Ino}]; !ok {
				c.links[devIno{e.Dev, e.Ino}] = p
			}
		}
		return false, nil
	}
	if c.old != nil {
		// new, changed or of another type: whatever the volume holds there goes
		if err := removeAt(dstfd, name); err != nil {
			return false, fmt.Errorf("replacing %q in the volume: %w", p, err)
		}
	}
	if c.jobs != nil && e.Type == unix.S_IFREG && e.Nlink <= 1 {
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
		return true, nil
	}
	done, err := c.create(srcfd, dstfd, p, name, e)
	if err != nil || !done {
		return false, err
	}
	c.record(p, e, old)
	return true, nil
}

func (c *copier) copyDirEntry(srcfd, dstfd int, rel, name string, st *unix.Stat_t, e, old *entry) (bool, error) {
	p := joinRel(rel, name)
	sd, err := openDir(srcfd, name, st)
	if err != nil {
		if isNotExist(err) {
			c.warn("%s: vanished during the copy", p)
			return false, nil
		}
		return false, fmt.Errorf("opening %q: %w", p, err)
	}
	defer sd.Close()
	if old != nil && old.Type != unix.S_IFDIR {
		if err := removeAt(dstfd, name); err != nil {
			return false, fmt.Errorf("replacing %q in the volume: %w", p, err)
		}
	}
	isNew := old == nil || old.Type != unix.S_IFDIR
	if err := unix.Mkdirat(dstfd, name, 0o700); err != nil && !(err == unix.EEXIST && !isNew) {
		if err == unix.EEXIST && c.old != nil { // left over from an interrupted delta
			if err = removeAt(dstfd, name); err == nil {
				err = unix.Mkdirat(dstfd, name, 0o700)
			}
		}
		if err != nil {
			return false, c.writeErr("creating directory", p, err)
		}
	}
	dd, err := openDir(dstfd, name, nil)
	if err != nil {
		if isNotExist(err) || err == unix.ELOOP {
			// the volume has something else there (an interrupted delta): replace it
			if err = removeAt(dstfd, name); err == nil {
				if err = unix.Mkdirat(dstfd, name, 0o700); err == nil {
					dd, err = openDir(dstfd, name, nil)
				}
			}
		}
		if err != nil {
			return false, c.writeErr("opening directory", p, err)
		}
	}
	defer dd.Close()
	c.mu.Lock()
	c.man[p] = e
	c.mu.Unlock()
	touched := false
	if !c.prune[p] { // an excluded directory stays empty: the mount point of another volume
		if touched, err = c.copyDir(sd, dd, p, e); err != nil {
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
		if err := c.setMeta(int(dd.Fd()), -1, "", e, int(sd.Fd()), 1<<31); err != nil {
			return false, c.writeErr("setting owner and mode of", p, err)
		}
	}
	return touched, nil
}

// create makes the entry p (name under dstfd) like the source entry e.
func (c *copier) create(srcfd, dstfd int, p, name string, e *entry) (bool, error) {
	uid, gid := c.owner(e)
	switch e.Type {
	case unix.S_IFREG:
		return c.copyFile(srcfd, dstfd, p, name, e, c.buf)
	case unix.S_IFLNK:
		target, err := readlinkAt(srcfd, name)
		if err != nil {
			if isNotExist(err) || err == unix.EINVAL {
				c.warn("%s: vanished during the copy", p)
				return false, nil
			}
			return false, fmt.Errorf("reading symlink %q: %w", p, err)
		}
		e.Link = target
		if err := unix.Symlinkat(target, dstfd, name); err != nil {
			return false, c.writeErr("creating symlink", p, err)
		}
		if err := unix.Fchownat(dstfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return false, c.writeErr("setting the owner of", p, err)
		}
		if err := setTimes(dstfd, name, e.Mtime); err != nil {
			return false, c.writeErr("setting the mtime of", p, err)
		}
		return true, nil
	case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
		if err := unix.Mknodat(dstfd, name, e.Type|0o600, int(e.Rdev)); err != nil {
			if e.Type != unix.S_IFIFO && (err == unix.EPERM || err == unix.EACCES) {
				c.warn("%s: %s not created: %v", p, typeName(e.Type), err)
				return false, nil
			}
			return false, c.writeErr("creating "+typeName(e.Type), p, err)
		}
		if err := unix.Fchownat(dstfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return false, c.writeErr("setting the owner of", p, err)
		}
		if err := unix.Fchmodat(dstfd, name, e.Mode, 0); err != nil {
			return false, c.writeErr("setting the mode of", p, err)
		}
		if err := setTimes(dstfd, name, e.Mtime); err != nil {
			return false, c.writeErr("setting the mtime of", p, err)
		}
		return true, nil
	default:
		c.warn("%s: %s not copied", p, typeName(e.Type))
		return false, nil
	}
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func (c *copier) writeErr(what, p string, err error) error {
	if outOfInodes(c.dstRoot, err) {
		return fmt.Errorf("%w: %s %q", ErrNoInodes, what, p)
	}
	if err == unix.ENOSPC || err == unix.EDQUOT {
		return fmt.Errorf("%w: %s %q", ErrNoSpace, what, p)
	}
	return fmt.Errorf("%s %q in the volume: %w", what, p, err)
}

func (c *copier) copyFile(srcfd, dstfd int, p, name string, e *entry, buf []byte) (bool, error) {
	key := devIno{e.Dev, e.Ino}
	if e.Nlink > 1 {
		if first, ok := c.links[key]; ok {
			dir, err := openBeneath(c.dstRoot, parentRel(first))
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
			if err != unix.ENOENT {
				return false, c.writeErr("linking", p, err)
			}
			// the first link vanished: copy this one on its own
		}
	}
	sfd, err := openFileNoFollow(srcfd, name)
	if err != nil {
		if isNotExist(err) || err == unix.ELOOP {
			c.warn("%s: vanished during the copy", p)
			return false, nil
		}
		return false, fmt.Errorf("opening %q: %w", p, err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return false, fmt.Errorf("reading %q: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		c.warn("%s: replaced during the copy", p)
		return false, nil
	}
	*e = *entryOf(&st) // what is copied is what the next pass compares with
	// created with its final permission bits: no chmod needed afterwards unless
	// setuid/setgid/sticky (cleared by chown), xattrs or the umask say so
	dfd, err := unix.Openat(dstfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, e.Mode&0o777)
	if err != nil {
		return false, c.writeErr("creating", p, err)
	}
	defer unix.Close(dfd)
	if err := c.copyData(sfd, dfd, e.Size, e.Blocks*512 >= e.Size, buf); err != nil {
		return false, c.writeErr("copying", p, err)
	}
	if err := c.setMeta(dfd, dstfd, name, e, sfd, e.Mode&0o777&^c.umask); err != nil {
		return false, c.writeErr("setting owner and mode of", p, err)
	}
	if e.Nlink > 1 {
		c.links[key] = p
	}
	return true, nil
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
		if err == unix.ENXIO {
			break // only a hole is left
		}
		if err != nil { // no SEEK_DATA on this file system: all data
			return c.copyRange(src, dst, off, size-off, buf)
		}
		hole, err := unix.Seek(src, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if hole > size {
			hole = size
		}
		if err := c.copyRange(src, dst, data, hole-data, buf); err != nil {
			return err
		}
		off = hole
	}
	if err := unix.Ftruncate(dst, size); err != nil {
		return err
	}
	return nil
}

func (c *copier) copyRange(src, dst int, off, n int64, buf []byte) error {
	for n > 0 {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		chunk := n
		if chunk > 1<<30 {
			chunk = 1 << 30
		}
		var w int
		var err error
		if !c.cfrBroken.Load() {
			roff, woff := off, off
			w, err = unix.CopyFileRange(src, &roff, dst, &woff, int(chunk), 0)
			if err == unix.EXDEV || err == unix.ENOSYS || err == unix.EINVAL || err == unix.EOPNOTSUPP || err == unix.EPERM {
				c.cfrBroken.Store(true)
				continue
			}
		} else {
			if chunk > int64(len(buf)) {
				chunk = int64(len(buf))
			}
			var r int
			r, err = unix.Pread(src, buf[:chunk], off)
			if err == nil && r > 0 {
				w, err = writeFull(dst, buf[:r], off)
			}
		}
		if err == unix.EINTR {
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

func writeFull(fd int, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Pwrite(fd, b[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// setMeta gives an open destination file or directory (fd) its owner,
// xattrs, mode and mtime, in that order: chown clears setuid/setgid and file
// capabilities, so the mode and security.capability come after it. The xattrs
// are read from the open source sfd. For a file, dirfd/name set the times.
// created is the mode the entry was created with.
func (c *copier) setMeta(fd, dirfd int, name string, e *entry, sfd int, created uint32) error {
	uid, gid := c.owner(e)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	xs, err := fdXattrs(sfd)
	if err != nil {
		return fmt.Errorf("reading xattrs: %w", err)
	}
	// ACLs before the mode (chmod rewrites the ACL mask from the mode's group bits, as the source has it)
	for _, k := range sortedKeys(xs) {
		if err := unix.Fsetxattr(fd, k, xs[k], 0); err != nil {
			if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
				c.warn("%s: xattr %s not supported by the volume's file system", name, k)
				continue
			}
			return fmt.Errorf("setting xattr %s: %w", k, err)
		}
	}
	if len(xs) > 0 || e.Mode != created {
		if err := unix.Fchmod(fd, e.Mode); err != nil {
			return err
		}
	}
	if dirfd >= 0 {
		return setTimes(dirfd, name, e.Mtime)
	}
	return setFdTimes(fd, e.Mtime)
}
