// Package remount gives a compose service its current compose configuration (mounts,
// env, networks) while keeping its container's writable layer: stop, commit the layer
// into a versioned snapshot image, let the installed docker compose CLI create the
// container as it wants it, clone that container onto the snapshot, start it. Every
// step is journaled under StateDir so that an interrupted remount can be resumed or
// rolled back, and a per-project lock keeps two remounts from running at once.
package remount

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/statefile"
)

// Engine is the part of the Docker Engine API remount uses; *client.Client
// implements it. Tests wrap it to inject failures.
type Engine interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerStop(ctx context.Context, id string, options client.ContainerStopOptions) (client.ContainerStopResult, error)
	ContainerStart(ctx context.Context, id string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerCommit(ctx context.Context, id string, options client.ContainerCommitOptions) (client.ContainerCommitResult, error)
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerRemove(ctx context.Context, id string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerRename(ctx context.Context, id string, options client.ContainerRenameOptions) (client.ContainerRenameResult, error)
	ContainerExport(ctx context.Context, id string, options client.ContainerExportOptions) (client.ContainerExportResult, error)
	NetworkConnect(ctx context.Context, network string, options client.NetworkConnectOptions) (client.NetworkConnectResult, error)
	ImageInspect(ctx context.Context, image string, options ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageList(ctx context.Context, options client.ImageListOptions) (client.ImageListResult, error)
	ImageRemove(ctx context.Context, image string, options client.ImageRemoveOptions) (client.ImageRemoveResult, error)
	ImageImport(ctx context.Context, source client.ImageImportSource, ref string, options client.ImageImportOptions) (client.ImageImportResult, error)
	ClientVersion() string
}

// Errors callers branch on with errors.Is.
var (
	// ErrLocked: another moltctl run holds the project's lock (statefile.ErrLocked).
	ErrLocked = statefile.ErrLocked
	// ErrNoContainer: the service has no container, so there is nothing to preserve.
	ErrNoContainer = errors.New("the service has no container: nothing to preserve")
	// ErrUnsupported: a compose shape remount refuses before changing anything.
	ErrUnsupported = errors.New("not supported by remount")
	// ErrTooDeep: one more commit would pass the engine's layer limit; use Flatten.
	ErrTooDeep = errors.New("too many image layers")
	// ErrInterrupted: an interrupted remount's journal exists; resume or roll it back first.
	ErrInterrupted = errors.New("an interrupted remount must be resumed or rolled back first")
	// ErrNoJournal: Resume or Rollback found no interrupted remount.
	ErrNoJournal = errors.New("no interrupted remount")
	// ErrKeep: fewer than 2 snapshots to keep (Options.Keep): the running one and the previous one.
	ErrKeep = errors.New("must keep at least 2 (the running snapshot and the previous one)")
	// ErrRolledBack: a step failed and the service was restored (see StepError).
	ErrRolledBack = errors.New("remount rolled back")
)

// Labels remount puts on its snapshot images.
const (
	LabelProject   = "io.moltctl.snapshot.project"
	LabelService   = "io.moltctl.snapshot.service"
	LabelSource    = "io.moltctl.snapshot.source-container"
	LabelBaseImage = "io.moltctl.snapshot.base-image"
	// LabelBaseImageID is the base image's ID when the first snapshot of the lineage was made.
	LabelBaseImageID = "io.moltctl.snapshot.base-image-id"
	LabelParent      = "io.moltctl.snapshot.parent"
	LabelSeq         = "io.moltctl.snapshot.seq"
)

// DefaultMaxLayers is the deepest image remount commits onto (the engine refuses
// past about 125 layers).
const DefaultMaxLayers = 125

// DefaultWaitTimeout is how long the new container must stay running (or how long
// it has to turn healthy, when it has a healthcheck).
const DefaultWaitTimeout = 10 * time.Second

// Options select the service and tune a remount.
type Options struct {
	// Project is the loaded compose project (its CLI runs compose). Required.
	Project *compose.Project
	// Service is the compose service to remount. Required.
	Service string
	// Keep is how many snapshots of the service to keep, the running one
	// included. Default (0): 2, the running one and the previous one. Minimum 2.
	Keep int
	// Flatten exports the container's filesystem and imports it as a one-layer
	// image with the base image's config: drops baked env keys and labels and resets
	// the layer depth.
	Flatten bool
	// MaxLayers is the depth refused without Flatten. Default: DefaultMaxLayers.
	MaxLayers int
	// WaitTimeout: see DefaultWaitTimeout (the default when zero).
	WaitTimeout time.Duration
	// NoWait returns as soon as the new container started, without the check of
	// WaitTimeout: the caller checks it with Check (migrate remounts several
	// services one after the other and checks them together). A container that
	// fails later is then not rolled back by Run.
	NoWait bool
	// DryRun checks everything and returns the plan without changing anything.
	DryRun bool
	// Locked says the caller already holds the project's Lock.
	Locked bool
	// NoDependents: the caller stops, remounts and starts the services that
	// join this one itself (migrate does, for all of them, in Order). Without
	// it, Run remounts them too (see Run).
	NoDependents bool
	// done is called with the journal of a finished remount before the
	// journal is removed (a group remount records it for its rollback).
	done func(*journal) error
	// NoStart leaves the new container stopped (the caller starts it, once what
	// it joins runs).
	NoStart bool
	// keepConfig recreates the container with its own config instead of
	// compose's (rejoin).
	keepConfig bool
	// replicaName selects one replica of a scaled service; template is the
	// container compose made for the service's current config (runReplicas).
	replicaName string
	template    *container.InspectResponse
	// inGroup: a member of a group remount (runGroup), under its journal.
	inGroup bool
	// Progress, when set, receives the start of each step.
	Progress progress.Func
	// Rebase carries the writable layer onto the service's image when that
	// changed since the container was created (see rebase.go);
	// RebaseConflicts picks the side that wins at a conflicting path:
	// ConflictsImage (default) or ConflictsLayer.
	Rebase          bool
	RebaseConflicts string
}

// Result describes a finished remount (or, for Rollback, what was restored in Plan).
type Result struct {
	Service    string `json:"service"`
	Container  string `json:"container"` // container name
	OldID      string `json:"old_id"`
	NewID      string `json:"new_id,omitempty"`
	Snapshot   string `json:"snapshot"` // snapshot tag
	SnapshotID string `json:"snapshot_id,omitempty"`
	Parent     string `json:"parent,omitempty"` // previous snapshot tag, if any
	BaseImage  string `json:"base_image"`
	Layers     int    `json:"layers,omitempty"` // layers of the snapshot
	// Pruned lists snapshot tags removed by Keep.
	Pruned []string `json:"pruned,omitempty"`
	// LeftoverEnv and LeftoverLabels are the env keys and labels (keys only) the
	// snapshot carries that the compose config no longer sets: they persist in the
	// container until a Flatten.
	LeftoverEnv    []string `json:"leftover_env,omitempty"`
	LeftoverLabels []string `json:"leftover_labels,omitempty"`
	// Timings in nanoseconds in JSON: Commit is the commit (or flatten), Downtime
	// from stop to running again, Total end to end.
	Commit   time.Duration `json:"commit_ns"`
	Downtime time.Duration `json:"downtime_ns"`
	Total    time.Duration `json:"total_ns"`
	// Plan lists the steps (DryRun), or what a Rollback restored.
	Plan   []string `json:"plan,omitempty"`
	DryRun bool     `json:"dry_run,omitempty"`
	// Joined are the remounts of the services that join this one (Dependents),
	// in the order they were remounted.
	Joined []*Result `json:"joined,omitempty"`
	// Rebase: what a rebase carried (or, in a dry run, would carry) and its conflicts.
	Rebase *RebaseResult `json:"rebase,omitempty"`
	// Restored: the service had no container and was brought back on its latest
	// snapshot (moltctl snapshot's), with the compose file's current config.
	Restored bool `json:"restored,omitempty"`
}

// StepError is a remount step's failure; Restored says what was restored.
// It wraps Err, and ErrRolledBack when RolledBack. Pending, when rolling back
// failed too, is the service whose remount waits (journal kept) for Rollback.
type StepError struct {
	Step       string
	Err        error
	Restored   string
	RolledBack bool
	Pending    string
}

func (e *StepError) Error() string {
	if e.Restored == "" {
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("%s: %v; %s", e.Step, e.Err, e.Restored)
}

func (e *StepError) Unwrap() []error {
	if e.RolledBack {
		return []error{e.Err, ErrRolledBack}
	}
	return []error{e.Err}
}

type run struct {
	eng  Engine
	opts Options
	cli  *compose.CLI
	j    *journal
	t0   time.Time
	res  *Result
	// resumed: Resume runs (an engine restart may have stopped the clone).
	resumed bool
	// imageEntries caches a rebase's look-ups in the old and new images.
	imageEntries map[string]*fsEntry
}

func (o *Options) defaults() error {
	if o.Project == nil {
		return errors.New("no compose project")
	}
	if err := o.Project.CheckRereadable(); err != nil {
		return err
	}
	if o.Service == "" {
		return errors.New("no service given")
	}
	if o.Keep == 0 {
		o.Keep = 2
	}
	if o.Keep < 2 {
		return fmt.Errorf("keep %d snapshots: %w", o.Keep, ErrKeep)
	}
	if o.MaxLayers == 0 {
		o.MaxLayers = DefaultMaxLayers
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	return nil
}

// Run remounts opts.Service. It takes the project's lock unless opts.Locked. Before
// anything changes it refuses, with an error wrapping ErrNoContainer, ErrUnsupported,
// ErrTooDeep, ErrInterrupted, ErrLocked or compose.ErrNoCLI, what it can't do safely. A
// failing commit leaves the container as it was (started again if it was running);
// a failure after the commit rolls back and returns a *StepError wrapping
// ErrRolledBack and the cause.
//
// When other services join opts.Service (Dependents: a shared namespace,
// volumes_from, depends_on with restart: true) and opts.NoDependents is not set,
// they are stopped first, remounted after it in Order, each keeping its own
// writable layer and joined to the new container, and started again; a failure
// rolls all of them back (see the group journal, GroupJournalPath).
func Run(ctx context.Context, eng Engine, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if scaled, err := replicas(ctx, eng, opts); err != nil {
		return nil, err
	} else if scaled {
		return runReplicas(ctx, eng, opts)
	}
	if !opts.NoDependents {
		if deps := Dependents(opts.Project.Project, opts.Service); len(deps) > 0 {
			return runGroup(ctx, eng, opts, deps)
		}
	}
	return runOne(ctx, eng, opts)
}

// runOne remounts opts.Service alone.
func runOne(ctx context.Context, eng Engine, opts Options) (*Result, error) {
	unlock, err := lockUnless(ctx, eng, opts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r := &run{eng: eng, opts: opts, t0: time.Now(), res: &Result{Service: opts.Service, DryRun: opts.DryRun}}
	if j, err := readJournal(opts.Project.Name); err != nil {
		return nil, err
	} else if j != nil {
		return nil, interrupted(j)
	}
	if err := noGroup(opts); err != nil {
		return nil, err
	}
	if err := r.preflight(ctx); err != nil {
		// A service with no container comes back on its snapshot; a replica
		// gone meanwhile does not (compose's create would recreate the others).
		if errors.Is(err, ErrNoContainer) && opts.replicaName == "" {
			if res, ok, rerr := r.restoreLatest(ctx); ok || rerr != nil {
				return res, rerr
			}
		}
		return nil, err
	}
	if opts.DryRun {
		return r.res, nil
	}
	return r.forward(ctx)
}

// Resume finishes the interrupted remount of opts.Service from its journal. It
// returns an error wrapping ErrNoJournal when there is none; on failure it rolls
// back as Run does.
func Resume(ctx context.Context, eng Engine, opts Options) (*Result, error) {
	return recoverJournal(ctx, eng, opts, false)
}

// Rollback restores the service of the interrupted remount of opts.Service to its
// previous container (config and writable layer). It returns an error wrapping
// ErrNoJournal when there is none.
func Rollback(ctx context.Context, eng Engine, opts Options) (*Result, error) {
	return recoverJournal(ctx, eng, opts, true)
}

func lockUnless(ctx context.Context, eng Engine, opts Options) (func(), error) {
	if opts.Locked {
		return func() {}, nil
	}
	if opts.DryRun {
		return statefile.Lock(opts.Project.Name) // it changes nothing on the engine
	}
	return LockEngine(ctx, eng, opts.Project.Name)
}

func recoverJournal(ctx context.Context, eng Engine, opts Options, rollback bool) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	unlock, err := lockUnless(ctx, eng, opts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if g, err := readGroup(opts.Project.Name); err != nil {
		return nil, err
	} else if g != nil && !opts.inGroup && slices.Contains(g.Services, opts.Service) {
		opts.Locked = true
		return recoverGroup(ctx, eng, opts, g, rollback)
	}
	j, err := readJournal(opts.Project.Name)
	if err != nil {
		return nil, err
	}
	if j == nil || j.Service != opts.Service {
		return nil, fmt.Errorf("service %s of project %s: %w", opts.Service, opts.Project.Name, ErrNoJournal)
	}
	r := &run{eng: eng, opts: opts, j: j, t0: time.Now(), res: &Result{Service: opts.Service, DryRun: opts.DryRun,
		Container: j.OldName, OldID: j.OldID, Snapshot: j.SnapshotTag, SnapshotID: j.SnapshotID, Parent: j.Parent, BaseImage: j.BaseImage}}
	if opts.DryRun {
		if rollback {
			r.res.Plan = []string{"roll back from step " + j.Step}
		} else {
			r.res.Plan = []string{"resume after step " + j.Step}
		}
		return r.res, nil
	}
	if rollback {
		restored, err := r.rollback(ctx)
		if err != nil {
			return nil, fmt.Errorf("rolling back the remount of %s: %w (journal kept: %s)", opts.Service, err, JournalPath(j.Project))
		}
		r.res.Plan = []string{restored}
		r.res.NewID = r.res.OldID
		return r.res, nil
	}
	if r.cli, err = opts.Project.CLI(ctx); err != nil {
		return nil, err
	}
	r.resumed = true
	return r.forward(ctx)
}

// selectServices returns names sorted (a copy), or every service of p when
// names is empty. A name that is not an enabled service of p is an error.
func selectServices(p *compose.Project, names []string) ([]string, error) {
	if len(names) == 0 {
		return slices.Sorted(slices.Values(p.ServiceNames())), nil
	}
	for _, n := range names {
		if _, ok := p.Services[n]; ok {
			continue
		}
		if _, off := p.DisabledServices[n]; off {
			return nil, fmt.Errorf("service %s: its profile is not enabled", n)
		}
		return nil, fmt.Errorf("no service %s in project %s", n, p.Name)
	}
	return slices.Sorted(slices.Values(names)), nil
}

// preflight checks everything it can without changing anything and fills r.j
// and the plan: the service's container (oldContainer), its images
// (checkImages), the compose CLI and room for the journal.
func (r *run) preflight(ctx context.Context) error {
	c, err := r.oldContainer(ctx)
	if err != nil {
		return err
	}
	im, err := r.checkImages(ctx, c)
	if err != nil {
		return err
	}
	seq, err := r.nextSeq(ctx)
	if err != nil {
		return err
	}
	p := r.opts.Project
	if r.cli, err = p.CLI(ctx); err != nil {
		return err
	}
	// The journal (two container inspects) is written after the stop.
	if err := statefile.CheckRoom(statefile.ProjectDir(p.Name), 1<<20, 16); err != nil {
		return err
	}
	if err := r.newJournal(c, im, seq); err != nil {
		return err
	}
	r.plan(im)
	if im.rebase {
		return r.preflightRebase(ctx, c, im.lineage)
	}
	return nil
}

// oldContainer returns the inspect of the service's container (of the
// replica remounted), refusing a service without one (ErrNoContainer) and a
// container restarting or paused.
func (r *run) oldContainer(ctx context.Context) (container.InspectResponse, error) {
	p, name := r.opts.Project, r.opts.Service
	if _, err := selectServices(p, []string{name}); err != nil {
		return container.InspectResponse{}, err
	}
	cs, err := compose.ServiceContainers(ctx, r.eng, p.Name, name)
	if err != nil {
		return container.InspectResponse{}, err
	}
	if len(cs) == 0 {
		return container.InspectResponse{}, fmt.Errorf("service %s: %w", name, ErrNoContainer)
	}
	if cs, err = r.replica(cs); err != nil {
		return container.InspectResponse{}, err
	}
	old, err := r.eng.ContainerInspect(ctx, cs[0].ID, client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspecting container %s: %w", cs[0].ID, err)
	}
	c := old.Container
	if c.State != nil && (c.State.Restarting || c.State.Paused) {
		return container.InspectResponse{}, fmt.Errorf("container %s is %s: %w; wait until it runs or stops", strings.TrimPrefix(c.Name, "/"), c.State.Status, ErrUnsupported)
	}
	return c, nil
}

// images is what preflight learns of the images of the service and of its container.
type images struct {
	base    string // the service's image reference
	baseID  string
	lineage string // the image the writable layer sits on
	rebase  bool   // the layer moves onto base (Options.Rebase)
	layers  int    // of the container's image
	parent  string // the snapshot the container runs on, "" for none
}

// checkImages refuses a container whose writable layer can't be moved onto
// the service's image: it sits on the files of the image the container was
// created from (unless Options.Rebase), and the engine refuses images past
// Options.MaxLayers (unless Options.Flatten).
func (r *run) checkImages(ctx context.Context, c container.InspectResponse) (images, error) {
	p, name := r.opts.Project, r.opts.Service
	im := images{base: p.Services[name].Image}
	if im.base == "" {
		im.base = p.Name + "-" + name // compose's default image name for build: services
	}
	baseIm, err := r.eng.ImageInspect(ctx, im.base)
	if err != nil {
		return im, fmt.Errorf("inspecting the service's image %s: %w", im.base, err)
	}
	im.baseID = baseIm.ID
	cur, err := r.eng.ImageInspect(ctx, c.Image)
	if err != nil {
		return im, fmt.Errorf("inspecting the image of container %s: %w", strings.TrimPrefix(c.Name, "/"), err)
	}
	im.lineage = c.Image
	if cur.Config != nil && cur.Config.Labels[LabelService] != "" {
		im.lineage = cur.Config.Labels[LabelBaseImageID] // "" for snapshots that predate the label
	}
	im.rebase = im.lineage != baseIm.ID && r.opts.Rebase
	if im.lineage != "" && im.lineage != baseIm.ID && !im.rebase {
		return im, fmt.Errorf("the image of service %s (%s) changed since container %s was created from it: %w: %w; its writable layer sits on the old image's files. Set image: back, or recreate with docker compose up (the writable layer is lost)",
			name, im.base, strings.TrimPrefix(c.Name, "/"), ErrImageChanged, ErrUnsupported)
	}
	im.layers = len(cur.RootFS.Layers)
	if !r.opts.Flatten && im.layers+1 > r.opts.MaxLayers {
		return im, fmt.Errorf("container %s runs an image of %d layers and the engine refuses more than %d: %w",
			strings.TrimPrefix(c.Name, "/"), im.layers, r.opts.MaxLayers, ErrTooDeep)
	}
	if cur.Config != nil && cur.Config.Labels[LabelService] == name && cur.Config.Labels[LabelProject] == p.Name {
		im.parent = firstTag(cur.RepoTags)
		if im.parent == "" {
			im.parent = cur.ID
		}
	}
	return im, nil
}

// newJournal fills r.j (not written yet) for the remount of container c as
// snapshot number seq.
func (r *run) newJournal(c container.InspectResponse, im images, seq int) error {
	p, name := r.opts.Project, r.opts.Service
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("recording container %s: %w", c.ID, err)
	}
	r.j = &journal{
		Version: 1, Project: p.Name, Service: name, Started: time.Now().UTC(), Flatten: r.opts.Flatten,
		OldID: c.ID, OldName: strings.TrimPrefix(c.Name, "/"), Running: c.State != nil && c.State.Running,
		Old: raw, BaseImage: im.base, BaseImageID: im.baseID, Parent: im.parent, Seq: seq, SnapshotTag: snapshotTag(p.Name, name, seq),
	}
	if r.opts.template != nil {
		if r.j.New, err = json.Marshal(replicaTemplate(*r.opts.template, c)); err != nil {
			return fmt.Errorf("recording the template of %s: %w", r.j.OldName, err)
		}
		r.j.Replica = r.j.OldName
	}
	return nil
}

// plan fills the result's names and the plan a dry run shows.
func (r *run) plan(im images) {
	name := r.opts.Service
	r.res.Container, r.res.OldID, r.res.Snapshot, r.res.Parent, r.res.BaseImage = r.j.OldName, r.j.OldID, r.j.SnapshotTag, im.parent, im.base
	how := "commit (pause=false)"
	if r.opts.Flatten {
		how = "export and import as one layer (--flatten)"
	}
	r.res.Plan = []string{
		fmt.Sprintf("stop %s (stop_signal and stop_grace_period of its config)", r.j.OldName),
		fmt.Sprintf("%s its writable layer to %s (base %s, %d layers now)", how, r.j.SnapshotTag, im.base, im.layers),
		fmt.Sprintf("docker compose up --no-start --no-deps --force-recreate %s", name),
		fmt.Sprintf("clone compose's container onto %s as %s, start it, wait up to %s", r.j.SnapshotTag, r.j.OldName, r.opts.WaitTimeout),
		fmt.Sprintf("keep %d snapshots of %s", r.opts.Keep, name),
	}
}

func firstTag(tags []string) string {
	for _, t := range tags {
		if t != "<none>:<none>" {
			return t
		}
	}
	return ""
}

// forwardSteps is the remount's step table: in order, the journal steps at
// which each method runs (a method may skip itself on its own condition);
// each journals the step it reaches (record). A failure before the commit
// aborts (abort), after it rolls back (fail).
var forwardSteps = []struct {
	at  []string
	run func(*run, context.Context) error
}{
	{[]string{""}, (*run).begin},
	{[]string{stepBegun}, (*run).stopOld},
	{[]string{stepStopped}, (*run).snapshotOld},
	{[]string{stepCommitted}, (*run).rebaseOnto},
	{[]string{stepCommitted}, (*run).keepTemplate},
	{[]string{stepCommitted, stepComposing}, (*run).composeNew},
	{[]string{stepComposed}, (*run).removeNew},
	{[]string{stepNewRemoved}, (*run).createClone},
	{[]string{stepCreated}, (*run).startClone},
	{[]string{stepStarted}, (*run).restartClone},
	{[]string{stepStarted}, (*run).checkClone},
}

// forward runs the remount from the journal's step to the end, then
// finishes it.
func (r *run) forward(ctx context.Context) (*Result, error) {
	for _, s := range forwardSteps {
		if slices.Contains(s.at, r.j.Step) {
			if err := s.run(r, ctx); err != nil {
				return nil, err
			}
		}
	}
	return r.finish(ctx)
}

// record journals step; a failed write returns the error as it is before
// anything changed (stepBegun), aborts before the commit and rolls back after.
func (r *run) record(ctx context.Context, step string) error {
	err := r.j.save(step)
	switch {
	case err == nil:
		return nil
	case step == stepBegun:
		return err
	case step == stepStopped:
		return r.abort(ctx, "journal", err)
	default:
		return r.fail(ctx, "journal", err)
	}
}

// begin journals the remount before anything changes.
func (r *run) begin(ctx context.Context) error {
	r.j.KeepConfig = r.opts.keepConfig
	return r.record(ctx, stepBegun)
}

// stopOld stops the old container.
func (r *run) stopOld(ctx context.Context) error {
	r.opts.Progress.Emit(progress.Event{Step: progress.Stop, Target: r.j.OldName})
	if err := r.stop(ctx); err != nil {
		return r.abort(ctx, "stopping "+r.j.OldName, err)
	}
	return r.record(ctx, stepStopped)
}

// snapshotOld commits the old container's writable layer to the snapshot.
func (r *run) snapshotOld(ctx context.Context) error {
	j := r.j
	r.opts.Progress.Emit(progress.Event{Step: progress.Commit, Target: j.SnapshotTag, Source: j.OldName})
	t := time.Now()
	if err := r.snapshot(ctx); err != nil {
		return r.abort(ctx, "committing "+j.OldName, err)
	}
	r.res.Commit = time.Since(t)
	return r.record(ctx, stepCommitted)
}

// rebaseOnto carries the snapshot's layer onto the service's new image
// (Options.Rebase), once.
func (r *run) rebaseOnto(ctx context.Context) error {
	j := r.j
	if j.Rebase == nil || j.Rebase.ID != "" {
		return nil
	}
	r.opts.Progress.Emit(progress.Event{Step: progress.Rebase, Target: j.Rebase.Tag})
	if err := r.rebaseLayer(ctx); err != nil {
		return r.fail(ctx, "rebasing the writable layer onto "+j.BaseImage, err)
	}
	return r.record(ctx, stepCommitted)
}

// keepTemplate takes the template of the clone without compose: the old
// container itself (Rejoin), or of a replica the template compose made for
// the service (journaled at the start).
func (r *run) keepTemplate(ctx context.Context) error {
	j := r.j
	if !j.KeepConfig && j.Replica == "" {
		return nil
	}
	if j.Replica == "" {
		j.New = j.Old
	}
	return r.record(ctx, stepComposed)
}

// composeNew has compose create the service's container with the new config
// (it replaces the old one) and journals its inspect, the clone's template.
func (r *run) composeNew(ctx context.Context) error {
	j := r.j
	if err := r.record(ctx, stepComposing); err != nil {
		return err
	}
	r.opts.Progress.Emit(progress.Event{Step: progress.Compose, Command: []string{"up", "--no-start", j.Service}})
	if err := r.cli.Create(ctx, j.Service); err != nil {
		return r.fail(ctx, "creating the container with docker compose", err)
	}
	cs, err := compose.ServiceContainers(ctx, r.eng, j.Project, j.Service)
	if err != nil {
		return r.fail(ctx, "finding compose's container", err)
	}
	if len(cs) != 1 {
		return r.fail(ctx, "finding compose's container", fmt.Errorf("got %d containers of service %s, want 1", len(cs), j.Service))
	}
	ins, err := r.eng.ContainerInspect(ctx, cs[0].ID, client.ContainerInspectOptions{})
	if err != nil {
		return r.fail(ctx, "inspecting compose's container", err)
	}
	if j.New, err = json.Marshal(ins.Container); err != nil {
		return r.fail(ctx, "inspecting compose's container", err)
	}
	return r.record(ctx, stepComposed)
}

// template returns the clone's template (journal.New).
func (r *run) template(ctx context.Context) (container.InspectResponse, error) {
	var t container.InspectResponse
	if err := json.Unmarshal(r.j.New, &t); err != nil {
		return t, r.fail(ctx, "reading the journal", err)
	}
	return t, nil
}

// removeNew removes compose's container (its volumes kept): the clone takes its name.
func (r *run) removeNew(ctx context.Context) error {
	t, err := r.template(ctx)
	if err != nil {
		return err
	}
	r.opts.Progress.Emit(progress.Event{Step: progress.Swap, Target: strings.TrimPrefix(t.Name, "/")})
	if err := r.removeContainer(ctx, t.ID); err != nil {
		return r.fail(ctx, "removing compose's container", err)
	}
	return r.record(ctx, stepNewRemoved)
}

// createClone creates the clone of the template on the snapshot under the
// final name; a crash after the create but before the journal write left
// it: it is reused.
func (r *run) createClone(ctx context.Context) error {
	t, err := r.template(ctx)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(t.Name, "/")
	tag, imgID := r.cloneImage()
	if id, img := r.existingImage(ctx, name); id != "" {
		if img != imgID {
			return r.fail(ctx, "creating the container on the snapshot", fmt.Errorf("a container %s not made by this remount exists", name))
		}
		r.j.CloneID = id
	} else {
		id, err := r.clone(ctx, t, tag)
		if err != nil {
			return r.fail(ctx, "creating the container on the snapshot", err)
		}
		r.j.CloneID = id
	}
	return r.record(ctx, stepCreated)
}

// startClone starts the clone (unless Options.NoStart).
func (r *run) startClone(ctx context.Context) error {
	j := r.j
	if r.opts.NoStart {
		return nil
	}
	r.opts.Progress.Emit(progress.Event{Step: progress.Start, Target: j.OldName})
	if _, err := r.eng.ContainerStart(ctx, j.CloneID, client.ContainerStartOptions{}); err != nil {
		return r.fail(ctx, "starting the new container", err)
	}
	if !j.StoppedAt.IsZero() {
		r.res.Downtime = time.Since(j.StoppedAt)
	}
	return r.record(ctx, stepStarted)
}

// restartClone starts the clone again on Resume: an engine restart may have
// stopped it since.
func (r *run) restartClone(ctx context.Context) error {
	if !r.resumed {
		return nil
	}
	if err := r.startIfStopped(ctx, r.j.CloneID); err != nil {
		return r.fail(ctx, "starting the new container again", err)
	}
	return nil
}

// checkClone waits for the clone to keep running or turn healthy (unless
// Options.NoWait or NoStart).
func (r *run) checkClone(ctx context.Context) error {
	if r.opts.NoWait || r.opts.NoStart {
		return nil
	}
	r.opts.Progress.Emit(progress.Event{Step: progress.Wait, Timeout: r.opts.WaitTimeout})
	if err := Check(ctx, r.eng, r.j.CloneID, r.opts.WaitTimeout); err != nil {
		return r.fail(ctx, "checking the new container", err)
	}
	return nil
}

// finish does the bookkeeping of a remount that stands: the caller's done
// hook, the journal removed, leftovers and old snapshots pruned.
func (r *run) finish(ctx context.Context) (*Result, error) {
	j := r.j
	if r.opts.done != nil {
		if err := r.opts.done(j); err != nil {
			return nil, err
		}
	}
	if err := j.remove(); err != nil {
		return nil, err
	}
	r.res.NewID = j.CloneID
	r.res.SnapshotID = j.SnapshotID
	r.leftovers(ctx)
	r.res.Pruned = r.prune(ctx)
	r.res.Total = time.Since(r.t0)
	return r.res, nil
}

func (r *run) stop(ctx context.Context) error {
	if !r.j.Running {
		r.j.StoppedAt = time.Now()
		return nil
	}
	var old container.InspectResponse
	json.Unmarshal(r.j.Old, &old)
	opts := client.ContainerStopOptions{}
	if old.Config != nil && old.Config.StopSignal != "" {
		opts.Signal = old.Config.StopSignal
	}
	// Timeout nil: the engine uses the container's StopTimeout (stop_grace_period).
	r.j.StoppedAt = time.Now()
	if _, err := r.eng.ContainerStop(ctx, r.j.OldID, opts); err != nil {
		return err
	}
	return nil
}

// abort handles a failure before anything was removed: start the old container
// again if it was running, drop the snapshot if one was made, drop the journal.
func (r *run) abort(ctx context.Context, step string, cause error) error {
	// The undo runs to its end even when ctx was cancelled (Ctrl-C).
	ctx = context.WithoutCancel(ctx)
	restored := "the container was left as it was"
	if r.j.Running {
		if _, err := r.eng.ContainerStart(ctx, r.j.OldID, client.ContainerStartOptions{}); err != nil {
			return &StepError{Step: step, Err: cause, Restored: fmt.Sprintf("starting %s again failed too: %v (journal kept: %s)", r.j.OldName, err, JournalPath(r.j.Project))}
		}
		restored = "the container was left as it was and started again"
	}
	r.j.remove()
	return &StepError{Step: step, Err: cause, Restored: restored}
}

// fail rolls back after a failure past the commit.
func (r *run) fail(ctx context.Context, step string, cause error) error {
	ctx = context.WithoutCancel(ctx) // as in abort
	restored, err := r.rollback(ctx)
	if err != nil {
		return &StepError{Step: step, Err: cause, Restored: fmt.Sprintf("rolling back failed too: %v (journal kept: %s)", err, JournalPath(r.j.Project)), Pending: r.j.Service}
	}
	return &StepError{Step: step, Err: cause, Restored: restored, RolledBack: true}
}

func (r *run) existingImage(ctx context.Context, name string) (id, image string) {
	ins, err := r.eng.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return "", ""
	}
	return ins.Container.ID, ins.Container.Image
}

func (r *run) existing(ctx context.Context, name string) string {
	ins, err := r.eng.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return ""
	}
	return ins.Container.ID
}

func (r *run) removeContainer(ctx context.Context, id string) error {
	_, err := r.eng.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	if err != nil && isNotFound(err) {
		return nil
	}
	return err
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// rollback puts the service back on its previous container: the old container
// itself while it exists, else a container with the old config on the snapshot
// (which holds the old writable layer). It returns what it restored.
func (r *run) rollback(ctx context.Context) (string, error) {
	j := r.j
	r.opts.Progress.Emit(progress.Event{Step: progress.Rollback, Target: j.OldName})
	var old container.InspectResponse
	if err := json.Unmarshal(j.Old, &old); err != nil {
		return "", fmt.Errorf("reading the journal: %w", err)
	}
	cs, err := compose.ServiceContainers(ctx, r.eng, j.Project, j.Service)
	if err != nil {
		return "", err
	}
	// compose may have renamed the old container to <id>_<name> while
	// replacing it: it still counts, unless it is Dead or being removed (an
	// engine killed while compose removed it): then only the snapshot holds its layer.
	oldExists, err := r.restorable(ctx, j.OldID)
	if err != nil {
		return "", err
	}
	if !oldExists {
		// Checked before anything is removed: the snapshot must hold the layer.
		if j.SnapshotID == "" {
			return "", fmt.Errorf("container %s can't be restored and no snapshot was recorded", j.OldName)
		}
		if _, err := r.eng.ImageInspect(ctx, j.SnapshotID); err != nil {
			return "", fmt.Errorf("container %s can't be restored and its snapshot %s: %w", j.OldName, j.SnapshotTag, err)
		}
	}
	// Remove every other container of the service (compose's, the clone), keeping
	// volumes; of a replica, only those under its name (the other replicas serve).
	for _, c := range cs {
		if j.Replica != "" && !slices.Contains(c.Names, "/"+j.Replica) {
			continue
		}
		if c.ID != j.OldID || !oldExists {
			if err := r.removeContainer(ctx, c.ID); err != nil {
				return "", fmt.Errorf("removing container %s: %w", c.ID, err)
			}
		}
	}
	id, restored, err := r.restoreOld(ctx, old, oldExists)
	if err != nil {
		return "", err
	}
	if j.Running {
		if _, err := r.eng.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			return "", fmt.Errorf("starting %s: %w", j.OldName, err)
		}
	} else {
		restored += " (stopped, as it was)"
	}
	// The snapshot goes only once the old container itself is back (and runs
	// when it ran): until then it may be the only copy of the layer.
	if oldExists && j.SnapshotID != "" {
		r.eng.ImageRemove(ctx, j.SnapshotID, client.ImageRemoveOptions{})
	}
	// The rebased image carries the snapshot labels: left behind, it would be
	// the latest snapshot a later restore brings the service back on.
	if j.Rebase != nil && j.Rebase.ID != "" {
		r.eng.ImageRemove(ctx, j.Rebase.ID, client.ImageRemoveOptions{})
	}
	if err := j.remove(); err != nil {
		return "", err
	}
	return restored, nil
}

// restoreOld puts the old container back under its name: itself while it
// exists (oldExists), else a container with its config (old) on the
// snapshot. It returns its ID and what it restored.
func (r *run) restoreOld(ctx context.Context, old container.InspectResponse, oldExists bool) (id, restored string, err error) {
	j := r.j
	if oldExists {
		id = j.OldID
		ins, err := r.eng.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return "", "", fmt.Errorf("inspecting container %s: %w", j.OldName, err)
		}
		if strings.TrimPrefix(ins.Container.Name, "/") != j.OldName {
			if _, err := r.eng.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: j.OldName}); err != nil {
				return "", "", fmt.Errorf("renaming container %s back to %s: %w", id, j.OldName, err)
			}
		}
		return id, fmt.Sprintf("rolled back: %s is its previous container (%.12s) again", j.OldName, id), nil
	}
	if cur := r.existing(ctx, j.OldName); cur != "" {
		if err := r.removeContainer(ctx, cur); err != nil {
			return "", "", fmt.Errorf("removing container %s: %w", cur, err)
		}
	}
	id, err = r.clone(ctx, old, j.SnapshotTag)
	if err != nil {
		return "", "", fmt.Errorf("recreating %s with its previous config on %s: %w", j.OldName, j.SnapshotTag, err)
	}
	return id, fmt.Sprintf("rolled back: %s runs its previous config and writable layer again (container %.12s on snapshot %s)", j.OldName, id, j.SnapshotTag), nil
}

// Check checks a started container: with a healthcheck it must turn healthy
// within timeout (default DefaultWaitTimeout); without one it must keep
// running for timeout. The error says how it failed (exited with its code,
// unhealthy, still starting).
func Check(ctx context.Context, eng interface {
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}, id string, timeout time.Duration) error {
	if timeout == 0 {
		timeout = DefaultWaitTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		ins, err := eng.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		st := ins.Container.State
		if st == nil || !st.Running {
			code := 0
			if st != nil {
				code = st.ExitCode
			}
			return fmt.Errorf("the new container exited (code %d)", code)
		}
		if st.Health != nil {
			switch st.Health.Status {
			case container.Healthy:
				return nil
			case container.Unhealthy:
				return errors.New("the new container turned unhealthy")
			}
		}
		if time.Now().After(deadline) {
			if st.Health != nil && st.Health.Status != container.Healthy {
				return fmt.Errorf("the new container is still %s after %s", st.Health.Status, timeout)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// clone creates a container with t's config, host config and networks on image,
// under t's name. Anonymous volumes of t are mounted by name so their data stays.
func (r *run) clone(ctx context.Context, t container.InspectResponse, image string) (string, error) {
	cfg := *t.Config
	cfg.Image = image
	if len(t.ID) >= 12 && cfg.Hostname == t.ID[:12] {
		cfg.Hostname = "" // the engine's default (the container's short ID), not a setting
	}
	hc := *t.HostConfig
	hc.Mounts = cloneMounts(t)
	nc, eps, later := r.cloneNetworks(t, hc.NetworkMode)
	sharedNamespace(&cfg, &hc)
	if err := r.rejoinModes(ctx, cfg.Labels, &hc); err != nil {
		return "", err
	}
	res, err := r.eng.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: strings.TrimPrefix(t.Name, "/"), Config: &cfg, HostConfig: &hc, NetworkingConfig: nc,
	})
	if err != nil {
		return "", err
	}
	for _, n := range later {
		if _, err := r.eng.NetworkConnect(ctx, n, client.NetworkConnectOptions{Container: res.ID, EndpointConfig: eps[n]}); err != nil {
			r.removeContainer(ctx, res.ID)
			return "", fmt.Errorf("connecting to network %s: %w", n, err)
		}
	}
	return res.ID, nil
}

// cloneMounts are t's mounts with its anonymous volumes named, so that the
// clone mounts the same volumes.
func cloneMounts(t container.InspectResponse) []mountT {
	mounts := append([]mountT(nil), t.HostConfig.Mounts...)
	named := map[string]string{}
	for _, m := range t.Mounts {
		if m.Type == "volume" && m.Name != "" {
			named[m.Destination] = m.Name
		}
	}
	covered := map[string]bool{}
	for i, m := range mounts {
		covered[m.Target] = true
		if m.Type == "volume" && m.Source == "" && named[m.Target] != "" {
			mounts[i].Source = named[m.Target]
		}
	}
	for _, b := range t.HostConfig.Binds {
		parts := strings.Split(b, ":")
		if len(parts) >= 2 {
			covered[parts[1]] = true
		}
	}
	var dests []string
	for d := range named {
		if !covered[d] {
			dests = append(dests, d)
		}
	}
	sort.Strings(dests)
	for _, d := range dests {
		mounts = append(mounts, mountT{Type: "volume", Source: named[d], Target: d})
	}
	return mounts
}

// cloneNetworks returns t's endpoints: those of the create call (the primary
// network; all of them from API 1.44), every endpoint by network, and the
// networks connected after the create (below API 1.44).
func (r *run) cloneNetworks(t container.InspectResponse, mode container.NetworkMode) (nc *network.NetworkingConfig, eps map[string]*network.EndpointSettings, later []string) {
	eps = map[string]*network.EndpointSettings{}
	var names []string
	if t.NetworkSettings != nil {
		for n, ep := range t.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			e := &network.EndpointSettings{IPAMConfig: ep.IPAMConfig, Links: ep.Links, DriverOpts: ep.DriverOpts, GwPriority: ep.GwPriority}
			if apiAtLeast(r.eng.ClientVersion(), 1, 44) {
				e.MacAddress = ep.MacAddress // per endpoint from API 1.44; below, Config.MacAddress carries it
			}
			for _, a := range ep.Aliases {
				if len(t.ID) >= 12 && a == t.ID[:12] {
					continue // the engine's own short-ID alias
				}
				e.Aliases = append(e.Aliases, a)
			}
			eps[n] = e
			names = append(names, n)
		}
	}
	sort.Strings(names)
	nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	multi := apiAtLeast(r.eng.ClientVersion(), 1, 44)
	for _, n := range names {
		if multi || n == string(mode) || len(names) == 1 {
			nc.EndpointsConfig[n] = eps[n]
		} else {
			later = append(later, n)
		}
	}
	if len(nc.EndpointsConfig) == 0 && len(later) > 0 {
		nc.EndpointsConfig[later[0]] = eps[later[0]]
		later = later[1:]
	}
	if mode.IsContainer() {
		return nil, eps, nil
	}
	return nc, eps, later
}

// apiAtLeast compares a negotiated API version "1.41" with major.minor.
func apiAtLeast(v string, major, minor int) bool {
	var a, b int
	if _, err := fmt.Sscanf(v, "%d.%d", &a, &b); err != nil {
		return false
	}
	return a > major || (a == major && b >= minor)
}

// restorable reports whether container id exists and can be put back: not
// Dead and not being removed (a container the engine was removing when it died
// comes back Dead and can't be started).
func (r *run) restorable(ctx context.Context, id string) (bool, error) {
	ins, err := r.eng.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspecting container %.12s: %w", id, err)
	}
	st := ins.Container.State
	return st == nil || (!st.Dead && st.Status != container.StateDead && st.Status != container.StateRemoving), nil
}

// startIfStopped starts container id unless it runs.
func (r *run) startIfStopped(ctx context.Context, id string) error {
	ins, err := r.eng.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	if st := ins.Container.State; st != nil && st.Running {
		return nil
	}
	_, err = r.eng.ContainerStart(ctx, id, client.ContainerStartOptions{})
	return err
}
