package remount

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
)

// What Up does to a service's container (UpPlan.Action).
const (
	UpCreate   = "create"   // no container: compose creates it
	UpRestore  = "restore"  // no container but a snapshot: brought back on its latest snapshot (its layers), not a fresh container
	UpStart    = "start"    // stopped and current: compose starts it
	UpKeep     = "keep"     // running and current: nothing to do
	UpRecreate = "recreate" // compose recreates it: its writable layer is empty, nothing is lost
	UpRemount  = "remount"  // compose would recreate it and discard its writable layer: remounted instead
	UpRebase   = "rebase"   // its image changed and its writable layer is not empty: refused (the layer sits on the old image)
)

// ErrImageChanged: a container with a non-empty writable layer runs an image
// the service no longer uses (pulled or rebuilt); its layer can't be remounted
// onto the new image.
var ErrImageChanged = errors.New("the service's image changed under a non-empty writable layer")

// UpEngine is what Up and PlanUp use: Engine and the container's filesystem
// changes. *client.Client implements it.
type UpEngine interface {
	Engine
	ContainerDiff(ctx context.Context, id string, options client.ContainerDiffOptions) (client.ContainerDiffResult, error)
}

// UpOptions select the project and services of Up and PlanUp.
type UpOptions struct {
	Project *compose.Project
	// Services limits Up to these services (and, as compose does, what they
	// depend on); empty: every service.
	Services []string
	// DryRun plans without changing anything.
	DryRun bool
	// Keep, WaitTimeout: see Options.
	Keep        int
	WaitTimeout time.Duration
	// Progress, when set, receives the start of each step (the remounts' too).
	Progress progress.Func
	// Rebase remounts a container whose image changed under a non-empty
	// layer onto the new image (Options.Rebase) instead of refusing it;
	// RebaseConflicts: see Options.
	Rebase          bool
	RebaseConflicts string
}

// UpPlan is what Up does to one container of a service (Container empty for
// UpCreate).
type UpPlan struct {
	Service   string `json:"service"`
	Container string `json:"container,omitempty"`
	Action    string `json:"action"`
	// Changes is the number of paths the writable layer adds, changes or
	// deletes; Snapshot says the container runs a remount snapshot (the
	// layers of earlier remounts are in it).
	Changes  int  `json:"layer_changes"`
	Snapshot bool `json:"snapshot,omitempty"`
	// From is the snapshot an UpRestore brings the service back on, Layers
	// its layer count; ImageChanged says the service's image is no longer the
	// one it was made on (Up refuses it).
	From         string `json:"from,omitempty"`
	Layers       int    `json:"layers,omitempty"`
	ImageChanged bool   `json:"image_changed,omitempty"`
}

// UpResult is the result of Up.
type UpResult struct {
	Project string   `json:"project"`
	Plan    []UpPlan `json:"plan"`
	// Remounted are the remounts Up ran (each with the services that join it).
	Remounted []*Result `json:"remounted,omitempty"`
	// Rebases are the rebase plans (conflicts included) of a dry run with Rebase.
	Rebases []*Result `json:"rebases,omitempty"`
	// Compose says whether docker compose up -d ran (for create, start, recreate).
	Compose bool          `json:"compose"`
	DryRun  bool          `json:"dry_run,omitempty"`
	Total   time.Duration `json:"total_ns"`
}

// PlanUp says what Up would do to each container: it asks compose
// (`docker compose --dry-run up -d`) what it would create, start and recreate,
// and looks at the writable layer of each container compose would recreate.
func PlanUp(ctx context.Context, eng UpEngine, opts UpOptions) ([]UpPlan, error) {
	cli, err := opts.Project.CLI(ctx)
	if err != nil {
		return nil, err
	}
	return planUp(ctx, eng, cli, opts)
}

func planUp(ctx context.Context, eng UpEngine, cli *compose.CLI, opts UpOptions) ([]UpPlan, error) {
	p := opts.Project
	if _, err := selectServices(p, opts.Services); err != nil {
		return nil, err
	}
	verbs, err := cli.DryRunUp(ctx, false, opts.Services...)
	if err != nil {
		return nil, err
	}
	var plan []UpPlan
	for _, name := range p.ServiceNames() {
		sp, err := planService(ctx, eng, p, name, verbs)
		if err != nil {
			return nil, err
		}
		plan = append(plan, sp...)
	}
	remountJoining(p, plan)
	return plan, nil
}

// planService plans the containers of service name that compose's dry run
// (verbs, by container name) touches, or, when it touches none, the
// containers it would create.
func planService(ctx context.Context, eng UpEngine, p *compose.Project, name string, verbs map[string]map[string]bool) ([]UpPlan, error) {
	cs, err := compose.ServiceContainers(ctx, eng, p.Name, name)
	if err != nil {
		return nil, err
	}
	sort.Slice(cs, func(a, b int) bool { return containerName(cs[a].Names) < containerName(cs[b].Names) })
	var plan []UpPlan
	for _, c := range cs {
		v, ok := verbs[containerName(c.Names)]
		if !ok {
			continue
		}
		pl, err := planContainer(ctx, eng, p, name, c, v)
		if err != nil {
			return nil, err
		}
		plan = append(plan, pl)
	}
	if len(plan) > 0 {
		return plan, nil
	}
	return planCreates(ctx, eng, p, name, len(cs), verbs)
}

// planContainer says what Up does to container c of service name, given what
// compose would do to it (v).
func planContainer(ctx context.Context, eng UpEngine, p *compose.Project, name string, c container.Summary, v map[string]bool) (UpPlan, error) {
	pl := UpPlan{Service: name, Container: containerName(c.Names), Action: UpKeep}
	switch {
	case v["Recreate"]:
		return planRecreate(ctx, eng, p, pl, c)
	case v["Starting"] || v["Start"]:
		pl.Action = UpStart
	}
	return pl, nil
}

// planRecreate plans container c that compose would recreate: remount it when
// its writable layer has changes or it runs on a snapshot, rebase it when its
// image changed too, else let compose recreate it.
func planRecreate(ctx context.Context, eng UpEngine, p *compose.Project, pl UpPlan, c container.Summary) (UpPlan, error) {
	diff, err := eng.ContainerDiff(ctx, c.ID, client.ContainerDiffOptions{})
	if err != nil {
		return pl, fmt.Errorf("reading the writable layer of %s: %w", pl.Container, err)
	}
	pl.Changes = layerChanges(diff.Changes, c.Mounts)
	pl.Action = UpRecreate
	snap, err := onSnapshot(ctx, eng, c.ID)
	if err != nil {
		return pl, err
	}
	pl.Snapshot = snap
	if pl.Changes == 0 && !snap {
		return pl, nil
	}
	changed, err := imageChanged(ctx, eng, p, pl.Service, c.ID)
	if err != nil {
		return pl, err
	}
	pl.Action = UpRemount
	if changed {
		pl.Action = UpRebase
	}
	return pl, nil
}

// planCreates plans the containers compose would create for service name
// (which has n containers): restored from its latest snapshot when it has
// none left and compose creates one.
func planCreates(ctx context.Context, eng UpEngine, p *compose.Project, name string, n int, verbs map[string]map[string]bool) ([]UpPlan, error) {
	var creates []UpPlan
	for c, v := range verbs {
		if (v["Creating"] || v["Create"]) && slices.Contains(containerNames(p.Project, name), c) {
			creates = append(creates, UpPlan{Service: name, Container: c, Action: UpCreate})
		}
	}
	if n == 0 && len(creates) == 1 {
		// The container is gone (removed, or left in the old store by an
		// engine's store switch): a snapshot of it brings its layers back.
		if err := restorePlan(ctx, eng, p, &creates[0]); err != nil {
			return nil, err
		}
	}
	return creates, nil
}

// remountJoining remounts, in plan, a service compose would recreate (empty
// layer) that a remounted one joins: compose would recreate the joining one
// again with it.
func remountJoining(p *compose.Project, plan []UpPlan) {
	for i, pl := range plan {
		if pl.Action != UpRecreate {
			continue
		}
		for _, d := range Dependents(p.Project, pl.Service) {
			if slices.ContainsFunc(plan, func(o UpPlan) bool { return o.Service == d && o.Action == UpRemount }) {
				plan[i].Action = UpRemount
				break
			}
		}
	}
}

// restorePlan turns pl (compose would create the service's only container)
// into UpRestore when the service has a snapshot: Up brings it back on the
// latest one (remount's restore) instead of a fresh container from its image.
func restorePlan(ctx context.Context, eng Engine, p *compose.Project, pl *UpPlan) error {
	if svc := p.Services[pl.Service]; svc.GetScale() > 1 {
		return nil // remount restores one container; a scaled service is created fresh
	}
	ss, err := snapshots(ctx, eng, p.Name, pl.Service)
	if err != nil || len(ss) == 0 {
		return err
	}
	im, err := eng.ImageInspect(ctx, ss[0].ID)
	if err != nil {
		return fmt.Errorf("inspecting the latest snapshot of %s: %w", pl.Service, err)
	}
	base := serviceImage(p, pl.Service)
	baseIm, err := eng.ImageInspect(ctx, base)
	if err != nil {
		return fmt.Errorf("inspecting the service's image %s: %w", base, err)
	}
	pl.Action, pl.Snapshot, pl.Layers = UpRestore, true, len(im.RootFS.Layers)
	pl.ImageChanged = !sameLineage(im, baseIm)
	if pl.From = firstTag(ss[0].Tags); pl.From == "" {
		pl.From = ss[0].ID
	}
	return nil
}

// serviceImage is the image of service: its image:, or the name compose gives
// the image it builds.
func serviceImage(p *compose.Project, service string) string {
	if im := p.Services[service].Image; im != "" {
		return im
	}
	return p.Name + "-" + service
}

// layerChanges counts the changes of a writable layer that are not the
// mount points the engine created (and their parent directories): a
// container whose only changes are those loses nothing when recreated.
func layerChanges(changes []container.FilesystemChange, mounts []container.MountPoint) int {
	points := map[string]bool{}
	for _, m := range mounts {
		for d := m.Destination; d != "/" && d != "." && d != ""; d = path.Dir(d) {
			points[d] = true
		}
	}
	n := 0
	for _, c := range changes {
		if !points[c.Path] {
			n++
		}
	}
	return n
}

func containerName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return strings.TrimPrefix(names[0], "/")
}

// onSnapshot reports whether the container runs a remount snapshot: its
// earlier writable layers are in that image, so recreating it from the
// service's image loses them even when its own layer is empty.
func onSnapshot(ctx context.Context, eng Engine, id string) (bool, error) {
	ins, err := eng.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return false, fmt.Errorf("inspecting container %s: %w", id, err)
	}
	im, err := eng.ImageInspect(ctx, ins.Container.Image)
	if err != nil {
		return false, fmt.Errorf("inspecting the image of container %s: %w", id, err)
	}
	return im.Config != nil && im.Config.Labels[LabelService] != "", nil
}

// imageChanged reports whether the service's image is no longer the one the
// container's writable layer sits on (for a snapshot: its base image).
func imageChanged(ctx context.Context, eng Engine, p *compose.Project, service, id string) (bool, error) {
	ins, err := eng.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return false, fmt.Errorf("inspecting container %s: %w", id, err)
	}
	base := serviceImage(p, service)
	baseIm, err := eng.ImageInspect(ctx, base)
	if err != nil {
		return false, fmt.Errorf("inspecting the service's image %s: %w", base, err)
	}
	lineage := ins.Container.Image
	if cur, err := eng.ImageInspect(ctx, ins.Container.Image); err == nil && cur.Config != nil && cur.Config.Labels[LabelService] != "" {
		lineage = cur.Config.Labels[LabelBaseImageID]
	}
	return lineage != "" && lineage != baseIm.ID, nil
}

// Up converges the project as `docker compose up -d` does — creates what is
// missing, starts what is stopped, leaves what is current — except that a
// container with a non-empty writable layer compose would recreate is
// remounted instead (Run: with the services that join it, in dependency
// order, rolled back on failure), and a service with no container but a
// snapshot (moltctl snapshot, or an earlier remount) comes back on its latest
// snapshot with its layers (as remount does) instead of a fresh container. It
// refuses, before changing anything, a container whose image changed under a
// non-empty layer, or a snapshot to restore made on another image
// (ErrImageChanged).
// After the remounts it asks compose again and refuses to run
// `docker compose up -d` if that would still recreate a non-empty layer.
func Up(ctx context.Context, eng UpEngine, opts UpOptions) (*UpResult, error) {
	t0 := time.Now()
	p := opts.Project
	unlock, err := lockUnless(ctx, eng, Options{Project: p, DryRun: opts.DryRun})
	if err != nil {
		return nil, err
	}
	defer unlock()
	cli, err := upPreflight(ctx, p)
	if err != nil {
		return nil, err
	}
	plan, err := planUp(ctx, eng, cli, opts)
	if err != nil {
		return nil, err
	}
	res := &UpResult{Project: p.Name, Plan: plan, DryRun: opts.DryRun}
	remount, other, err := servicesToRemount(plan, opts.Rebase)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		if err := res.planRebases(ctx, eng, opts); err != nil {
			return nil, err
		}
		res.Total = time.Since(t0)
		return res, nil
	}
	if err := res.remount(ctx, eng, opts, remount); err != nil {
		return res, err
	}
	if other || len(remount) > 0 {
		if err := res.composeUp(ctx, eng, cli, opts); err != nil {
			return res, err
		}
	}
	res.Total = time.Since(t0)
	return res, nil
}

// upPreflight refuses to run while a remount or migration of the project is
// unfinished, and finds the compose CLI.
func upPreflight(ctx context.Context, p *compose.Project) (*compose.CLI, error) {
	if err := noJournal(p.Name); err != nil {
		return nil, err
	}
	if err := noGroup(Options{Project: p}); err != nil {
		return nil, err
	}
	return p.CLI(ctx)
}

// servicesToRemount lists the services of plan to remount (or restore), in
// plan order, and reports whether compose has other work (create, start,
// recreate). It refuses a container whose image changed under its layer
// unless rebase is set, and a snapshot to restore made on another image.
func servicesToRemount(plan []UpPlan, rebase bool) (remount []string, other bool, err error) {
	for _, pl := range plan {
		switch pl.Action {
		case UpRebase:
			if !rebase {
				return nil, false, fmt.Errorf("container %s: %w (its layer sits on the old image's files): set image: back, or recreate it with docker compose up (the writable layer is lost)",
					pl.Container, ErrImageChanged)
			}
			if !slices.Contains(remount, pl.Service) {
				remount = append(remount, pl.Service)
			}
		case UpRestore:
			if pl.ImageChanged {
				return nil, false, fmt.Errorf("service %s (no container, latest snapshot %s): %w (its layers sit on the old image's files): set image: back, or start it without them with docker compose up",
					pl.Service, pl.From, ErrImageChanged)
			}
			remount = append(remount, pl.Service)
		case UpRemount:
			if !slices.Contains(remount, pl.Service) {
				remount = append(remount, pl.Service)
			}
		case UpKeep:
		default:
			other = true
		}
	}
	return remount, other, nil
}

// remount remounts (or restores) the services in dependency order, each with
// the services that join it, adding each result to res.
func (res *UpResult) remount(ctx context.Context, eng UpEngine, opts UpOptions, services []string) error {
	done := map[string]bool{}
	for _, s := range Order(opts.Project.Project, services) {
		if done[s] {
			continue
		}
		r, err := res.remountOne(ctx, eng, opts, s)
		if err != nil {
			return err
		}
		res.Remounted = append(res.Remounted, r)
		done[s] = true
		for _, jr := range r.Joined {
			done[jr.Service] = true
		}
	}
	return nil
}

// remountOne remounts service s, or restores it from its latest snapshot when
// it has no container.
func (res *UpResult) remountOne(ctx context.Context, eng UpEngine, opts UpOptions, s string) (*Result, error) {
	// A service without a container (UpRestore) comes back alone on its
	// latest snapshot: what joins it is restored or created after it.
	restore := slices.ContainsFunc(res.Plan, func(pl UpPlan) bool { return pl.Service == s && pl.Action == UpRestore })
	verb := "remounting"
	if restore {
		verb = "restoring"
	}
	opts.Progress.Emit(progress.Event{Step: progress.Remount, Target: s})
	r, err := Run(ctx, eng, Options{Project: opts.Project, Service: s,
		Keep: opts.Keep, WaitTimeout: opts.WaitTimeout, Locked: true, Progress: opts.Progress,
		Rebase: opts.Rebase, RebaseConflicts: opts.RebaseConflicts, NoDependents: restore})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, s, err)
	}
	return r, nil
}

// composeUp runs `docker compose up -d` for what is left to create, start or
// recreate, after asking compose again that it recreates no non-empty layer.
func (res *UpResult) composeUp(ctx context.Context, eng UpEngine, cli *compose.CLI, opts UpOptions) error {
	// Never let compose discard a layer: ask it again after the remounts.
	again, err := planUp(ctx, eng, cli, opts)
	if err != nil {
		return err
	}
	current := true
	for _, pl := range again {
		if pl.Action == UpRemount || pl.Action == UpRebase {
			return fmt.Errorf("container %s: docker compose up would still recreate it after the remounts (its writable layer has %d changes): not running it; moltctl remount %s",
				pl.Container, pl.Changes, pl.Service)
		}
		current = current && pl.Action == UpKeep
	}
	if current {
		return nil
	}
	args := append([]string{"up", "-d", "--pull", "never", "--no-build"}, opts.Services...)
	opts.Progress.Emit(progress.Event{Step: progress.Compose, Command: args})
	if _, err := cli.Run(ctx, args...); err != nil {
		return err
	}
	res.Compose = true
	return nil
}
