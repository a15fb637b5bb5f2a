package volumes

import (
	"bytes"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// manifest walks the tree at root by file descriptor (never following a
// symlink, never entering another mount) and records every entry with its
// xattrs; regular files for which hash returns true get a content hash. The
// entry skip (relative to the root) is left out. Mounts met are returned.
func manifest(root, skip string, hash func(rel string) bool) (map[string]*entry, []string, error) {
	return prunedManifest(root, skip, nil, hash)
}

// prunedManifest is manifest with the directories in prune (relative to the
// root) recorded themselves but not walked into: the excluded subtrees of a
// copy (CopyOptions.Exclude).
func prunedManifest(root, skip string, prune map[string]bool, hash func(rel string) bool) (map[string]*entry, []string, error) {
	d, err := openRoot(root)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return nil, nil, err
	}
	m := map[string]*entry{}
	e := entryOf(&st)
	if e.Xattrs, err = fdXattrs(int(d.Fd())); err != nil {
		return nil, nil, fmt.Errorf("reading xattrs of %s: %w", root, err)
	}
	m["."] = e
	var mounts []string
	err = walkManifest(int(d.Fd()), ".", safefs.NewMountRoots(uint64(st.Dev)), skip, prune, hash, m, &mounts)
	return m, mounts, err
}

func walkManifest(dirfd int, rel string, mr *safefs.MountRoots, skip string, prune map[string]bool, hash func(string) bool, m map[string]*entry, mounts *[]string) error {
	d, err := openDir(dirfd, ".", nil)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := readNames(d)
	if err != nil {
		return fmt.Errorf("listing %q: %w", rel, err)
	}
	for _, name := range names {
		p := joinRel(rel, name)
		if p == skip {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if isNotExist(err) {
				continue
			}
			return fmt.Errorf("reading %q: %w", p, err)
		}
		e := entryOf(&st)
		switch e.Type {
		case unix.S_IFDIR:
			if mr.At(dirfd, name, &st) {
				*mounts = append(*mounts, p)
				continue
			}
			sd, err := openDir(dirfd, name, &st)
			if err != nil {
				if isNotExist(err) {
					continue
				}
				return fmt.Errorf("opening %q: %w", p, err)
			}
			if e.Xattrs, err = fdXattrs(int(sd.Fd())); err != nil {
				sd.Close()
				return fmt.Errorf("reading xattrs of %q: %w", p, err)
			}
			m[p] = e
			if prune[p] {
				sd.Close()
				continue
			}
			err = walkManifest(int(sd.Fd()), p, mr, skip, prune, hash, m, mounts)
			sd.Close()
			if err != nil {
				return err
			}
			continue
		case unix.S_IFLNK:
			if e.Link, err = readlinkAt(dirfd, name); err != nil {
				if isNotExist(err) || err == unix.EINVAL {
					continue
				}
				return fmt.Errorf("reading symlink %q: %w", p, err)
			}
		case unix.S_IFREG, unix.S_IFIFO:
			fd, err := openFileNoFollow(dirfd, name)
			if err != nil {
				if isNotExist(err) || err == unix.ELOOP {
					continue
				}
				return fmt.Errorf("opening %q: %w", p, err)
			}
			e.Xattrs, err = fdXattrs(fd)
			if err == nil && e.Type == unix.S_IFREG && hash != nil && hash(p) {
				e.Hash, err = hashFd(fd)
			}
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("reading %q: %w", p, err)
			}
		}
		m[p] = e
	}
	return nil
}

// compareOptions say what the destination should look like.
type compareOptions struct {
	UID, GID  int
	KeepOwner bool
	// Exclude: directories whose content is not compared (CopyOptions.Exclude).
	Exclude []string
}

// pruneSet is the set of the excluded directories, nil for none.
func pruneSet(exclude []string) map[string]bool {
	if len(exclude) == 0 {
		return nil
	}
	m := make(map[string]bool, len(exclude))
	for _, p := range exclude {
		m[p] = true
	}
	return m
}

// compare lists how dst differs from src (sorted by path) and the warnings
// (device nodes that could not be created).
func compare(src, dst map[string]*entry, o compareOptions) (diffs, warnings []string) {
	paths := make([]string, 0, len(src))
	for p := range src {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	srcGroups := map[devIno][]string{}
	for _, p := range paths {
		if e := src[p]; e.Type == unix.S_IFREG && e.Nlink > 1 {
			k := devIno{e.Dev, e.Ino}
			srcGroups[k] = append(srcGroups[k], p)
		}
	}
	for _, p := range paths {
		s, d := src[p], dst[p]
		if d == nil {
			if s.Type == unix.S_IFCHR || s.Type == unix.S_IFBLK {
				warnings = append(warnings, fmt.Sprintf("%s: %s missing from the volume", p, typeName(s.Type)))
				continue
			}
			if s.Type == unix.S_IFSOCK {
				continue
			}
			diffs = append(diffs, fmt.Sprintf("%s: missing from the volume", p))
			continue
		}
		if s.Type != d.Type {
			diffs = append(diffs, fmt.Sprintf("%s: is a %s, want a %s", p, typeName(d.Type), typeName(s.Type)))
			continue
		}
		uid, gid := uint32(o.UID), uint32(o.GID)
		if o.KeepOwner {
			uid, gid = s.UID, s.GID
		}
		if d.UID != uid || d.GID != gid {
			diffs = append(diffs, fmt.Sprintf("%s: owner %d:%d, want %d:%d", p, d.UID, d.GID, uid, gid))
		}
		if s.Type != unix.S_IFLNK && d.Mode != s.Mode {
			diffs = append(diffs, fmt.Sprintf("%s: mode %04o, want %04o", p, d.Mode, s.Mode))
		}
		if s.Type == unix.S_IFREG && d.Size != s.Size {
			diffs = append(diffs, fmt.Sprintf("%s: size %d, want %d", p, d.Size, s.Size))
		}
		if s.Type == unix.S_IFLNK && d.Link != s.Link {
			diffs = append(diffs, fmt.Sprintf("%s: symlink to %q, want %q", p, d.Link, s.Link))
		}
		if (s.Type == unix.S_IFCHR || s.Type == unix.S_IFBLK) && d.Rdev != s.Rdev {
			diffs = append(diffs, fmt.Sprintf("%s: device %#x, want %#x", p, d.Rdev, s.Rdev))
		}
		if d.Mtime != s.Mtime {
			diffs = append(diffs, fmt.Sprintf("%s: mtime %d, want %d", p, d.Mtime, s.Mtime))
		}
		if x := xattrDiff(s.Xattrs, d.Xattrs); x != "" {
			diffs = append(diffs, fmt.Sprintf("%s: %s", p, x))
		}
		if s.Hash != "" && d.Hash != "" && s.Hash != d.Hash {
			diffs = append(diffs, fmt.Sprintf("%s: content differs", p))
		}
		if s.Type == unix.S_IFREG {
			want := uint64(1)
			if s.Nlink > 1 {
				want = uint64(len(srcGroups[devIno{s.Dev, s.Ino}]))
			}
			if d.Nlink != want {
				diffs = append(diffs, fmt.Sprintf("%s: %d hard links in the volume, want %d", p, d.Nlink, want))
			}
		}
	}
	for _, g := range srcGroups {
		var first *entry
		for _, p := range g {
			d := dst[p]
			if d == nil {
				continue
			}
			if first == nil {
				first = d
			} else if d.Ino != first.Ino || d.Dev != first.Dev {
				diffs = append(diffs, fmt.Sprintf("%s: not hard-linked with %s", p, g[0]))
			}
		}
	}
	var extra []string
	for p := range dst {
		if src[p] == nil {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		diffs = append(diffs, fmt.Sprintf("%s: in the volume, not in the source", p))
	}
	sort.Strings(diffs)
	return diffs, warnings
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
