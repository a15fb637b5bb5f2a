package volumes

import (
	"context"
	"errors"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/helperfs"
	"github.com/moltctl/moltctl/internal/safefs"
)

// Size is what a directory tree takes: allocated bytes (what a copy needs on
// the destination, holes excluded) and entries below the root.
type Size struct {
	Bytes int64 `json:"bytes"`
	Files int64 `json:"files"`
}

// Measure walks dir on this host without following symlinks or crossing into
// other file systems (mounts are not copied either) and returns its size, the
// same figure the full pass checks against the volume's free space.
// Unreadable entries below the root are skipped, and so is the content of the
// directories in exclude (relative to dir), as CopyOptions.Exclude.
func Measure(dir string, exclude ...string) (Size, error) {
	b, f, err := safefs.Measure(dir, exclude)
	if err != nil {
		return Size{}, fmt.Errorf("measuring %q: %w", dir, err)
	}
	return Size{Bytes: b, Files: f}, nil
}

// Space is the room on a file system, as statfs(2) reports it to an
// unprivileged writer.
type Space = helperfs.Space

// FreeSpaceOptions tune FreeSpace.
type FreeSpaceOptions struct {
	Helper HelperOptions
	// KeepHelper keeps a helper image FreeSpace had to import (a migration
	// about to copy needs it next); by default FreeSpace leaves the engine's
	// images as it found them.
	KeepHelper bool
	// Driver and DriverOpts of the throwaway volume (default: the engine's
	// default driver, where compose creates the project's volumes).
	Driver     string
	DriverOpts map[string]string
	// Labels are added to the throwaway volume's (LabelHelper=space), so that
	// a caller can tell its own volume from another run's.
	Labels map[string]string
}

// FreeSpace asks the engine how much room its volumes have: it creates a
// throwaway volume (labelled LabelHelper), runs the helper container on it to
// statfs(2) it, and removes the volume again. No host path is assumed, so it
// works for remote engines, rootless engines and engines in a VM alike.
func FreeSpace(ctx context.Context, eng Engine, o FreeSpaceOptions) (_ *Space, err error) {
	ref, _, err := helperRef(o.Helper)
	if err != nil {
		return nil, fmt.Errorf("measuring the engine's free space: %w", err)
	}
	if !o.KeepHelper {
		if _, ierr := eng.ImageInspect(ctx, ref); isNotFound(ierr) {
			defer func() {
				if rerr := RemoveHelper(context.WithoutCancel(ctx), eng, o.Helper); rerr != nil && err == nil {
					err = fmt.Errorf("measuring the engine's free space: %w", rerr)
				}
			}()
		}
	}
	name := "moltctl-space-" + randHex()
	labels := map[string]string{LabelHelper: "space"}
	for k, v := range o.Labels {
		labels[k] = v
	}
	if _, err := eng.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Driver: o.Driver, DriverOpts: o.DriverOpts,
		Labels: labels}); err != nil {
		return nil, fmt.Errorf("measuring the engine's free space: creating volume %s: %w", name, err)
	}
	defer func() {
		if _, rerr := eng.VolumeRemove(context.WithoutCancel(ctx), name, client.VolumeRemoveOptions{Force: true}); rerr != nil && err == nil {
			err = fmt.Errorf("measuring the engine's free space: removing volume %s: %w", name, rerr)
		}
	}()
	line, err := runHelperContainer(ctx, eng, helperRun{req: helperfs.Request{Op: "statfs"}, volume: name, readOnly: true, helper: o.Helper})
	if err != nil {
		return nil, fmt.Errorf("measuring the engine's free space: %w", err)
	}
	if line.Space == nil {
		return nil, errors.New("measuring the engine's free space: the helper reported nothing")
	}
	return line.Space, nil
}
