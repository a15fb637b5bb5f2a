package remount

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
)

// restoreLatest brings back a service that has no container on its latest
// snapshot, with the compose file's current config: compose creates the
// container, it is cloned onto the snapshot and started. ok is false when the
// service has no snapshot (Run then reports ErrNoContainer). Nothing of it needs
// a journal: until the clone runs, a failure (or a crash) leaves the service as it
// was, without a container; what was created is removed and the snapshot stays.
func (r *run) restoreLatest(ctx context.Context) (res *Result, ok bool, err error) {
	p, name := r.opts.Project, r.opts.Service
	ss, err := snapshots(ctx, r.eng, p.Name, name)
	if err != nil || len(ss) == 0 {
		return nil, false, err
	}
	latest := ss[0]
	tag := firstTag(latest.Tags)
	if tag == "" {
		tag = latest.ID
	}
	snap, err := r.eng.ImageInspect(ctx, latest.ID)
	if err != nil {
		return nil, true, fmt.Errorf("inspecting snapshot %s: %w", tag, err)
	}
	base := serviceImage(p, name)
	baseIm, err := r.eng.ImageInspect(ctx, base)
	if err != nil {
		return nil, true, fmt.Errorf("inspecting the service's image %s: %w", base, err)
	}
	if !sameLineage(snap, baseIm) {
		return nil, true, fmt.Errorf("the image of service %s (%s) is not the one snapshot %s was made on: %w; its layers sit on the old image's files. Set image: back, or start without them with docker compose up",
			name, base, tag, ErrUnsupported)
	}
	layers := len(snap.RootFS.Layers)
	r.res.Snapshot, r.res.SnapshotID, r.res.BaseImage, r.res.Layers = tag, latest.ID, base, layers
	r.res.Plan = []string{
		fmt.Sprintf("service %s has no container: bring it back on its latest snapshot %s (%d layers)", name, tag, layers),
		fmt.Sprintf("docker compose up --no-start --no-deps %s", name),
		fmt.Sprintf("clone compose's container onto %s, start it, wait up to %s", tag, r.opts.WaitTimeout),
	}
	if r.opts.DryRun {
		return r.res, true, nil
	}
	cli, err := p.CLI(ctx)
	if err != nil {
		return nil, true, err
	}
	id, err := r.restoreOn(ctx, cli, tag)
	if err != nil {
		return nil, true, err
	}
	r.res.NewID, r.res.Restored = id, true
	r.res.Total = time.Since(r.t0)
	return r.res, true, nil
}

// restoreOn creates the service's container with compose, clones it onto tag and
// starts it; on failure every container of the service is removed again.
func (r *run) restoreOn(ctx context.Context, cli *compose.CLI, tag string) (string, error) {
	name := r.opts.Service
	p := r.opts.Project
	undo := func(step string, cause error) error {
		ctx := context.WithoutCancel(ctx)
		restored := fmt.Sprintf("service %s has no container again, as before; snapshot %s kept", name, tag)
		cs, err := compose.ServiceContainers(ctx, r.eng, p.Name, name)
		if err == nil {
			for _, c := range cs {
				if rerr := r.removeContainer(ctx, c.ID); rerr != nil && err == nil {
					err = rerr
				}
			}
		}
		if err != nil {
			restored = fmt.Sprintf("removing what was created failed too: %v; snapshot %s kept", err, tag)
		}
		return &StepError{Step: step, Err: cause, Restored: restored}
	}
	r.opts.Progress.Emit(progress.Event{Step: progress.Compose, Command: []string{"up", "--no-start", name}})
	if err := cli.Create(ctx, name); err != nil {
		return "", undo("creating the container with docker compose", err)
	}
	cs, err := compose.ServiceContainers(ctx, r.eng, p.Name, name)
	if err != nil {
		return "", undo("finding compose's container", err)
	}
	if len(cs) != 1 {
		return "", undo("finding compose's container", fmt.Errorf("got %d containers of service %s, want 1", len(cs), name))
	}
	ins, err := r.eng.ContainerInspect(ctx, cs[0].ID, client.ContainerInspectOptions{})
	if err != nil {
		return "", undo("inspecting compose's container", err)
	}
	t := ins.Container
	r.res.Container = strings.TrimPrefix(t.Name, "/")
	r.opts.Progress.Emit(progress.Event{Step: progress.Swap, Target: r.res.Container})
	if err := r.removeContainer(ctx, t.ID); err != nil {
		return "", undo("removing compose's container", err)
	}
	id, err := r.clone(ctx, t, tag)
	if err != nil {
		return "", undo("creating the container on the snapshot", err)
	}
	r.opts.Progress.Emit(progress.Event{Step: progress.Start, Target: r.res.Container})
	if _, err := r.eng.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return "", undo("starting the container", err)
	}
	if !r.opts.NoWait {
		r.opts.Progress.Emit(progress.Event{Step: progress.Wait, Timeout: r.opts.WaitTimeout})
		if err := Check(ctx, r.eng, id, r.opts.WaitTimeout); err != nil {
			return "", undo("checking the container", err)
		}
	}
	if raw, err := json.Marshal(t); err == nil {
		// leftovers reads the template, snapshot and base from the journal's fields; nothing is saved.
		r.j = &journal{New: raw, SnapshotID: r.res.SnapshotID, BaseImage: r.res.BaseImage}
		r.leftovers(ctx)
	}
	return id, nil
}

// sameLineage reports whether snapshot snap was made on base: its layers start
// with base's (content digests, the same on both image stores, so this holds
// across a store switch), or, for a flattened snapshot, its base image ID label
// is base's ID.
func sameLineage(snap, base client.ImageInspectResult) bool {
	sl, bl := snap.RootFS.Layers, base.RootFS.Layers
	if len(bl) > 0 && len(sl) > len(bl) && slices.Equal(sl[:len(bl)], bl) {
		return true
	}
	return snap.Config != nil && snap.Config.Labels[LabelBaseImageID] == base.ID
}
