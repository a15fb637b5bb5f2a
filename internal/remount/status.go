package remount

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
)

// StatusOptions select the project whose services Status reports.
type StatusOptions struct {
	Project *compose.Project
	// Services limits the report; empty: every service of the project.
	Services []string
}

// ContainerStatus is one service container as Status sees it.
type ContainerStatus struct {
	Service   string `json:"service"`
	Container string `json:"container,omitempty"`
	ID        string `json:"id,omitempty"`
	State     string `json:"state"`
	// Image is the image reference the container runs, Snapshot says whether it is
	// a remount snapshot (then BaseImage is its base).
	Image     string `json:"image,omitempty"`
	ImageID   string `json:"image_id,omitempty"`
	Snapshot  bool   `json:"snapshot"`
	BaseImage string `json:"base_image,omitempty"`
	// SnapshotCreated and SnapshotAge: when the snapshot was made (snapshots only).
	SnapshotCreated time.Time     `json:"snapshot_created,omitzero"`
	SnapshotAge     time.Duration `json:"snapshot_age,omitempty"`
	// Layers is the layer depth of its image (the engine's limit is about 125).
	Layers int `json:"layers"`
	// WritableBytes is the size of the writable layer: file bytes on overlay2, disk
	// usage on the containerd image store, 0 for a layer the container wrote nothing
	// into on both (see writableBytes).
	WritableBytes int64 `json:"writable_bytes"`
	// BakedEnv and BakedLabels: keys the image carries that neither the compose
	// config nor the base image sets (snapshots only; keys, never values).
	BakedEnv    []string `json:"baked_env,omitempty"`
	BakedLabels []string `json:"baked_labels,omitempty"`
	// WouldRecreate: a plain `docker compose up` would recreate the container now
	// (its config changed) and so discard its writable layer; Remount is the
	// command to run instead.
	WouldRecreate bool   `json:"would_recreate"`
	Remount       string `json:"remount,omitempty"`
	// Up is what `moltctl up` would do to it: UpCreate, UpRestore, UpStart,
	// UpKeep, UpRecreate, UpRemount or UpRebase ("" when up would not touch it).
	Up string `json:"up,omitempty"`
}

// Report is the result of Status.
type Report struct {
	Project    string            `json:"project"`
	Containers []ContainerStatus `json:"containers"`
	// Interrupted names the step of an interrupted remount, if a journal exists.
	Interrupted        string `json:"interrupted,omitempty"`
	InterruptedService string `json:"interrupted_service,omitempty"`
	// Snapshots lists the services' snapshot images (remount's and moltctl
	// snapshot's), newest first per service.
	Snapshots []SnapshotSummary `json:"snapshots,omitempty"`
}

// Status reports each service's containers: the image or snapshot they run, its
// age and depth, the writable layer's size, baked keys, whether a plain
// `docker compose up` would recreate them, and what `moltctl up` would do (PlanUp). It asks the compose CLI (--dry-run)
// for the last; it returns an error wrapping compose.ErrNoCLI when that is missing.
func Status(ctx context.Context, eng UpEngine, opts StatusOptions) (*Report, error) {
	p := opts.Project
	names, err := selectServices(p, opts.Services)
	if err != nil {
		return nil, err
	}
	cli, err := p.CLI(ctx)
	if err != nil {
		return nil, err
	}
	recreate, err := cli.WouldRecreate(ctx, names...)
	if err != nil {
		return nil, err
	}
	plan, err := planUp(ctx, eng, cli, UpOptions{Project: p, Services: opts.Services})
	if err != nil {
		return nil, err
	}
	up := map[string]string{}
	for _, pl := range plan {
		up[pl.Service+"/"+pl.Container] = pl.Action
	}
	rep := &Report{Project: p.Name}
	if j, err := readJournal(p.Name); err == nil && j != nil {
		rep.Interrupted, rep.InterruptedService = j.Step, j.Service
	}
	if g, err := readGroup(p.Name); err == nil && g != nil {
		rep.Interrupted, rep.InterruptedService = g.Step, g.Service
	}
	containerd := ContainerdStore(ctx, eng)
	for _, n := range names {
		svc := p.Services[n]
		cs, err := compose.ServiceContainers(ctx, eng, p.Name, n)
		if err != nil {
			return nil, err
		}
		if len(cs) == 0 {
			st := ContainerStatus{Service: n, State: "no container"}
			for _, pl := range plan {
				if pl.Service == n && (pl.Action == UpCreate || pl.Action == UpRestore) {
					st.Up = pl.Action
				}
			}
			rep.Containers = append(rep.Containers, st)
			continue
		}
		for _, c := range cs {
			st, err := containerStatus(ctx, eng, svc, c.ID)
			if err != nil {
				return nil, err
			}
			st.WritableBytes = writableBytes(ctx, eng, st.ID, st.WritableBytes, containerd)
			st.WouldRecreate = recreate[st.Container]
			st.Up = up[n+"/"+st.Container]
			if st.WouldRecreate {
				st.Remount = "moltctl remount " + n
			}
			rep.Containers = append(rep.Containers, st)
		}
	}
	inUse := map[string]bool{}
	for _, c := range rep.Containers {
		inUse[c.ImageID] = true
	}
	if rep.Snapshots, err = serviceSnapshots(ctx, eng, p.Name, names, inUse); err != nil {
		return nil, err
	}
	return rep, nil
}

func containerStatus(ctx context.Context, eng Engine, svc types.ServiceConfig, id string) (ContainerStatus, error) {
	ins, err := eng.ContainerInspect(ctx, id, client.ContainerInspectOptions{Size: true})
	if err != nil {
		return ContainerStatus{}, fmt.Errorf("inspecting container %s: %w", id, err)
	}
	c := ins.Container
	st := ContainerStatus{Service: svc.Name, Container: strings.TrimPrefix(c.Name, "/"), ID: c.ID}
	if c.State != nil {
		st.State = string(c.State.Status)
	}
	if c.Config != nil {
		st.Image = c.Config.Image
	}
	st.ImageID = c.Image
	if c.SizeRw != nil {
		st.WritableBytes = *c.SizeRw
	}
	im, err := eng.ImageInspect(ctx, c.Image)
	if err != nil {
		return st, nil // the image may be gone (removed by hand): report what we have
	}
	st.Layers = len(im.RootFS.Layers)
	if im.Config == nil || im.Config.Labels[LabelService] == "" {
		return st, nil
	}
	st.Snapshot = true
	st.BaseImage = im.Config.Labels[LabelBaseImage]
	if t, err := time.Parse(time.RFC3339Nano, im.Created); err == nil {
		st.SnapshotCreated = t
		st.SnapshotAge = time.Since(t).Round(time.Second)
	}
	var want []string
	for k, v := range svc.Environment {
		if v != nil {
			want = append(want, k+"="+*v)
		}
	}
	var baseEnv []string
	var baseLabels map[string]string
	if base, err := eng.ImageInspect(ctx, st.BaseImage); err == nil && base.Config != nil {
		baseEnv, baseLabels = base.Config.Env, base.Config.Labels
	}
	labels := map[string]string{}
	for k, v := range svc.Labels {
		labels[k] = v
	}
	for k, v := range c.Config.Labels {
		if strings.HasPrefix(k, "com.docker.compose.") {
			labels[k] = v // compose sets its own labels on every container
		}
	}
	st.BakedEnv, st.BakedLabels = bakedKeys(im.Config.Env, im.Config.Labels, want, labels, baseEnv, baseLabels)
	return st, nil
}
