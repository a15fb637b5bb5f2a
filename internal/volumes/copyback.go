package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/statefile"
)

// ErrRefused: CopyBack refused before changing anything (the volume does not
// exist, the target is not a directory or is a mount point, its parent is not writable or can't exchange
// directories atomically, a name it needs is taken, a running container uses
// the volume or the target, the volume holds unfinished copy state).
var ErrRefused = errors.New("copy-back refused, nothing changed")

// CopyBackOptions describe copying a volume back into a bind directory.
type CopyBackOptions struct {
	// Volume is the named volume to copy from; it is mounted read-only. Required.
	Volume string
	// Target is the bind directory to fill, an absolute path as the engine's host
	// sees it; required. It may be missing (it is then created); when it exists it
	// must be a directory and not a mount point, and its parent must be writable.
	Target string
	// ID names this copy-back (a migration's ID): letters, digits, '.', '_', '-',
	// at most 64. It is part of the staging directory's name
	// (<parent>/.<name>.moltctl-copyback-<ID>) and of the name the target's
	// previous content is kept under (<parent>/<name>.moltctl-before-copyback-<ID>),
	// and lets a second call with the same ID continue an interrupted one. Required.
	ID string
	// Progress, when set, is called with the copy's running totals.
	Progress func(Progress)
	Helper   HelperOptions

	crashAfter string // tests: the helper exits abruptly after this step
}

// CopyBackResult says what CopyBack did.
type CopyBackResult struct {
	// Target is CopyBackOptions.Target.
	Target string `json:"target"`
	// Kept is where the target's previous content is now (a directory beside it,
	// never deleted by moltctl); empty when the target did not exist.
	Kept string `json:"kept,omitempty"`
	// Copy and Verify are the copy into the staging directory and its
	// verification against the volume; nil when an interrupted call was continued
	// after its exchange, or found done.
	Copy   *CopyResult   `json:"copy,omitempty"`
	Verify *VerifyReport `json:"verify,omitempty"`
	// Resumed: a call with this ID had already exchanged the directories; this
	// one finished it (or found it done) without copying again.
	Resumed  bool     `json:"resumed,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

var copyBackID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func copyBackStaging(name, id string) string { return "." + name + ".moltctl-copyback-" + id }
func copyBackKept(name, id string) string    { return name + ".moltctl-before-copyback-" + id }

// copyBackMarkerFile, in the staging directory's StateDir, says that the
// directory is this copy-back's verified copy. After the exchange it is in the
// target: that is how a later call knows the exchange happened.
const copyBackMarkerFile = "copyback.json"

type copyBackMarker struct {
	ID string `json:"id"`
	// Exchange: the target existed and was exchanged with the copy (its old
	// content then sits under the staging name until renamed to the kept name).
	Exchange bool `json:"exchange"`
}

// CopyBack puts the content of Volume into the directory Target, keeping
// Target's previous content beside it. In a helper container (the volume
// read-only, Target's parent bound read-write) it copies the volume into a
// fresh staging directory beside Target, keeping every entry's numeric owner,
// mode, mtime, xattrs, hardlinks and symlinks (never followed), verifies the
// copy against the volume (every file's content hash), then swaps the staging
// directory and Target in one atomic renameat2(RENAME_EXCHANGE) and renames
// the previous content to <name>.moltctl-before-copyback-<ID> (Result.Kept).
// A missing Target is created by renaming the copy into place.
//
// Killed at any point, Target holds either its previous content or the
// verified copy, and a second call with the same ID finishes the job: a
// leftover staging directory is emptied and copied again, an exchange already
// made is found (by a marker inside the copy) and not made again, a finished
// one returns Resumed. Refusals change nothing and wrap ErrRefused; a copy that
// differs from the volume wraps ErrMismatch, a parent file system too small
// ErrNoSpace (both leave the staging directory for the next call, Target
// untouched).
func CopyBack(ctx context.Context, eng Engine, o CopyBackOptions) (*CopyBackResult, error) {
	if o.Volume == "" {
		return nil, errors.New("copying a volume back: no volume given")
	}
	what := fmt.Sprintf("copying volume %s back into %s", o.Volume, o.Target)
	if !filepath.IsAbs(o.Target) || filepath.Clean(o.Target) == "/" {
		return nil, fmt.Errorf("%s: want an absolute path with a parent directory", what)
	}
	o.Target = filepath.Clean(o.Target)
	if !copyBackID.MatchString(o.ID) {
		return nil, fmt.Errorf("%s: id %q: want 1 to 64 letters, digits, '.', '_' or '-'", what, o.ID)
	}
	parent, name := filepath.Split(o.Target)
	if len(copyBackKept(name, o.ID)) > 255 {
		return nil, fmt.Errorf("%s: the name %q is too long to keep the old content beside it: %w", what, name, ErrRefused)
	}
	// The engine would create a missing volume for the helper's mount: an empty copy.
	if _, err := eng.VolumeInspect(ctx, o.Volume, client.VolumeInspectOptions{}); isNotFound(err) {
		return nil, fmt.Errorf("%s: the volume does not exist: %w", what, ErrRefused)
	} else if err != nil {
		return nil, fmt.Errorf("%s: inspecting the volume: %w", what, err)
	}
	if err := notInUse(ctx, eng, o.Volume, o.Target); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	line, err := runHelperContainer(ctx, eng, helperRun{
		req:    helperRequest{Op: "copyback", Name: name, ID: o.ID, CrashAfter: o.crashAfter},
		volume: o.Volume, progress: o.Progress, helper: o.Helper,
		mounts: []mount.Mount{
			{Type: mount.TypeVolume, Source: o.Volume, Target: helperFrom, ReadOnly: true, VolumeOptions: &mount.VolumeOptions{NoCopy: true}},
			{Type: mount.TypeBind, Source: filepath.Clean(parent), Target: helperTo},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	res := line.CopyBack
	if res == nil {
		return nil, fmt.Errorf("%s: the helper returned no result", what)
	}
	res.Target = o.Target
	if res.Kept != "" {
		res.Kept = filepath.Join(parent, res.Kept)
	}
	return res, nil
}

// notInUse refuses when a running container (other than a helper) mounts the
// volume or binds the target: it would write beside the copy, or keep writing
// into the old content after the exchange.
func notInUse(ctx context.Context, eng Engine, volume, target string) error {
	for _, v := range []string{volume, target} {
		res, err := eng.ContainerList(ctx, client.ContainerListOptions{Filters: client.Filters{}.Add("volume", v)})
		if err != nil {
			return fmt.Errorf("listing the containers using %s: %w", v, err)
		}
		for _, c := range res.Items {
			if _, helper := c.Labels[LabelHelper]; helper {
				continue
			}
			n := c.ID
			if len(c.Names) > 0 {
				n = strings.TrimPrefix(c.Names[0], "/")
			}
			return fmt.Errorf("running container %s uses %s (stop it first): %w", n, v, ErrRefused)
		}
	}
	return nil
}

// copyBackTreeOptions drive the helper's side of CopyBack.
type copyBackTreeOptions struct {
	Src      string // the volume's root
	Parent   string // the target's parent directory
	Name, ID string
	Progress func(Progress)
	// Hook is called after each step (tests: kill the helper there).
	Hook func(step string)
}

// crashHook returns the helper's hook for CopyBackOptions.crashAfter: the
// crash point "copyback:<step>" (statefile.Arm), exit status 137.
func crashHook(step string) func(string) {
	if step == "" {
		return nil
	}
	statefile.Arm("copyback:" + step)
	return func(s string) { statefile.CrashPoint("copyback", s) }
}

func refused(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrRefused)...)
}

// lookup lstats name under dirfd; nil when it does not exist.
func lookup(dirfd int, name string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking at %q: %w", name, err)
	}
	return &st, nil
}

// copyBackTree is the helper's side of CopyBack: every step works on
// descriptors of the parent directory, never follows a symlink and never
// writes outside the staging directory; the target and the kept directory
// are only renamed.
func copyBackTree(ctx context.Context, o copyBackTreeOptions) (*CopyBackResult, error) {
	hook := func(step string) {
		if o.Hook != nil {
			o.Hook(step)
		}
	}
	staging, kept := copyBackStaging(o.Name, o.ID), copyBackKept(o.Name, o.ID)
	pd, err := openRoot(o.Parent)
	if err != nil {
		return nil, fmt.Errorf("opening the parent directory: %w", err)
	}
	defer pd.Close()
	pfd := int(pd.Fd())
	var pst unix.Stat_t
	if err := unix.Fstat(pfd, &pst); err != nil {
		return nil, fmt.Errorf("reading the parent directory: %w", err)
	}
	vd, err := openRoot(o.Src)
	if err != nil {
		return nil, fmt.Errorf("opening the volume: %w", err)
	}
	defer vd.Close()
	if st, err := lookup(int(vd.Fd()), StateDir); err != nil {
		return nil, fmt.Errorf("reading the volume: %w", err)
	} else if st != nil {
		return nil, refused("the volume holds %s, a migration's unfinished copy state (finish the volume first)", StateDir)
	}
	target, err := lookup(pfd, o.Name)
	if err != nil {
		return nil, err
	}
	if target != nil {
		if t := target.Mode & unix.S_IFMT; t != unix.S_IFDIR {
			return nil, refused("%q is a %s, not a directory", o.Name, typeName(t))
		}
		if isMountRoot(pfd, o.Name, target, uint64(pst.Dev)) {
			return nil, refused("%q is a mount point: its content can't be exchanged atomically", o.Name)
		}
	}
	stagingSt, err := lookup(pfd, staging)
	if err != nil {
		return nil, err
	}
	keptSt, err := lookup(pfd, kept)
	if err != nil {
		return nil, err
	}
	for n, st := range map[string]*unix.Stat_t{staging: stagingSt, kept: keptSt} {
		if st != nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, refused("%q exists and is a %s, not moltctl's", n, typeName(st.Mode&unix.S_IFMT))
		}
	}
	if target != nil {
		if m, err := readCopyBackMarker(pfd, o.Name); err != nil {
			return nil, err
		} else if m != nil && m.ID == o.ID {
			// The exchange was made by an earlier call: finish it.
			return finishCopyBack(pfd, o.Name, o.ID, m, stagingSt != nil, keptSt != nil, hook)
		}
	}
	if keptSt != nil {
		if stagingSt != nil {
			return nil, refused("both %q and %q exist", staging, kept)
		}
		return &CopyBackResult{Kept: kept, Resumed: true}, nil // done by an earlier call
	}

	created := stagingSt == nil
	if created {
		if err := unix.Mkdirat(pfd, staging, 0o700); err != nil {
			switch err {
			case unix.EROFS, unix.EACCES, unix.EPERM:
				return nil, refused("the parent directory is not writable (%v)", err)
			case unix.ENAMETOOLONG:
				return nil, refused("the name %q is too long for the staging directory", o.Name)
			}
			return nil, fmt.Errorf("creating the staging directory %q: %w", staging, noSpace(err))
		}
		unix.Fsync(pfd)
	}
	sd, err := openDir(pfd, staging, nil)
	if err != nil {
		return nil, fmt.Errorf("opening the staging directory %q: %w", staging, err)
	}
	defer sd.Close()
	sfd := int(sd.Fd())
	if !created {
		// A leftover of an interrupted call is empty or holds the copy state;
		// anything else is not ours and is left alone.
		names, err := readNames(sd)
		if err != nil {
			return nil, fmt.Errorf("listing the staging directory %q: %w", staging, err)
		}
		if len(names) > 0 && !strings.Contains("\x00"+strings.Join(names, "\x00")+"\x00", "\x00"+StateDir+"\x00") {
			return nil, refused("%q exists and is not a staging directory of copy-back %s", staging, o.ID)
		}
	}
	if err := probeExchange(sfd); err != nil {
		if created {
			removeAt(pfd, staging)
			unix.Fsync(pfd)
		}
		if err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP {
			return nil, refused("the parent directory's file system can't exchange two directories atomically (renameat2 RENAME_EXCHANGE: %v)", err)
		}
		return nil, fmt.Errorf("preparing the staging directory %q: %w", staging, noSpace(err))
	}
	hook("staged")

	// Copy (the full pass empties the staging directory first), verify, mark.
	progress := func(p Progress) {
		if o.Progress != nil {
			o.Progress(p)
		}
		if p.Files > 0 {
			hook("copying")
		}
	}
	cres, err := copyTree(ctx, treeOptions{Src: o.Src, Dst: procFd(sfd), UID: -1, GID: -1, KeepOwner: true, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("copying the volume into %q: %w", staging, err)
	}
	hook("copied")
	rep, err := verifyTree(o.Src, procFd(sfd), compareOptions{KeepOwner: true}, true)
	if err != nil {
		return nil, fmt.Errorf("verifying the copy in %q: %w", staging, err)
	}
	if len(rep.Differences) > 0 {
		return nil, fmt.Errorf("verifying the copy in %q: %w: %s", staging, ErrMismatch, firstDiffs(rep.Differences, 5))
	}
	hook("verified")
	if err := writeCopyBackMarker(sfd, copyBackMarker{ID: o.ID, Exchange: target != nil}); err != nil {
		return nil, err
	}
	hook("marked")

	res := &CopyBackResult{Copy: cres, Verify: rep}
	if target != nil {
		now, err := lookup(pfd, o.Name)
		if err != nil {
			return nil, err
		}
		if now == nil || now.Dev != target.Dev || now.Ino != target.Ino {
			return nil, fmt.Errorf("%q was replaced during the copy-back (nothing exchanged; run it again)", o.Name)
		}
		if err := unix.Renameat2(pfd, staging, pfd, o.Name, unix.RENAME_EXCHANGE); err != nil {
			return nil, fmt.Errorf("exchanging %q and %q: %w", staging, o.Name, err)
		}
		if err := unix.Fsync(pfd); err != nil {
			return nil, fmt.Errorf("syncing the parent directory: %w", err)
		}
		hook("exchanged")
	} else {
		if err := renameNoReplaceAt(pfd, staging, o.Name); err != nil {
			return nil, fmt.Errorf("renaming %q to %q: %w", staging, o.Name, err)
		}
		if err := unix.Fsync(pfd); err != nil {
			return nil, fmt.Errorf("syncing the parent directory: %w", err)
		}
		hook("exchanged")
	}
	fin, err := finishCopyBack(pfd, o.Name, o.ID, &copyBackMarker{ID: o.ID, Exchange: target != nil}, target != nil, false, hook)
	if err != nil {
		return nil, err
	}
	res.Kept, res.Warnings = fin.Kept, fin.Warnings
	return res, nil
}

// finishCopyBack completes a made exchange: the target's old content (under
// the staging name) is renamed to the kept name, then the copy state and the
// marker are removed from the target, keeping its root's mtime.
func finishCopyBack(pfd int, name, id string, m *copyBackMarker, hasStaging, hasKept bool, hook func(string)) (*CopyBackResult, error) {
	staging, kept := copyBackStaging(name, id), copyBackKept(name, id)
	res := &CopyBackResult{Resumed: true}
	if m.Exchange {
		switch {
		case hasStaging && hasKept:
			return nil, fmt.Errorf("%q holds the copy, but both %q and %q exist: keep the one with %q's previous content and run again", name, staging, kept, name)
		case hasStaging:
			if err := renameNoReplaceAt(pfd, staging, kept); err != nil {
				return nil, fmt.Errorf("renaming %q to %q: %w", staging, kept, err)
			}
			if err := unix.Fsync(pfd); err != nil {
				return nil, fmt.Errorf("syncing the parent directory: %w", err)
			}
			res.Kept = kept
		case hasKept:
			res.Kept = kept
		default:
			res.Warnings = append(res.Warnings, fmt.Sprintf("the previous content of %q, exchanged to %q, is gone (moved by hand?)", name, staging))
		}
	}
	hook("renamed")
	td, err := openDir(pfd, name, nil)
	if err != nil {
		return nil, fmt.Errorf("opening %q: %w", name, err)
	}
	defer td.Close()
	tfd := int(td.Fd())
	if mm, err := readCopyBackMarker(tfd, "."); err != nil {
		return nil, err
	} else if mm == nil || mm.ID != id {
		return res, nil // the state is gone already
	}
	if err := removeState(tfd); err != nil {
		return nil, fmt.Errorf("removing the copy state from %q: %w", name, err)
	}
	if err := unix.Fsync(tfd); err != nil {
		return nil, fmt.Errorf("syncing %q: %w", name, err)
	}
	return res, nil
}

// probeExchange makes the staging directory's StateDir and checks that its
// file system can exchange two directories atomically.
func probeExchange(sfd int) error {
	if err := unix.Mkdirat(sfd, StateDir, 0o700); err != nil && err != unix.EEXIST {
		return err
	}
	d, err := openDir(sfd, StateDir, nil)
	if err != nil {
		return err
	}
	defer d.Close()
	dfd := int(d.Fd())
	a, b := ".probe-a", ".probe-b"
	for _, n := range []string{a, b} {
		if err := removeAt(dfd, n); err != nil {
			return err
		}
		if err := unix.Mkdirat(dfd, n, 0o700); err != nil {
			return err
		}
	}
	err = unix.Renameat2(dfd, a, dfd, b, unix.RENAME_EXCHANGE)
	removeAt(dfd, a)
	removeAt(dfd, b)
	return err
}

// renameNoReplaceAt renames from to to in the directory dirfd, failing with
// EEXIST when to exists; where RENAME_NOREPLACE is not supported it checks,
// then renames (both names are this copy-back's own).
func renameNoReplaceAt(dirfd int, from, to string) error {
	err := unix.Renameat2(dirfd, from, dirfd, to, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	if st, err := lookup(dirfd, to); err != nil {
		return err
	} else if st != nil {
		return unix.EEXIST
	}
	return unix.Renameat(dirfd, from, dirfd, to)
}

// readCopyBackMarker reads the marker in dir (a name under dirfd, or ".")'s
// StateDir; nil when there is none.
func readCopyBackMarker(dirfd int, dir string) (*copyBackMarker, error) {
	fd, err := openBeneath(dirfd, joinRel(dir, StateDir))
	if isNotExist(err) || err == unix.ELOOP {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking for the copy-back marker in %q: %w", dir, err)
	}
	defer unix.Close(fd)
	mfd, err := unix.Openat(fd, copyBackMarkerFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if isNotExist(err) || err == unix.ELOOP {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the copy-back marker in %q: %w", dir, err)
	}
	f := os.NewFile(uintptr(mfd), copyBackMarkerFile)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("reading the copy-back marker in %q: %w", dir, err)
	}
	var m copyBackMarker
	if json.Unmarshal(b, &m) != nil {
		return nil, nil // not ours
	}
	return &m, nil
}

// writeCopyBackMarker writes the marker into the staging directory's
// StateDir durably (temporary file, fsync, rename, directory fsync).
func writeCopyBackMarker(sfd int, m copyBackMarker) error {
	b, _ := json.Marshal(m)
	d, err := openDir(sfd, StateDir, nil)
	if err != nil {
		return fmt.Errorf("writing the copy-back marker: %w", err)
	}
	defer d.Close()
	dfd := int(d.Fd())
	tmp := copyBackMarkerFile + ".tmp"
	unix.Unlinkat(dfd, tmp, 0)
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("writing the copy-back marker: %w", noSpace(err))
	}
	_, err = writeFull(fd, b, 0)
	if err == nil {
		err = unix.Fsync(fd)
	}
	unix.Close(fd)
	if err == nil {
		err = unix.Renameat(dfd, tmp, dfd, copyBackMarkerFile)
	}
	if err == nil {
		err = unix.Fsync(dfd)
	}
	if err != nil {
		return fmt.Errorf("writing the copy-back marker: %w", noSpace(err))
	}
	return nil
}
