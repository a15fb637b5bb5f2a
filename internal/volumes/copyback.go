package volumes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/helperfs"
	"github.com/moltctl/moltctl/internal/progress"
)

// CopyBackResult says what CopyBack did.
type CopyBackResult = helperfs.CopyBackResult

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
	// Progress, when set, receives the copy's running totals: progress.CopyBack
	// events of phase Running, with Target (the volume) and Source (Target) set.
	Progress progress.Func
	Helper   HelperOptions

	crashAfter string // tests: the helper exits abruptly after this step
}

var copyBackID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

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
	what := fmt.Sprintf("copying volume %s back into %q", o.Volume, o.Target)
	if !filepath.IsAbs(o.Target) || filepath.Clean(o.Target) == "/" {
		return nil, fmt.Errorf("%s: want an absolute path with a parent directory", what)
	}
	o.Target = filepath.Clean(o.Target)
	if !copyBackID.MatchString(o.ID) {
		return nil, fmt.Errorf("%s: id %q: want 1 to 64 letters, digits, '.', '_' or '-'", what, o.ID)
	}
	parent, name := filepath.Split(o.Target)
	if len(helperfs.KeptName(name, o.ID)) > 255 {
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
		req:    helperfs.Request{Op: "copyback", Name: name, ID: o.ID, CrashAfter: o.crashAfter},
		volume: o.Volume, helper: o.Helper, progress: running(o.Progress, progress.Event{Step: progress.CopyBack, Target: o.Volume, Source: o.Target}),
		mounts: []mount.Mount{
			{Type: mount.TypeVolume, Source: o.Volume, Target: helperfs.From, ReadOnly: true, VolumeOptions: &mount.VolumeOptions{NoCopy: true}},
			{Type: mount.TypeBind, Source: filepath.Clean(parent), Target: helperfs.To},
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
			return fmt.Errorf("listing the containers using %q: %w", v, err)
		}
		for _, c := range res.Items {
			if _, helper := c.Labels[LabelHelper]; helper {
				continue
			}
			n := c.ID
			if len(c.Names) > 0 {
				n = strings.TrimPrefix(c.Names[0], "/")
			}
			return fmt.Errorf("running container %s uses %q (stop it first): %w", n, v, ErrRefused)
		}
	}
	return nil
}
