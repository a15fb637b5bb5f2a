package helperfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
	"github.com/moltctl/moltctl/internal/statefile"
)

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

// StagingName is the name of a copy-back's staging directory beside the
// target name.
func StagingName(name, id string) string { return "." + name + ".moltctl-copyback-" + id }

// KeptName is the name a copy-back keeps the target's previous content under.
func KeptName(name, id string) string { return name + ".moltctl-before-copyback-" + id }

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

// copyBackTreeOptions drive the helper's side of CopyBack.
type copyBackTreeOptions struct {
	Src      string // the volume's root
	Parent   string // the target's parent directory
	Name, ID string
	Progress func(Progress)
	// Hook is called after each step (tests: kill the helper there).
	Hook func(step string)
}

// crashHook returns the helper's hook for Request.CrashAfter: the crash
// point "copyback:<step>" (statefile.Arm; exit status 137 as the container's PID 1).
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

// copyBack is one run of the helper's side of a copy-back: every step works
// on descriptors of the parent directory, never follows a symlink and never
// writes outside the staging directory; the target and the kept directory
// are only renamed.
type copyBack struct {
	o              copyBackTreeOptions
	staging, kept  string
	pfd, vfd       int          // the parent directory, the volume's root
	pst            unix.Stat_t  // the parent
	target         *unix.Stat_t // nil: no target yet
	stagingSt      *unix.Stat_t
	keptSt         *unix.Stat_t
	sd             *os.File // the staging directory, once staged
	createdStaging bool
	closers        []func() error
}

// copyBackTree is the helper's side of CopyBack: look, stage, copy and
// verify, exchange, finish; see copyBack.
func copyBackTree(ctx context.Context, o copyBackTreeOptions) (*CopyBackResult, error) {
	cb := &copyBack{o: o, staging: StagingName(o.Name, o.ID), kept: KeptName(o.Name, o.ID)}
	defer cb.close()
	if err := cb.open(); err != nil {
		return nil, err
	}
	if err := cb.look(); err != nil {
		return nil, err
	}
	if res, done, err := cb.resume(); done || err != nil {
		return res, err
	}
	if err := cb.stage(); err != nil {
		return nil, err
	}
	res, err := cb.copyAndVerify(ctx)
	if err != nil {
		return nil, err
	}
	if err := cb.exchange(); err != nil {
		return nil, err
	}
	fin, err := finishCopyBack(cb.pfd, o.Name, o.ID, &copyBackMarker{ID: o.ID, Exchange: cb.target != nil}, cb.target != nil, false, cb.hook)
	if err != nil {
		return nil, err
	}
	res.Kept, res.Warnings = fin.Kept, fin.Warnings
	return res, nil
}

func (cb *copyBack) hook(step string) {
	if cb.o.Hook != nil {
		cb.o.Hook(step)
	}
}

func (cb *copyBack) close() {
	for i := len(cb.closers) - 1; i >= 0; i-- {
		cb.closers[i]()
	}
}

// open opens the parent directory and the volume.
func (cb *copyBack) open() error {
	pd, err := safefs.OpenRoot(cb.o.Parent)
	if err != nil {
		return fmt.Errorf("opening the parent directory: %w", err)
	}
	cb.closers = append(cb.closers, pd.Close)
	cb.pfd = int(pd.Fd())
	if err := unix.Fstat(cb.pfd, &cb.pst); err != nil {
		return fmt.Errorf("reading the parent directory: %w", err)
	}
	vd, err := safefs.OpenRoot(cb.o.Src)
	if err != nil {
		return fmt.Errorf("opening the volume: %w", err)
	}
	cb.closers = append(cb.closers, vd.Close)
	cb.vfd = int(vd.Fd())
	return nil
}

// look refuses what the copy-back can't work with: copy state in the volume,
// a target that is not a directory or is a mount point, a staging or kept
// name that is not a directory.
func (cb *copyBack) look() error {
	if st, err := safefs.Lookup(cb.vfd, StateDir); err != nil {
		return fmt.Errorf("reading the volume: %w", err)
	} else if st != nil {
		return refused("the volume holds %s, a migration's unfinished copy state (finish the volume first)", StateDir)
	}
	var err error
	if cb.target, err = safefs.Lookup(cb.pfd, cb.o.Name); err != nil {
		return err
	}
	if cb.target != nil {
		if t := cb.target.Mode & unix.S_IFMT; t != unix.S_IFDIR {
			return refused("%q is a %s, not a directory", cb.o.Name, safefs.TypeName(t))
		}
		if safefs.NewMountRoots(uint64(cb.pst.Dev)).At(cb.pfd, cb.o.Name, cb.target) {
			return refused("%q is a mount point: its content can't be exchanged atomically", cb.o.Name)
		}
	}
	if cb.stagingSt, err = safefs.Lookup(cb.pfd, cb.staging); err != nil {
		return err
	}
	if cb.keptSt, err = safefs.Lookup(cb.pfd, cb.kept); err != nil {
		return err
	}
	for n, st := range map[string]*unix.Stat_t{cb.staging: cb.stagingSt, cb.kept: cb.keptSt} {
		if st != nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return refused("%q exists and is a %s, not moltctl's", n, safefs.TypeName(st.Mode&unix.S_IFMT))
		}
	}
	return nil
}

// resume finishes what an earlier call with this ID left after its exchange
// (done is then true).
func (cb *copyBack) resume() (res *CopyBackResult, done bool, err error) {
	if cb.target != nil {
		if m, err := readCopyBackMarker(cb.pfd, cb.o.Name); err != nil {
			return nil, true, err
		} else if m != nil && m.ID == cb.o.ID {
			// The exchange was made by an earlier call: finish it.
			res, err := finishCopyBack(cb.pfd, cb.o.Name, cb.o.ID, m, cb.stagingSt != nil, cb.keptSt != nil, cb.hook)
			return res, true, err
		}
	}
	if cb.keptSt != nil {
		if cb.stagingSt != nil {
			return nil, true, refused("both %q and %q exist", cb.staging, cb.kept)
		}
		return &CopyBackResult{Kept: cb.kept, Resumed: true}, true, nil // done by an earlier call
	}
	return nil, false, nil
}

// stage creates the staging directory (or takes over an interrupted call's)
// and checks that its file system can exchange directories.
func (cb *copyBack) stage() error {
	cb.createdStaging = cb.stagingSt == nil
	if cb.createdStaging {
		if err := unix.Mkdirat(cb.pfd, cb.staging, 0o700); err != nil {
			switch {
			case errors.Is(err, unix.EROFS), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
				return refused("the parent directory is not writable (%v)", err)
			case errors.Is(err, unix.ENAMETOOLONG):
				return refused("the name %q is too long for the staging directory", cb.o.Name)
			}
			return fmt.Errorf("creating the staging directory %q: %w", cb.staging, noSpace(err))
		}
		unix.Fsync(cb.pfd)
	}
	sd, err := safefs.OpenDir(cb.pfd, cb.staging, nil)
	if err != nil {
		return fmt.Errorf("opening the staging directory %q: %w", cb.staging, err)
	}
	cb.closers = append(cb.closers, sd.Close)
	cb.sd = sd
	if !cb.createdStaging {
		// A leftover of an interrupted call is empty or holds the copy state;
		// anything else is not ours and is left alone.
		names, err := safefs.ReadNames(sd)
		if err != nil {
			return fmt.Errorf("listing the staging directory %q: %w", cb.staging, err)
		}
		if len(names) > 0 && !slices.Contains(names, StateDir) {
			return refused("%q exists and is not a staging directory of copy-back %s", cb.staging, cb.o.ID)
		}
	}
	if err := probeExchange(int(sd.Fd())); err != nil {
		if cb.createdStaging {
			safefs.RemoveAt(cb.pfd, cb.staging)
			unix.Fsync(cb.pfd)
		}
		if safefs.ExchangeUnsupported(err) {
			return refused("the parent directory's file system can't exchange two directories atomically (renameat2 RENAME_EXCHANGE: %v)", err)
		}
		return fmt.Errorf("preparing the staging directory %q: %w", cb.staging, noSpace(err))
	}
	cb.hook("staged")
	return nil
}

// copyAndVerify copies the volume into the staging directory (the full pass
// empties it first), verifies the copy with every content hash and marks it.
func (cb *copyBack) copyAndVerify(ctx context.Context) (*CopyBackResult, error) {
	progress := func(p Progress) {
		if cb.o.Progress != nil {
			cb.o.Progress(p)
		}
		if p.Files > 0 {
			cb.hook("copying")
		}
	}
	sfd := int(cb.sd.Fd())
	cres, err := copyPass(ctx, passOptions{Src: cb.o.Src, Dst: safefs.ProcFd(sfd), UID: -1, GID: -1, KeepOwner: true, Progress: progress,
		Into: "the staging directory", Sync: true}) // on disk before the exchange makes it the directory
	if err != nil {
		return nil, fmt.Errorf("copying the volume into %q: %w", cb.staging, err)
	}
	cb.hook("copied")
	rep, err := verifyTree(cb.o.Src, safefs.ProcFd(sfd), verifyOptions{KeepOwner: true, Full: true})
	if err != nil {
		return nil, fmt.Errorf("verifying the copy in %q: %w", cb.staging, err)
	}
	if len(rep.Differences) > 0 {
		return nil, fmt.Errorf("verifying the copy in %q: %w: %s", cb.staging, ErrMismatch, FirstDiffs(rep.Differences, 5))
	}
	cb.hook("verified")
	if err := writeCopyBackMarker(sfd, copyBackMarker{ID: cb.o.ID, Exchange: cb.target != nil}); err != nil {
		return nil, err
	}
	cb.hook("marked")
	return &CopyBackResult{Copy: cres, Verify: rep}, nil
}

// exchange swaps the verified copy and the target in one renameat2, or
// renames the copy into place when there was no target.
func (cb *copyBack) exchange() error {
	if cb.target != nil {
		now, err := safefs.Lookup(cb.pfd, cb.o.Name)
		if err != nil {
			return err
		}
		if now == nil || now.Dev != cb.target.Dev || now.Ino != cb.target.Ino {
			return fmt.Errorf("%q was replaced during the copy-back (nothing exchanged; run it again)", cb.o.Name)
		}
		if err := safefs.Exchange(cb.pfd, cb.staging, cb.pfd, cb.o.Name); err != nil {
			return fmt.Errorf("exchanging %q and %q: %w", cb.staging, cb.o.Name, err)
		}
	} else if err := safefs.RenameNoReplace(cb.pfd, cb.staging, cb.pfd, cb.o.Name); err != nil {
		return fmt.Errorf("renaming %q to %q: %w", cb.staging, cb.o.Name, err)
	}
	if err := safefs.SyncFd(cb.pfd); err != nil {
		return fmt.Errorf("syncing the parent directory: %w", err)
	}
	cb.hook("exchanged")
	return nil
}

// finishCopyBack completes a made exchange: the target's old content (under
// the staging name) is renamed to the kept name, then the copy state and the
// marker are removed from the target, keeping its root's mtime.
func finishCopyBack(pfd int, name, id string, m *copyBackMarker, hasStaging, hasKept bool, hook func(string)) (*CopyBackResult, error) {
	staging, kept := StagingName(name, id), KeptName(name, id)
	res := &CopyBackResult{Resumed: true}
	if m.Exchange {
		switch {
		case hasStaging && hasKept:
			return nil, fmt.Errorf("%q holds the copy, but both %q and %q exist: keep the one with %q's previous content and run again", name, staging, kept, name)
		case hasStaging:
			if err := safefs.RenameNoReplace(pfd, staging, pfd, kept); err != nil {
				return nil, fmt.Errorf("renaming %q to %q: %w", staging, kept, err)
			}
			if err := safefs.SyncFd(pfd); err != nil {
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
	td, err := safefs.OpenDir(pfd, name, nil)
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
	if err := safefs.SyncFd(tfd); err != nil {
		return nil, fmt.Errorf("syncing %q: %w", name, err)
	}
	return res, nil
}

// probeExchange makes the staging directory's StateDir and checks that its
// file system can exchange two directories atomically.
func probeExchange(sfd int) error {
	if err := unix.Mkdirat(sfd, StateDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	d, err := safefs.OpenDir(sfd, StateDir, nil)
	if err != nil {
		return err
	}
	defer d.Close()
	dfd := int(d.Fd())
	a, b := ".probe-a", ".probe-b"
	for _, n := range []string{a, b} {
		if err := safefs.RemoveAt(dfd, n); err != nil {
			return err
		}
		if err := unix.Mkdirat(dfd, n, 0o700); err != nil {
			return err
		}
	}
	err = safefs.Exchange(dfd, a, dfd, b)
	safefs.RemoveAt(dfd, a)
	safefs.RemoveAt(dfd, b)
	return err
}

// readCopyBackMarker reads the marker in dir (a name under dirfd, or ".")'s
// StateDir; nil when there is none.
func readCopyBackMarker(dirfd int, dir string) (*copyBackMarker, error) {
	fd, err := safefs.OpenBeneath(dirfd, safefs.JoinRel(dir, StateDir))
	if safefs.IsNotExist(err) || errors.Is(err, unix.ELOOP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking for the copy-back marker in %q: %w", dir, err)
	}
	defer unix.Close(fd)
	mfd, err := unix.Openat(fd, copyBackMarkerFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if safefs.IsNotExist(err) || errors.Is(err, unix.ELOOP) {
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
	d, err := safefs.OpenDir(sfd, StateDir, nil)
	if err != nil {
		return fmt.Errorf("writing the copy-back marker: %w", err)
	}
	defer d.Close()
	if err := safefs.WriteFileAt(int(d.Fd()), copyBackMarkerFile, b, safefs.WriteOptions{Perm: 0o600}); err != nil {
		return fmt.Errorf("writing the copy-back marker: %w", noSpace(err))
	}
	return nil
}
