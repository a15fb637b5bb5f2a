package safefs

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// ManifestOptions tune Manifest.
type ManifestOptions struct {
	// Skip: top-level names left out (a copy's state directory).
	Skip []string
	// Prune: directories (relative to the root) recorded themselves but not
	// walked into (the excluded subtrees of a copy).
	Prune []string
	// Hash says which regular files (by relative path) get a content hash;
	// nil hashes none.
	Hash func(rel string) bool
}

// Manifest walks the tree at root by file descriptor (never following a
// symlink, never entering another mount) and records every entry, the root
// as ".", with its xattrs (ACLs and file capabilities included); regular
// files for which o.Hash returns true get a content hash. It returns the
// mounts met (relative paths), which are not recorded.
func Manifest(root string, o ManifestOptions) (map[string]*Entry, []string, error) {
	d, err := OpenRoot(root)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return nil, nil, err
	}
	m := map[string]*Entry{}
	e := EntryOf(&st)
	if e.Xattrs, err = fdXattrs(int(d.Fd())); err != nil {
		return nil, nil, fmt.Errorf("reading the xattrs of %q: %w", root, err)
	}
	m["."] = e
	w := &manifestWalk{mounts: NewMountRoots(uint64(st.Dev)), skip: set(o.Skip), prune: set(o.Prune), hash: o.Hash, m: m}
	err = w.dir(int(d.Fd()), ".")
	return m, w.found, err
}

func set(names []string) map[string]bool {
	if len(names) == 0 {
		return nil
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

type manifestWalk struct {
	mounts      *MountRoots
	skip, prune map[string]bool
	hash        func(string) bool
	m           map[string]*Entry
	found       []string
}

func (w *manifestWalk) dir(dirfd int, rel string) error {
	names, err := listAt(dirfd)
	if err != nil {
		return fmt.Errorf("listing %q: %w", rel, err)
	}
	for _, name := range names {
		p := JoinRel(rel, name)
		if rel == "." && w.skip[name] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if IsNotExist(err) {
				continue
			}
			return fmt.Errorf("reading %q: %w", p, err)
		}
		e := EntryOf(&st)
		switch e.Type {
		case unix.S_IFDIR:
			if w.mounts.At(dirfd, name, &st) {
				w.found = append(w.found, p)
				continue
			}
			sd, err := OpenDir(dirfd, name, &st)
			if err != nil {
				if IsNotExist(err) {
					continue
				}
				return fmt.Errorf("opening %q: %w", p, err)
			}
			if e.Xattrs, err = fdXattrs(int(sd.Fd())); err != nil {
				sd.Close()
				return fmt.Errorf("reading the xattrs of %q: %w", p, err)
			}
			w.m[p] = e
			if w.prune[p] {
				sd.Close()
				continue
			}
			err = w.dir(int(sd.Fd()), p)
			sd.Close()
			if err != nil {
				return err
			}
			continue
		case unix.S_IFLNK:
			if e.Link, err = readlinkAt(dirfd, name); err != nil {
				if IsNotExist(err) || errors.Is(err, unix.EINVAL) {
					continue
				}
				return fmt.Errorf("reading symlink %q: %w", p, err)
			}
		case unix.S_IFREG, unix.S_IFIFO:
			fd, err := openFileNoFollow(dirfd, name)
			if err != nil {
				if IsNotExist(err) || errors.Is(err, unix.ELOOP) {
					continue
				}
				return fmt.Errorf("opening %q: %w", p, err)
			}
			e.Xattrs, err = fdXattrs(fd)
			if err == nil && e.Type == unix.S_IFREG && w.hash != nil && w.hash(p) {
				e.Hash, err = hashFd(fd)
			}
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("reading %q: %w", p, err)
			}
		}
		w.m[p] = e
	}
	return nil
}

// CompareOptions say what the destination should look like.
type CompareOptions struct {
	// UID and GID are every entry's expected owner, unless KeepOwner (the
	// source's numeric ids) or IgnoreOwner (owners not compared: a copy made
	// without CAP_CHOWN).
	UID, GID    int
	KeepOwner   bool
	IgnoreOwner bool
	// Dst names the destination in the differences ("the volume"); default
	// "the copy".
	Dst string
}

// Compare lists how the manifest dst differs from src (sorted by path):
// type, owner, mode, size, symlink target, device numbers, mtime, xattrs,
// content hashes where both have one, hardlink grouping, and entries only
// in dst; and the warnings (device nodes missing from dst: a copy without
// CAP_MKNOD). Sockets are not expected in dst.
func Compare(src, dst map[string]*Entry, o CompareOptions) (diffs, warnings []string) {
	c := comparison{o: o, in: o.Dst, groups: map[devIno][]string{}}
	if c.in == "" {
		c.in = "the copy"
	}
	paths := make([]string, 0, len(src))
	for p := range src {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if e := src[p]; e.Type == unix.S_IFREG && e.Nlink > 1 {
			k := devIno{e.Dev, e.Ino}
			c.groups[k] = append(c.groups[k], p)
		}
	}
	for _, p := range paths {
		c.entry(p, src[p], dst[p])
	}
	c.hardlinks(dst)
	var extra []string
	for p := range dst {
		if src[p] == nil {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		c.diff("%s: in %s, not in the source", p, c.in)
	}
	sort.Strings(c.diffs)
	return c.diffs, c.warnings
}

type comparison struct {
	o               CompareOptions
	in              string              // names the destination
	groups          map[devIno][]string // the source's hardlink groups
	diffs, warnings []string
}

func (c *comparison) diff(format string, args ...any) {
	c.diffs = append(c.diffs, fmt.Sprintf(format, args...))
}

// entry compares the source entry s at p with the destination's d.
func (c *comparison) entry(p string, s, d *Entry) {
	switch {
	case d == nil && (s.Type == unix.S_IFCHR || s.Type == unix.S_IFBLK):
		c.warnings = append(c.warnings, fmt.Sprintf("%s: %s missing from %s", p, TypeName(s.Type), c.in))
		return
	case d == nil && s.Type == unix.S_IFSOCK:
		return
	case d == nil:
		c.diff("%s: missing from %s", p, c.in)
		return
	case s.Type != d.Type:
		c.diff("%s: is a %s, want a %s", p, TypeName(d.Type), TypeName(s.Type))
		return
	}
	uid, gid := uint32(c.o.UID), uint32(c.o.GID)
	if c.o.KeepOwner {
		uid, gid = s.UID, s.GID
	}
	if !c.o.IgnoreOwner && (d.UID != uid || d.GID != gid) {
		c.diff("%s: owner %d:%d, want %d:%d", p, d.UID, d.GID, uid, gid)
	}
	if s.Type != unix.S_IFLNK && d.Mode != s.Mode {
		c.diff("%s: mode %04o, want %04o", p, d.Mode, s.Mode)
	}
	if s.Type == unix.S_IFREG && d.Size != s.Size {
		c.diff("%s: size %d, want %d", p, d.Size, s.Size)
	}
	if s.Type == unix.S_IFLNK && d.Link != s.Link {
		c.diff("%s: symlink to %q, want %q", p, d.Link, s.Link)
	}
	if (s.Type == unix.S_IFCHR || s.Type == unix.S_IFBLK) && d.Rdev != s.Rdev {
		c.diff("%s: device %#x, want %#x", p, d.Rdev, s.Rdev)
	}
	if d.Mtime != s.Mtime {
		c.diff("%s: mtime %d, want %d", p, d.Mtime, s.Mtime)
	}
	if x := xattrDiff(s.Xattrs, d.Xattrs); x != "" {
		c.diff("%s: %s", p, x)
	}
	if s.Hash != "" && d.Hash != "" && s.Hash != d.Hash {
		c.diff("%s: content differs", p)
	}
	if s.Type == unix.S_IFREG {
		want := uint64(1)
		if s.Nlink > 1 {
			want = uint64(len(c.groups[devIno{s.Dev, s.Ino}]))
		}
		if d.Nlink != want {
			c.diff("%s: %d hard links in %s, want %d", p, d.Nlink, c.in, want)
		}
	}
}

// hardlinks checks that each of the source's hardlink groups is one inode
// in dst.
func (c *comparison) hardlinks(dst map[string]*Entry) {
	for _, g := range c.groups {
		var first *Entry
		for _, p := range g {
			d := dst[p]
			if d == nil {
				continue
			}
			if first == nil {
				first = d
			} else if d.Ino != first.Ino || d.Dev != first.Dev {
				c.diff("%s: not hard-linked with %s", p, g[0])
			}
		}
	}
}

func xattrDiff(s, d map[string][]byte) string {
	for _, k := range sortedKeys(s) {
		v, ok := d[k]
		if !ok {
			return "xattr " + k + " missing"
		}
		if !bytes.Equal(v, s[k]) {
			return "xattr " + k + " differs"
		}
	}
	for _, k := range sortedKeys(d) {
		if _, ok := s[k]; !ok {
			return "extra xattr " + k
		}
	}
	return ""
}
