package helperfs

// The helper's side of volumes.InspectSources: what a migration plan needs
// to know about its bind sources, learned where the engine runs. Each source
// is bound read-only at /src/N; the helper's own mount table says where each
// is on the engine's host (the file system's device and the path inside it),
// so nesting is decided by the kernel that made the binds, symlinks and bind
// mounts of the host included.

import (
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// SourcesRoot is where the helper container binds the sources: /src/0, /src/1, ...
const SourcesRoot = "/src"

// Kinds of a bind source (SourceInfo.Kind).
const (
	KindMissing = "missing" // nothing at the path, a dangling symlink, or nothing the helper may stat
	KindDir     = "dir"
	KindFile    = "file"
	KindSocket  = "socket"
	KindDevice  = "device"
	KindOther   = "other" // a fifo
)

// SourceRequest is one path to look at.
type SourceRequest struct {
	// Path is absolute and clean, as the engine's host names it.
	Path string `json:"path"`
	// Measure asks for the size of a directory (SourceInfo.Bytes, Files).
	Measure bool `json:"measure,omitempty"`
	// Bind marks a bind source: measuring a directory leaves out the Bind
	// paths below it (each is a volume of its own, or keeps the outer one a
	// bind). Secret files and other paths looked at only for nesting are not.
	Bind bool `json:"bind,omitempty"`
	// Shallow binds the path without what is mounted below it (a host tree
	// such as /, of which only the kind is needed).
	Shallow bool `json:"shallow,omitempty"`
}

// SourceArg is one source of the sources operation.
type SourceArg struct {
	SourceRequest
	// At is where the helper sees it ("" when it does not exist).
	At string `json:"at,omitempty"`
}

// SourceInfo is what the engine's host has at one path.
type SourceInfo struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
	// Empty: a directory without entries.
	Empty bool `json:"empty,omitempty"`
	// Owner is the numeric uid:gid of the path (symlinks followed).
	Owner string `json:"owner,omitempty"`
	// Measured: Bytes and Files are the size of a directory asked to Measure
	// (safefs.Measure), without the other Bind paths below it and without
	// what is mounted below it.
	Measured bool  `json:"measured,omitempty"`
	Bytes    int64 `json:"bytes,omitempty"`
	Files    int64 `json:"files,omitempty"`
	// Mounts are the mount points below the path (relative, slash-separated):
	// neither measured nor copied.
	Mounts []string `json:"mounts,omitempty"`
	// Under maps the other requested paths that are this directory or lie
	// below it, as the engine's host resolves them, to their path relative
	// to it: "." for the same directory.
	Under map[string]string `json:"under,omitempty"`
}

// place is where a path lies as its host resolves it: the file system
// (device) and the path from that file system's root, or (locally) the
// resolved absolute path with an empty device.
type place struct {
	dev, root string
}

// inside returns the path of q relative to p when q is p or below it.
func (p place) inside(q place) (string, bool) {
	if p.dev != q.dev {
		return "", false
	}
	if q.root == p.root {
		return ".", true
	}
	if rest, ok := strings.CutPrefix(q.root, strings.TrimSuffix(p.root, "/")+"/"); ok {
		return rest, true
	}
	return "", false
}

// Subtree is what a source shows: its own place and, for each mount below
// it, the mount point (relative) and the mount's place.
type Subtree struct {
	self   place
	mounts []submount
}

type submount struct {
	rel string
	at  place
}

// holds returns the path of q relative to the subtree's root when q is shown
// inside it: below a mount below it (the deepest), else below its own place.
func (t Subtree) holds(q place) (string, bool) {
	best, depth := "", -1
	if rel, ok := t.self.inside(q); ok {
		best, depth = rel, 0
	}
	for _, m := range t.mounts {
		rel, ok := m.at.inside(q)
		if d := strings.Count(m.rel, "/") + 1; ok && d > depth {
			best, depth = path.Join(m.rel, rel), d
		}
	}
	return best, depth >= 0
}

// Places finds the subtree of each existing source, by At.
type Places func(args []SourceArg) (map[string]Subtree, error)

// HelperPlaces reads the helper's mount table: each source is a mount at its
// At, whose device and root (the path inside its file system) say where it is
// on the engine's host, symlinks and bind mounts resolved by the kernel that
// mounted it; the mounts below At are what is mounted below the source.
func HelperPlaces(args []SourceArg) (map[string]Subtree, error) {
	mounts, err := safefs.Mounts()
	if err != nil {
		return nil, err
	}
	out := map[string]Subtree{}
	for _, a := range args {
		if a.At == "" {
			continue
		}
		var t Subtree
		found := false
		for _, m := range mounts {
			switch rel, ok := strings.CutPrefix(m.Point, a.At+"/"); {
			case m.Point == a.At:
				t.self, found = place{m.Dev, m.Root}, true // the last one mounted there wins
			case ok:
				t.mounts = append(t.mounts, submount{rel, place{m.Dev, m.Root}})
			}
		}
		if !found {
			return nil, fmt.Errorf("%q is not a mount in the helper", a.At)
		}
		out[a.At] = t
	}
	return out, nil
}

// LocalPlaces resolves the symlinks of each source on this host; the mount
// points below it come from this host's mount table (reported only: a bind
// mount of the same file system is not followed, unlike HelperPlaces).
func LocalPlaces(args []SourceArg) (map[string]Subtree, error) {
	mounts, _ := safefs.Mounts() // mount points are only reported
	out := map[string]Subtree{}
	for _, a := range args {
		if a.At == "" {
			continue
		}
		real, err := filepath.EvalSymlinks(a.At)
		if err != nil {
			real = a.At
		}
		t := Subtree{self: place{root: real}}
		for _, m := range mounts {
			if rel, ok := strings.CutPrefix(m.Point, strings.TrimSuffix(real, "/")+"/"); ok {
				t.mounts = append(t.mounts, submount{rel: rel, at: place{dev: "mount " + m.Dev, root: m.Root}})
			}
		}
		out[a.At] = t
	}
	return out, nil
}

// Sources answers the sources operation (and volumes.InspectSourcesLocal):
// kind, emptiness, owner, the nesting of the sources found by places, and
// the size of those to measure. A source it can't stat is KindMissing.
func Sources(args []SourceArg, places Places) ([]SourceInfo, error) {
	out := make([]SourceInfo, len(args))
	for i, a := range args {
		s := &out[i]
		s.Path, s.Kind = a.Path, KindMissing
		if a.At == "" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(a.At, &st); err != nil {
			args[i].At = "" // as good as missing: nothing a volume can be made of
			continue
		}
		s.Kind = kindOf(st.Mode)
		s.Owner = fmt.Sprintf("%d:%d", st.Uid, st.Gid)
		if s.Kind == KindDir {
			empty, err := isEmptyDir(a.At)
			if err != nil {
				return nil, fmt.Errorf("reading %q: %w", a.Path, err)
			}
			s.Empty = empty
		}
	}
	trees, err := places(args)
	if err != nil {
		return nil, fmt.Errorf("finding the mounts of the sources: %w", err)
	}
	for i, a := range args {
		if a.At == "" {
			continue
		}
		s, t := &out[i], trees[a.At]
		for _, m := range t.mounts {
			s.Mounts = append(s.Mounts, m.rel)
		}
		for j, b := range args {
			if i == j || b.At == "" {
				continue
			}
			if rel, ok := t.holds(trees[b.At].self); ok {
				if s.Under == nil {
					s.Under = map[string]string{}
				}
				s.Under[b.Path] = rel
			}
		}
	}
	for i, a := range args {
		if s := &out[i]; a.Measure && s.Kind == KindDir {
			if err := measureSource(s, a, args); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// measureSource measures s without the other Bind sources below it.
func measureSource(s *SourceInfo, a SourceArg, args []SourceArg) error {
	var prune []string
	for _, b := range args {
		if rel := s.Under[b.Path]; b.Path != a.Path && b.Bind && rel != "" && rel != "." {
			prune = append(prune, rel)
		}
	}
	bytes, files, err := safefs.Measure(a.At, prune)
	if err != nil {
		return fmt.Errorf("measuring %q: %w", a.Path, err)
	}
	s.Measured, s.Bytes, s.Files = true, bytes, files
	return nil
}

func isEmptyDir(dir string) (bool, error) {
	d, err := safefs.OpenRoot(dir)
	if err != nil {
		return false, err
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return len(names) == 0, nil
}

func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return KindDir
	case unix.S_IFREG:
		return KindFile
	case unix.S_IFSOCK:
		return KindSocket
	case unix.S_IFCHR, unix.S_IFBLK:
		return KindDevice
	}
	return KindOther
}
