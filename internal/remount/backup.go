package remount

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
)

// SnapshotOptions select the services whose containers Snapshot commits.
type SnapshotOptions struct {
	Project *compose.Project
	// Services limits the snapshot; empty: every service of the project.
	Services []string
	// Locked says the caller already holds the project's Lock.
	Locked bool
	// Progress, when set, receives the start of each commit.
	Progress progress.Func
}

// Snapshotted is one service container committed by Snapshot.
type Snapshotted struct {
	Service     string `json:"service"`
	Container   string `json:"container"`
	ContainerID string `json:"container_id"`
	// Running: the container was running; it was paused for the commit (a
	// consistent copy of its files) and runs on.
	Running bool `json:"running"`
	// Snapshot is the new tag (moltctl-snapshot/<project>-<service>:<seq>),
	// SnapshotID its image ID, Parent the snapshot the container ran on, if any.
	Snapshot   string `json:"snapshot"`
	SnapshotID string `json:"snapshot_id"`
	Parent     string `json:"parent,omitempty"`
	BaseImage  string `json:"base_image"`
	Layers     int    `json:"layers"`
	// Commit is how long the commit took (nanoseconds in JSON).
	Commit time.Duration `json:"commit_ns"`
}

// SnapshotReport is the result of Snapshot.
type SnapshotReport struct {
	Project   string        `json:"project"`
	Snapshots []Snapshotted `json:"snapshots"`
	// NoContainer names the services that have no container (nothing to commit).
	NoContainer []string `json:"no_container,omitempty"`
}

// snapshotTarget is one container Snapshot commits, checked before any commit.
type snapshotTarget struct {
	svc       string
	c         container.InspectResponse
	base      string // the service's image reference
	baseID    string // the image the writable layer sits on
	parent    string
	layers    int
	baseImage any // the base image's config (ImageInspect's Config)
}

// Snapshot commits the writable layer of each service's container, running or
// stopped, into the next versioned snapshot image of the service, without stopping
// or recreating anything (a running container is paused for the commit). It is a
// backup, and the way across an engine change that drops containers (Docker 29's
// switch to the containerd image store keeps images, not containers): a service
// whose container is gone is brought back on its latest snapshot by Run. It checks
// every container before committing any: a scaled service, a restarting container,
// a layer depth past the cap or an interrupted remount is refused with nothing
// changed. Snapshots are never pruned here; remount's Keep counts them.
func Snapshot(ctx context.Context, eng Engine, opts SnapshotOptions) (*SnapshotReport, error) {
	p := opts.Project
	if p == nil {
		return nil, errors.New("no compose project")
	}
	names, err := selectServices(p, opts.Services)
	if err != nil {
		return nil, err
	}
	if !opts.Locked {
		unlock, err := LockEngine(ctx, eng, p.Name)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	if j, err := readJournal(p.Name); err != nil {
		return nil, err
	} else if j != nil {
		return nil, interrupted(j)
	}
	rep := &SnapshotReport{Project: p.Name, Snapshots: []Snapshotted{}}
	maxLayers := MaxLayers(ctx, eng)
	var targets []snapshotTarget
	for _, n := range names {
		t, ok, err := snapshotCheck(ctx, eng, p, n, maxLayers)
		if err != nil {
			return nil, err
		}
		if !ok {
			rep.NoContainer = append(rep.NoContainer, n)
			continue
		}
		targets = append(targets, t)
	}
	for _, t := range targets {
		s, err := snapshotOne(ctx, eng, p.Name, t, opts.Progress)
		if err != nil {
			return rep, err
		}
		rep.Snapshots = append(rep.Snapshots, s)
	}
	return rep, nil
}

// snapshotCheck inspects the container of service n and what its snapshot will
// sit on; ok is false when the service has no container.
func snapshotCheck(ctx context.Context, eng Engine, p *compose.Project, n string, maxLayers int) (t snapshotTarget, ok bool, err error) {
	cs, err := compose.ServiceContainers(ctx, eng, p.Name, n)
	if err != nil || len(cs) == 0 {
		return t, false, err
	}
	if len(cs) > 1 {
		return t, false, fmt.Errorf("service %s has %d containers: %w yet; scale it to 1 first", n, len(cs), ErrUnsupported)
	}
	ins, err := eng.ContainerInspect(ctx, cs[0].ID, client.ContainerInspectOptions{})
	if err != nil {
		return t, false, fmt.Errorf("inspecting container %s: %w", cs[0].ID, err)
	}
	c := ins.Container
	name := strings.TrimPrefix(c.Name, "/")
	if c.State != nil && c.State.Restarting {
		return t, false, fmt.Errorf("container %s is restarting: %w; wait until it runs or stops", name, ErrUnsupported)
	}
	cur, err := eng.ImageInspect(ctx, c.Image)
	if err != nil {
		return t, false, fmt.Errorf("inspecting the image of container %s: %w", name, err)
	}
	t = snapshotTarget{svc: n, c: c, layers: len(cur.RootFS.Layers), baseID: c.Image}
	t.base = p.Services[n].Image
	if t.base == "" {
		t.base = p.Name + "-" + n // compose's default image name for build: services
	}
	if l := cur.Config; l != nil && l.Labels[LabelService] == n && l.Labels[LabelProject] == p.Name {
		// The container runs a snapshot: the new one keeps its lineage.
		t.base, t.baseID = l.Labels[LabelBaseImage], l.Labels[LabelBaseImageID]
		if t.parent = firstTag(cur.RepoTags); t.parent == "" {
			t.parent = cur.ID
		}
	}
	if t.layers+1 > maxLayers {
		return t, false, fmt.Errorf("container %s runs an image of %d layers and moltctl caps images at %d: %w",
			name, t.layers, maxLayers, ErrTooDeep)
	}
	if base, err := eng.ImageInspect(ctx, t.base); err == nil {
		t.baseImage = base.Config
	} else if cur.Config != nil && cur.Config.Labels[LabelService] == "" {
		t.baseImage = cur.Config // the service's image was retagged: the container's own image is the base
	} else {
		return t, false, fmt.Errorf("inspecting the base image %s of service %s: %w", t.base, n, err)
	}
	return t, true, nil
}

// snapshotOne commits t's container into the service's next snapshot tag.
func snapshotOne(ctx context.Context, eng Engine, project string, t snapshotTarget, pf progress.Func) (Snapshotted, error) {
	name := strings.TrimPrefix(t.c.Name, "/")
	ss, err := snapshots(ctx, eng, project, t.svc)
	if err != nil {
		return Snapshotted{}, err
	}
	seq := 1
	if len(ss) > 0 {
		seq = ss[0].Seq + 1
	}
	tag := snapshotTag(project, t.svc, seq)
	cfg, err := configOf(t.baseImage)
	if err != nil {
		return Snapshotted{}, fmt.Errorf("reading the config of %s: %w", t.base, err)
	}
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	labels[LabelProject], labels[LabelService], labels[LabelSeq] = project, t.svc, strconv.Itoa(seq)
	labels[LabelSource] = name + " (" + t.c.ID + ")"
	labels[LabelBaseImage], labels[LabelBaseImageID], labels[LabelParent] = t.base, t.baseID, t.parent
	cfg.Labels = labels
	if t.c.Config != nil {
		maskContainerConfig(cfg, t.c.Config)
	}
	running := t.c.State != nil && t.c.State.Running
	pf.Emit(progress.Event{Step: progress.Commit, Target: tag, Source: name})
	t0 := time.Now()
	// A running container is paused for the commit: its files are copied at one instant.
	res, err := commit(ctx, eng, t.c.ID, client.ContainerCommitOptions{
		Reference: tag, NoPause: false, Config: cfg, Comment: "moltctl snapshot of " + name,
	})
	if err != nil {
		return Snapshotted{}, fmt.Errorf("committing %s to %s: %w", name, tag, err)
	}
	s := Snapshotted{Service: t.svc, Container: name, ContainerID: t.c.ID, Running: running, Snapshot: tag,
		SnapshotID: res.ID, Parent: t.parent, BaseImage: t.base, Layers: t.layers + 1, Commit: time.Since(t0)}
	if im, err := eng.ImageInspect(ctx, res.ID); err == nil {
		s.Layers = len(im.RootFS.Layers)
	}
	return s, nil
}

// SnapshotSummary is one snapshot image of a service, as Status lists it.
type SnapshotSummary struct {
	Service string    `json:"service"`
	Tag     string    `json:"tag"`
	ID      string    `json:"id"`
	Seq     int       `json:"seq"`
	Created time.Time `json:"created"`
	// InUse: a container of the service runs on it.
	InUse bool `json:"in_use"`
}

// serviceSnapshots lists the snapshots of the services, newest first per service;
// inUse holds the image IDs the services' containers run on.
func serviceSnapshots(ctx context.Context, eng Engine, project string, services []string, inUse map[string]bool) ([]SnapshotSummary, error) {
	var out []SnapshotSummary
	for _, n := range services {
		ss, err := snapshots(ctx, eng, project, n)
		if err != nil {
			return nil, err
		}
		for _, s := range ss {
			tag := firstTag(s.Tags)
			out = append(out, SnapshotSummary{Service: n, Tag: tag, ID: s.ID, Seq: s.Seq,
				Created: time.Unix(s.Created, 0).UTC(), InUse: inUse[s.ID]})
		}
	}
	return out, nil
}
