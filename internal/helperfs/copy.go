package helperfs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// passOptions drive one pass of copying a source tree into a volume, both
// local paths (inside the helper container: /from and /to).
type passOptions struct {
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
	// Into names Dst in errors (default "the volume").
	Into string
	// Sync fsyncs every file and directory the pass creates.
	Sync bool
}

func (o passOptions) into() string {
	if o.Into == "" {
		return "the volume"
	}
	return o.Into
}

// copyPass copies o.Src into o.Dst. The full pass empties o.Dst (except the
// state directory) first and checks that the source fits; the delta pass
// compares the source with the manifest the previous pass stored and copies
// only what changed. The new manifest is stored in o.Dst/StateDir before
// copyPass returns.
func copyPass(ctx context.Context, o passOptions) (*CopyResult, error) {
	start := time.Now()
	dst, err := safefs.OpenRoot(o.Dst)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", o.into(), err)
	}
	defer dst.Close()
	dstRoot := int(dst.Fd())
	st, err := openState(dstRoot)
	if err != nil {
		return nil, err
	}
	res := &CopyResult{Pass: PassFull}
	var total Progress
	if o.Delta {
		res.Pass = PassDelta
		if st.Manifest == nil {
			return nil, fmt.Errorf("delta pass: %w", ErrNoFirstPass)
		}
	} else {
		if total, err = prepareFull(dstRoot, o); err != nil {
			return nil, err
		}
		st = &state{Version: 1}
	}
	copied, err := safefs.CopyTree(ctx, safefs.CopyOptions{Src: o.Src, Dst: o.Dst, UID: o.UID, GID: o.GID, KeepOwner: o.KeepOwner,
		Previous: st.Manifest, Exclude: o.Exclude, Reserved: StateDir, Workers: o.Workers, Sync: o.Sync,
		Progress: func(bytes, files int64) {
			if o.Progress != nil {
				p := total
				p.Pass, p.Bytes, p.Files = res.Pass, bytes, files
				o.Progress(p)
			}
		}})
	if err != nil {
		return nil, volumeFull(dstRoot, err)
	}
	res.Bytes, res.Files, res.Warnings = copied.Bytes, copied.Files, copied.Warnings
	res.Added, res.Changed, res.Removed = copied.Added, copied.Changed, copied.Removed
	if o.Delta {
		st.Touched = safefs.MergeTouched(st.Touched, res.Changed, res.Added)
	}
	st.Manifest = copied.Manifest
	var rootSt unix.Stat_t
	if err := unix.Fstat(dstRoot, &rootSt); err != nil {
		return nil, fmt.Errorf("reading the root of %s: %w", o.into(), err)
	}
	if err := saveState(dstRoot, st, rootSt.Atim.Nano(), rootSt.Mtim.Nano()); err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// prepareFull readies the volume for a full pass: the old manifest goes
// first (a full pass interrupted after this point must not leave it for a
// delta pass to trust), then the volume's content; then the source is
// measured against the room left. It returns the totals for the progress.
func prepareFull(dstRoot int, o passOptions) (Progress, error) {
	if err := dropState(dstRoot); err != nil {
		return Progress{}, err
	}
	if err := safefs.Clear(dstRoot, StateDir); err != nil {
		return Progress{}, fmt.Errorf("emptying %s: %w", o.into(), err)
	}
	need, files, err := safefs.Measure(o.Src, o.Exclude)
	if err != nil {
		return Progress{}, fmt.Errorf("measuring the source: %w", err)
	}
	if room, err := roomAt(dstRoot); err == nil {
		what := "the source"
		if o.Reserve > 0 {
			what = fmt.Sprintf("the source (%d bytes) with the %d bytes kept for the snapshots", need, o.Reserve)
		}
		if err := room.Fits(what, need+o.Reserve, files); err != nil {
			return Progress{}, err
		}
	}
	return Progress{TotalBytes: need, TotalFiles: files}, nil
}

// volumeFull wraps ErrNoInodes or ErrNoSpace around a copy's ENOSPC or
// EDQUOT, telling inodes running out from bytes by the volume's statfs.
func volumeFull(dstRoot int, err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC) && outOfInodes(dstRoot, err):
		return fmt.Errorf("%w: %w", ErrNoInodes, err)
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// removeStateAt deletes the state directory of the volume at root, keeping
// the root's times.
func removeStateAt(root string) error {
	d, err := safefs.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening the volume: %w", err)
	}
	defer d.Close()
	return removeState(int(d.Fd()))
}
