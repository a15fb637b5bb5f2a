package volumes

// What a migration plan needs to know about its bind sources, learned where
// the engine runs: one helper container binds every source read-only and
// answers with a few hundred bytes of JSON (helperfs.Sources), so a remote
// engine's directories never need to be visible to the client and their
// data never crosses the API connection.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/helperfs"
)

// SourceRequest is one path InspectSources looks at; SourceInfo is what is
// there (see helperfs).
type (
	SourceRequest = helperfs.SourceRequest
	SourceInfo    = helperfs.SourceInfo
)

// Kinds of a bind source (SourceInfo.Kind).
const (
	KindMissing = helperfs.KindMissing
	KindDir     = helperfs.KindDir
	KindFile    = helperfs.KindFile
	KindSocket  = helperfs.KindSocket
	KindDevice  = helperfs.KindDevice
	KindOther   = helperfs.KindOther
)

// InspectSourcesOptions tune InspectSources.
type InspectSourcesOptions struct {
	Sources []SourceRequest
	Helper  HelperOptions
	// KeepHelper keeps a helper image InspectSources had to import (as
	// FreeSpaceOptions.KeepHelper).
	KeepHelper bool
}

// InspectSources learns what the engine's host has at each requested path,
// by path, in one helper container that binds every existing path read-only
// (never creating one) and reads its own mount table and the bound trees. A
// path that does not exist there is KindMissing: the engine refuses to create
// a container binding it, so when the first create is refused, each path is
// tried alone (in a container created, never started) to tell which.
func InspectSources(ctx context.Context, eng Engine, o InspectSourcesOptions) (_ map[string]*SourceInfo, err error) {
	reqs, err := checkSourceRequests(o.Sources)
	if err != nil || len(reqs) == 0 {
		return map[string]*SourceInfo{}, err
	}
	if !o.KeepHelper {
		present, err := HelperPresent(ctx, eng, o.Helper)
		if err != nil {
			return nil, fmt.Errorf("inspecting the bind sources: %w", err)
		}
		if !present {
			defer func() {
				if rerr := RemoveHelper(context.WithoutCancel(ctx), eng, o.Helper); rerr != nil && err == nil {
					err = fmt.Errorf("inspecting the bind sources: %w", rerr)
				}
			}()
		}
	}
	args := make([]helperfs.SourceArg, len(reqs))
	for i, r := range reqs {
		args[i] = helperfs.SourceArg{SourceRequest: r, At: helperfs.SourcesRoot + "/" + strconv.Itoa(i)}
	}
	label := "sources-" + randHex() // no helper of another run to clean up
	line, err := runSourcesHelper(ctx, eng, args, label, o.Helper)
	if cerrdefs.IsInvalidArgument(err) {
		// Some path does not exist on the engine's host: find which.
		if args, err = existingSources(ctx, eng, args, o.Helper); err == nil {
			line, err = runSourcesHelper(ctx, eng, args, label, o.Helper)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("inspecting the bind sources: %w", err)
	}
	return sourcesByPath(line.Sources, reqs)
}

// InspectSourcesLocal is InspectSources on this host's file system (a plan
// without an engine): symlinks resolved with this host's view, mount points
// read from its mount table.
func InspectSourcesLocal(sources []SourceRequest) (map[string]*SourceInfo, error) {
	reqs, err := checkSourceRequests(sources)
	if err != nil {
		return nil, err
	}
	args := make([]helperfs.SourceArg, len(reqs))
	for i, r := range reqs {
		args[i] = helperfs.SourceArg{SourceRequest: r, At: r.Path}
	}
	infos, err := helperfs.Sources(args, helperfs.LocalPlaces)
	if err != nil {
		return nil, fmt.Errorf("inspecting the bind sources: %w", err)
	}
	return sourcesByPath(infos, reqs)
}

func sourcesByPath(infos []SourceInfo, reqs []SourceRequest) (map[string]*SourceInfo, error) {
	out := map[string]*SourceInfo{}
	for i := range infos {
		out[infos[i].Path] = &infos[i]
	}
	for _, r := range reqs {
		if out[r.Path] == nil {
			return nil, fmt.Errorf("inspecting the bind sources: the helper said nothing about %q", r.Path)
		}
	}
	return out, nil
}

// checkSourceRequests wants absolute clean paths, each once (the flags of
// duplicates are merged).
func checkSourceRequests(in []SourceRequest) ([]SourceRequest, error) {
	var out []SourceRequest
	for _, r := range in {
		if !filepath.IsAbs(r.Path) || filepath.Clean(r.Path) != r.Path {
			return nil, fmt.Errorf("inspecting the bind sources: %q: want a clean absolute path", r.Path)
		}
		if i := slices.IndexFunc(out, func(o SourceRequest) bool { return o.Path == r.Path }); i >= 0 {
			out[i].Measure = out[i].Measure || r.Measure
			out[i].Bind = out[i].Bind || r.Bind
			out[i].Shallow = out[i].Shallow && r.Shallow
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// sourceMounts binds each source that has a place in the helper, read-only:
// a bind of the mount API fails (never creates) when the path is missing.
func sourceMounts(args []helperfs.SourceArg) []mount.Mount {
	ms := []mount.Mount{}
	for _, a := range args {
		if a.At != "" {
			ms = append(ms, mount.Mount{Type: mount.TypeBind, Source: a.Path, Target: a.At, ReadOnly: true,
				BindOptions: &mount.BindOptions{NonRecursive: a.Shallow, CreateMountpoint: false}})
		}
	}
	return ms
}

func runSourcesHelper(ctx context.Context, eng Engine, args []helperfs.SourceArg, label string, h HelperOptions) (*helperfs.Line, error) {
	line, err := runHelperContainer(ctx, eng, helperRun{req: helperfs.Request{Op: "sources", Sources: args},
		volume: label, mounts: sourceMounts(args), helper: h})
	if err != nil {
		return nil, err
	}
	if len(line.Sources) != len(args) {
		return nil, errors.New("the helper reported nothing")
	}
	return line, nil
}

// existingSources creates (never starts) a helper container for each source
// alone and marks those the engine refuses as invalid (the path does not
// exist there) missing: At "".
func existingSources(ctx context.Context, eng Engine, args []helperfs.SourceArg, h HelperOptions) ([]helperfs.SourceArg, error) {
	ref, err := EnsureHelper(ctx, eng, h)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(args)
	for i, a := range out {
		created, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:       "moltctl-helper-" + randHex(),
			Config:     helperConfig(ref, nil, map[string]string{LabelHelper: "sources-probe"}),
			HostConfig: helperHostConfig(sourceMounts([]helperfs.SourceArg{a})),
		})
		if cerrdefs.IsInvalidArgument(err) {
			out[i].At = ""
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("checking %q: %w", a.Path, err)
		}
		if _, err := eng.ContainerRemove(context.WithoutCancel(ctx), created.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("checking %q: removing the helper container: %w", a.Path, err)
		}
	}
	return out, nil
}

// HelperPresent reports whether the engine has the helper image of the
// binary, so that a caller running several helpers in a row (a dry-run's
// InspectSources then FreeSpace, each with KeepHelper) imports it once and
// removes it at the end only when it was not there before.
func HelperPresent(ctx context.Context, eng Engine, o HelperOptions) (bool, error) {
	ref, _, err := helperRef(o)
	if err != nil {
		return false, err
	}
	if _, err := eng.ImageInspect(ctx, ref); isNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("inspecting the helper image %s: %w", ref, err)
	}
	return true, nil
}
