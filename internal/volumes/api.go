package volumes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/helperfs"
	"github.com/moltctl/moltctl/internal/progress"
)

// CreateOptions describe a named volume for compose to adopt.
type CreateOptions struct {
	Name    string // the volume's name (compose: name:, else <project>_<key>); required
	Project string // com.docker.compose.project; required
	Key     string // com.docker.compose.volume: the key under the top-level volumes:; required
	// ComposeVersion is com.docker.compose.version (the compose CLI's version);
	// the label is left out when empty.
	ComposeVersion string
	// Migration identifies the migration (LabelMigration); required. A volume
	// carrying it is this migration's own and is reused (resume).
	Migration  string
	Driver     string            // default: the engine's (local)
	DriverOpts map[string]string // driver_opts of the compose volume
	Labels     map[string]string // more labels (the compose volume's labels:)
	Helper     HelperOptions
}

// CreateResult says what Create did.
type CreateResult struct {
	Created bool // a new volume was created (false: this migration's volume was reused)
	// Replaced: an empty volume of that name without this migration's label was
	// removed and created again with the right labels.
	Replaced bool
}

// Create creates the named volume with compose's labels and LabelMigration.
// An existing volume of that name is reused when it carries this migration's
// label, replaced when it is empty and not in use, and otherwise refused with
// an error wrapping ErrVolumeTaken.
func Create(ctx context.Context, eng Engine, o CreateOptions) (*CreateResult, error) {
	if o.Name == "" || o.Project == "" || o.Key == "" || o.Migration == "" {
		return nil, errors.New("creating a volume: name, project, key and migration are required")
	}
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	labels["com.docker.compose.project"] = o.Project
	labels["com.docker.compose.volume"] = o.Key
	if o.ComposeVersion != "" {
		labels["com.docker.compose.version"] = o.ComposeVersion
	}
	labels[LabelMigration] = o.Migration
	res := &CreateResult{}
	v, err := eng.VolumeInspect(ctx, o.Name, client.VolumeInspectOptions{})
	switch {
	case err == nil && v.Volume.Labels[LabelMigration] == o.Migration:
		return res, nil
	case err == nil:
		line, err := runHelperContainer(ctx, eng, helperRun{req: helperfs.Request{Op: "probe"}, volume: o.Name, readOnly: true, helper: o.Helper})
		if err != nil {
			return nil, fmt.Errorf("looking into existing volume %s: %w", o.Name, err)
		}
		if line.Probe == nil || !line.Probe.Empty {
			return nil, fmt.Errorf("creating volume %s: %w", o.Name, ErrVolumeTaken)
		}
		if _, err := eng.VolumeRemove(ctx, o.Name, client.VolumeRemoveOptions{}); err != nil {
			return nil, fmt.Errorf("replacing empty volume %s (in use?): %w", o.Name, err)
		}
		res.Replaced = true
	case !isNotFound(err):
		return nil, fmt.Errorf("inspecting volume %s: %w", o.Name, err)
	}
	if _, err := eng.VolumeCreate(ctx, client.VolumeCreateOptions{Name: o.Name, Driver: o.Driver, DriverOpts: o.DriverOpts, Labels: labels}); err != nil {
		return nil, fmt.Errorf("creating volume %s: %w", o.Name, err)
	}
	res.Created = true
	return res, nil
}

// CopyOptions describe one copy pass.
type CopyOptions struct {
	// Source is the directory to copy, an absolute path as the engine's host sees it; required.
	Source string
	// Volume is the named volume to fill; required.
	Volume string
	// Owner is the planned owner "uid:gid" (numeric) of every entry, the volume root
	// included; required unless KeepOwner.
	Owner string
	// KeepOwner keeps the source's numeric ids instead of Owner.
	KeepOwner bool
	// Pass is PassFull (default) or PassDelta.
	Pass Pass
	// Progress, when set, receives the running totals (a few times a second):
	// progress.Copy events of phase Running, with Target, Source and Pass set.
	Progress progress.Func
	// Workers is how many regular files are copied at once (default 1). On 2
	// cores and one disk 2 gained nothing measurable (docs/volumes.md).
	Workers int
	// Reserve (full pass) is how many bytes must stay free in the volume's
	// file system after the copy: the snapshots remount commits of the
	// services' writable layers, on engines that keep volumes and images on
	// one file system (the default /var/lib/docker).
	Reserve int64
	// Exclude lists directories inside Source (relative paths) whose content
	// is left out: each is copied as an empty directory with its metadata and
	// the planned owner, the mount point of the volume that holds that content.
	Exclude []string
	Helper  HelperOptions
}

// Copy runs one pass of copying Source into Volume in a helper container. The
// full pass empties the volume first (so it can be run again after an
// interruption); the delta pass needs a completed full pass and copies only
// what changed since the last pass, removing what was deleted. Both store the
// source's manifest in the volume's StateDir. Errors wrap ErrNoSpace when the
// volume's file system is too small (and ErrNoInodes when it is its inodes
// that run out), ErrNoFirstPass for a delta without a
// full pass.
func Copy(ctx context.Context, eng Engine, o CopyOptions) (*CopyResult, error) {
	if err := checkSourceVolume(o.Source, o.Volume); err != nil {
		return nil, err
	}
	if err := checkExclude(o.Exclude); err != nil {
		return nil, fmt.Errorf("copying %q: %w", o.Source, err)
	}
	if _, _, err := helperfs.ParseOwner(o.Owner, o.KeepOwner); err != nil {
		return nil, fmt.Errorf("copying %q: %w", o.Source, err)
	}
	if o.Pass == "" {
		o.Pass = PassFull
	}
	if o.Pass != PassFull && o.Pass != PassDelta {
		return nil, fmt.Errorf("copying %q: unknown pass %q", o.Source, o.Pass)
	}
	line, err := runHelperContainer(ctx, eng, helperRun{
		req:    helperfs.Request{Op: "copy", Owner: o.Owner, KeepOwner: o.KeepOwner, Pass: o.Pass, Workers: o.Workers, Reserve: o.Reserve, Exclude: o.Exclude},
		source: o.Source, volume: o.Volume, helper: o.Helper,
		progress: running(o.Progress, progress.Event{Step: progress.Copy, Target: o.Volume, Source: o.Source, Pass: string(o.Pass)})})
	if err != nil {
		return nil, fmt.Errorf("copying %q into volume %s (%s pass): %w", o.Source, o.Volume, o.Pass, err)
	}
	if line.Copy == nil {
		return nil, fmt.Errorf("copying %q into volume %s: the helper returned no result", o.Source, o.Volume)
	}
	return line.Copy, nil
}

// checkExclude accepts clean relative paths below the source.
func checkExclude(exclude []string) error {
	for _, p := range exclude {
		if p == "" || filepath.IsAbs(p) || filepath.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return fmt.Errorf("excluded path %q: want a clean path relative to the source, below it", p)
		}
	}
	return nil
}

func checkSourceVolume(source, volume string) error {
	if source == "" || !filepath.IsAbs(source) {
		return fmt.Errorf("source %q: want an absolute path", source)
	}
	if volume == "" {
		return errors.New("no volume given")
	}
	return nil
}

// VerifyOptions describe a verification.
type VerifyOptions struct {
	Source    string // as in CopyOptions; required
	Volume    string // required
	Owner     string // the planned owner "uid:gid"; required unless KeepOwner
	KeepOwner bool
	// Full compares the content hash of every regular file; by default only the
	// files the delta passes touched are hashed, everything else by metadata.
	Full bool
	// Exclude: as in CopyOptions; only the directories themselves are compared.
	Exclude []string
	Helper  HelperOptions
}

// Verify compares Source and Volume (the volume mounted read-only): type,
// size, mode, owner (the planned one, or the source's with KeepOwner),
// symlink target, hardlink grouping, mtime, xattrs, device numbers, and
// content hashes (see VerifyOptions.Full). Any difference gives the report and
// an error wrapping ErrMismatch that lists the first differences.
func Verify(ctx context.Context, eng Engine, o VerifyOptions) (*VerifyReport, error) {
	if err := checkSourceVolume(o.Source, o.Volume); err != nil {
		return nil, err
	}
	if err := checkExclude(o.Exclude); err != nil {
		return nil, fmt.Errorf("verifying %s: %w", o.Volume, err)
	}
	if _, _, err := helperfs.ParseOwner(o.Owner, o.KeepOwner); err != nil {
		return nil, fmt.Errorf("verifying %s: %w", o.Volume, err)
	}
	line, err := runHelperContainer(ctx, eng, helperRun{
		req:    helperfs.Request{Op: "verify", Owner: o.Owner, KeepOwner: o.KeepOwner, Full: o.Full, Exclude: o.Exclude},
		source: o.Source, volume: o.Volume, readOnly: true, helper: o.Helper})
	if err != nil {
		return nil, fmt.Errorf("verifying volume %s against %q: %w", o.Volume, o.Source, err)
	}
	rep := line.Verify
	if rep == nil {
		return nil, fmt.Errorf("verifying volume %s: the helper returned no result", o.Volume)
	}
	if len(rep.Differences) > 0 {
		return rep, fmt.Errorf("verifying volume %s against %q: %w: %s", o.Volume, o.Source, ErrMismatch, helperfs.FirstDiffs(rep.Differences, 5))
	}
	return rep, nil
}

// FinishOptions name the volume whose copy state to remove.
type FinishOptions struct {
	Volume string // required
	Helper HelperOptions
}

// Finish removes the copy state (StateDir) from the volume, keeping the root
// directory's mtime. Call it after a successful Verify, before the services
// start on the volume. Finishing a volume without state does nothing.
func Finish(ctx context.Context, eng Engine, o FinishOptions) error {
	if o.Volume == "" {
		return errors.New("no volume given")
	}
	if _, err := runHelperContainer(ctx, eng, helperRun{req: helperfs.Request{Op: "finish"}, volume: o.Volume, helper: o.Helper}); err != nil {
		return fmt.Errorf("removing the copy state from volume %s: %w", o.Volume, err)
	}
	return nil
}
