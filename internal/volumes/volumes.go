// Package volumes creates the named volumes a migration fills, copies a bind
// mount's source directory into one (a full pass while the services run, then a
// delta pass), and verifies the copy. All file system work runs in a helper
// container made from moltctl's own static binary, so it works with any engine
// the client reaches and never touches the source or /var/lib/docker through
// the client's file system. See docs/volumes.md.
package volumes

import (
	"context"
	"errors"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/helperfs"
	"github.com/moltctl/moltctl/internal/progress"
)

// Labels moltctl puts on what it creates.
const (
	// LabelMigration marks a volume created by a migration; its value is the migration's ID.
	LabelMigration = "io.moltctl.migration"
	// LabelHelper marks helper containers and the helper image.
	LabelHelper = "io.moltctl.helper"
	// LabelHelperVolume names the volume a helper container works on.
	LabelHelperVolume = "io.moltctl.helper.volume"
)

// Errors callers branch on with errors.Is.
var (
	// ErrVolumeTaken: a volume with the planned name exists, holds data and is not this migration's.
	ErrVolumeTaken = errors.New("volume exists and is not empty")
	// ErrMismatch: verification found the volume different from the source.
	ErrMismatch = helperfs.ErrMismatch
	// ErrNoSpace: the volume's file system cannot hold the source.
	ErrNoSpace = helperfs.ErrNoSpace
	// ErrNoInodes: the volume's file system has no inodes left for the files
	// (it may have bytes to spare). It wraps ErrNoSpace.
	ErrNoInodes = helperfs.ErrNoInodes
	// ErrNoFirstPass: a delta pass was asked for a volume without a completed full pass.
	ErrNoFirstPass = helperfs.ErrNoFirstPass
	// ErrRefused: CopyBack refused before changing anything (see CopyBack).
	ErrRefused = helperfs.ErrRefused
	// ErrNotStatic: the helper binary is dynamically linked.
	ErrNotStatic = errors.New("the helper binary is not statically linked")
)

// Engine is the part of the Docker Engine API this package uses.
// *client.Client implements it.
type Engine interface {
	VolumeCreate(ctx context.Context, options client.VolumeCreateOptions) (client.VolumeCreateResult, error)
	VolumeInspect(ctx context.Context, volumeID string, options client.VolumeInspectOptions) (client.VolumeInspectResult, error)
	VolumeRemove(ctx context.Context, volumeID string, options client.VolumeRemoveOptions) (client.VolumeRemoveResult, error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageImport(ctx context.Context, source client.ImageImportSource, ref string, options client.ImageImportOptions) (client.ImageImportResult, error)
	ImageRemove(ctx context.Context, imageID string, options client.ImageRemoveOptions) (client.ImageRemoveResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerAttach(ctx context.Context, containerID string, options client.ContainerAttachOptions) (client.ContainerAttachResult, error)
	ContainerStart(ctx context.Context, containerID string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerWait(ctx context.Context, containerID string, options client.ContainerWaitOptions) client.ContainerWaitResult
	ContainerRemove(ctx context.Context, containerID string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerInspect(ctx context.Context, containerID string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// The types the helper reports in, defined where the helper's code lives.
type (
	// Pass is a copy pass: PassFull or PassDelta.
	Pass = helperfs.Pass
	// Progress reports a running copy.
	Progress = helperfs.Progress
	// CopyResult is what a pass did.
	CopyResult = helperfs.CopyResult
	// VerifyReport is what Verify compared.
	VerifyReport = helperfs.VerifyReport
)

// The passes.
const (
	PassFull  = helperfs.PassFull
	PassDelta = helperfs.PassDelta
)

// StateDir is the hidden directory at the root of a volume being filled that
// keeps the copy state between passes; Finish removes it.
const StateDir = helperfs.StateDir

// running returns the helper's progress callback that sends f e with the
// running totals (phase Running), or nil when f is nil.
func running(f progress.Func, e progress.Event) func(Progress) {
	if f == nil {
		return nil
	}
	e.Phase = progress.Running
	return func(p Progress) {
		e.Bytes, e.TotalBytes, e.Files, e.TotalFiles = p.Bytes, p.TotalBytes, p.Files, p.TotalFiles
		f(e)
	}
}

// HelperOptions choose the helper binary. The zero value uses the running
// executable, which must be statically linked (CGO_ENABLED=0).
type HelperOptions struct {
	// Binary is the path of a static linux moltctl binary for the engine's
	// architecture (default: os.Executable()).
	Binary string
}
