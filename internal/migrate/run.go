package migrate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/volumes"
)

// Errors Run, Resume and Rollback return for callers to branch on with errors.Is.
var (
	// ErrInterrupted: an interrupted migration's journal exists; resume or roll it back first.
	ErrInterrupted = errors.New("an interrupted migration must be resumed or rolled back first")
	// ErrNoJournal: Resume or Rollback found no migration to finish or undo.
	ErrNoJournal = errors.New("no migration to resume or roll back")
	// ErrAborted: the migration stopped before the compose files changed and put
	// everything back (services started again on their binds, new volumes removed).
	ErrAborted = errors.New("migration aborted, nothing changed")
)

// RunEngine is the part of the Docker Engine API a migration uses: planning,
// the volume copy engine and remount. *client.Client implements it.
type RunEngine interface {
	Engine
	volumes.Engine
	remount.Engine
}

// RunOptions describe a migration.
type RunOptions struct {
	// Project is the loaded compose project (reloaded after the rewrite; its
	// CLI runs compose). Required.
	Project *compose.Project
	// Plan tunes the plan (services, owner, volume names); Run only.
	Plan PlanOptions
	// KeepOwner keeps the sources' numeric owners instead of the planned owner.
	KeepOwner bool
	// VerifyFull hashes every file in the verification (default: only what the delta touched).
	VerifyFull bool
	// Helper chooses the helper binary (default: the running executable, which must be static).
	Helper volumes.HelperOptions
	// WaitTimeout is how long each remounted container must keep running
	// (default remount.DefaultWaitTimeout).
	WaitTimeout time.Duration
	// CopyBack (Rollback only) copies the volumes the services wrote to back
	// into their bind directories (volumes.CopyBack), keeping each directory's
	// previous content beside it; default false: the data stays in the volumes.
	CopyBack bool
	// Progress, when set, receives the start of each step and the copies'
	// running totals and ends; never concurrently, though the delta and
	// verify steps run the volumes side by side (each of those in a Group,
	// reporting its end).
	Progress progress.Func
}

// VolumeReport is what happened to one volume.
type VolumeReport struct {
	Name   string                `json:"name"`
	Source string                `json:"source"`
	Owner  string                `json:"owner"`
	Full   *volumes.CopyResult   `json:"full,omitempty"`
	Delta  *volumes.CopyResult   `json:"delta,omitempty"`
	Verify *volumes.VerifyReport `json:"verify,omitempty"`
}

// Report is the result of Run, Resume and Rollback.
type Report struct {
	Project string `json:"project"`
	// Nothing: the plan found nothing to convert (e.g. after a successful migration).
	Nothing bool           `json:"nothing,omitempty"`
	Volumes []VolumeReport `json:"volumes,omitempty"`
	// Services were remounted onto their volumes (Rollback: back onto their binds).
	Services []string `json:"services,omitempty"`
	// Skipped services have no container: `docker compose up` creates them.
	Skipped []string `json:"skipped,omitempty"`
	Files   []string `json:"files,omitempty"` // compose files rewritten (or restored)
	// Downtime: from the stop of the services to the last one running again (ns in JSON).
	Downtime time.Duration `json:"downtime_ns"`
	Total    time.Duration `json:"total_ns"`
	// RolledBack: Rollback ran. Warnings: what the caller should know.
	RolledBack bool     `json:"rolled_back,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
}

var steps = []string{StepPlanned, StepCreated, StepCopied, StepStopping, StepStopped, StepDelta, StepVerified, StepApplied, StepRemounted, StepDone}

func stepIndex(s string) int { return slices.Index(steps, s) }

type runner struct {
	mu   sync.Mutex // serializes opts.Progress
	eng  RunEngine
	opts RunOptions
	j    *journal
	rep  *Report
	t0   time.Time
	// resumeCurrent: the service whose remount was interrupted (Resume).
	resumeCurrent string
	// resuming: Resume runs; a compose file changed since the plan is then
	// refused (the journal stays) instead of aborting the migration.
	resuming bool
}

// parallel is how many volumes the delta and verify steps handle at once.
const parallel = 4

// each runs fn for every conversion, up to parallel at once, and returns the
// first error (the others are cancelled through ctx and waited for).
func (r *runner) each(ctx context.Context, fn func(ctx context.Context, i int, c Conversion) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, c := range r.j.Conversions {
		g.Go(func() error { return fn(ctx, i, c) })
	}
	return g.Wait()
}

// emit calls opts.Progress, never concurrently.
func (r *runner) emit(e progress.Event) {
	if r.opts.Progress != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.opts.Progress(e)
	}
}

// Run migrates the project's host directory bind mounts into named volumes:
// plan, create the volumes, copy while the services run, stop them, copy what
// changed, verify, rewrite the compose files, remount every affected service,
// finish the volumes and remove the helper image. It holds the project's lock
// throughout and journals every step (JournalPath) so that an interruption is
// finished by Resume or undone by Rollback. A plan with nothing to convert gives
// a Report with Nothing set. A verification failure aborts before the compose
// files change (error wrapping ErrAborted and volumes.ErrMismatch). Errors wrap
// ErrInterrupted when an interrupted migration exists, remount.ErrLocked when
// another run holds the lock.
func Run(ctx context.Context, eng RunEngine, opts RunOptions) (*Report, error) {
	project := opts.Project
	if err := project.CheckRereadable(); err != nil {
		return nil, err
	}
	unlock, err := remount.LockEngine(ctx, eng, project.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	old, err := readJournal(project.Name)
	if err != nil {
		return nil, err
	}
	if old != nil && old.Step != StepDone {
		return nil, fmt.Errorf("project %s (step %s): %w", project.Name, old.Step, ErrInterrupted)
	}
	planOpts := opts.Plan
	planOpts.Helper, planOpts.KeepHelper = opts.Helper, true // the copy needs it next
	// Until the journal holds the run, the helper image imported to inspect
	// the sources goes again when the run ends (best effort).
	journaled := false
	defer func() {
		if !journaled {
			volumes.RemoveHelper(context.WithoutCancel(ctx), eng, opts.Helper)
		}
	}()
	plan, err := Prepare(ctx, eng, project, planOpts)
	if err != nil {
		return nil, err
	}
	r := &runner{eng: eng, opts: opts, rep: &Report{Project: project.Name}, t0: time.Now()}
	if len(plan.Conversions) == 0 {
		r.rep.Nothing = true
		return r.rep, nil
	}
	if err := r.checkInactive(ctx, project.Name, plan.Inactive); err != nil {
		return nil, err
	}
	if err := preflight(ctx, eng, plan, opts.Helper); err != nil {
		return nil, err
	}
	// The services that join one of them (a shared namespace, volumes_from)
	// are stopped and recreated with them, after what they join.
	plan.Services = remount.WithDependents(project.Project, plan.Services)
	if err := r.checkReplicas(ctx, project.Name, plan.Services, project.Services); err != nil {
		return nil, err
	}
	id := make([]byte, 8)
	rand.Read(id)
	j := &journal{ID: hex.EncodeToString(id), Project: project.Name, Conversions: plan.Conversions,
		Services: plan.Services, StartedAt: time.Now()}
	for _, e := range plan.Edits {
		j.Edits = append(j.Edits, fileEdit{Path: e.Path, Old: e.Old, New: e.New, OldSHA256: sum(e.Old), NewSHA256: sum(e.New)})
	}
	r.j = j
	// Checked before anything changes: the files can be replaced, and which
	// services run (an engine restart before the stop must not lose that).
	if err := r.checkFiles(); err != nil {
		return nil, err
	}
	if err := r.checkJournalRoom(); err != nil {
		return nil, err
	}
	if j.Running, err = r.runningServices(ctx, j.Services); err != nil {
		return nil, err
	}
	if err := j.save(StepPlanned); err != nil {
		return nil, err
	}
	journaled = true
	r.emit(progress.Event{Step: progress.Plan, Count: len(j.Conversions), Targets: j.Services})
	return r.forwardNoted(ctx)
}

// Resume finishes the interrupted migration of the project from its journal's
// step. It returns an error wrapping ErrNoJournal when there is none, and one
// wrapping compose.ErrChanged when a compose file changed since the plan
// (nothing is written then; fix the file or Rollback).
func Resume(ctx context.Context, eng RunEngine, opts RunOptions) (*Report, error) {
	r, unlock, err := open(ctx, eng, opts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if r.j.Step == StepDone {
		return nil, fmt.Errorf("project %s: the last migration completed: %w", r.j.Project, ErrNoJournal)
	}
	r.resumeCurrent = r.j.Current
	r.resuming = true
	r.emit(progress.Event{Step: progress.Resume, From: r.j.Step})
	return r.forwardNoted(ctx)
}

func open(ctx context.Context, eng RunEngine, opts RunOptions) (*runner, func(), error) {
	project := opts.Project
	if err := project.CheckRereadable(); err != nil {
		return nil, nil, err
	}
	unlock, err := remount.LockEngine(ctx, eng, project.Name)
	if err != nil {
		return nil, nil, err
	}
	j, err := readJournal(project.Name)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if j == nil {
		unlock()
		return nil, nil, fmt.Errorf("project %s: %w", project.Name, ErrNoJournal)
	}
	return &runner{eng: eng, opts: opts, j: j, rep: &Report{Project: j.Project}, t0: time.Now()}, unlock, nil
}

func (r *runner) volumeReport(c Conversion) *VolumeReport {
	for i := range r.rep.Volumes {
		if r.rep.Volumes[i].Name == c.Name {
			return &r.rep.Volumes[i]
		}
	}
	r.rep.Volumes = append(r.rep.Volumes, VolumeReport{Name: c.Name, Source: c.Source, Owner: c.Owner})
	return &r.rep.Volumes[len(r.rep.Volumes)-1]
}

func (r *runner) copy(ctx context.Context, c Conversion, pass volumes.Pass, reserve int64) (*volumes.CopyResult, error) {
	e := progress.Event{Step: progress.Copy, Target: c.Name, Source: c.Source, Pass: string(pass), Group: "copy " + string(pass)}
	r.emit(e)
	t0 := time.Now()
	o := volumes.CopyOptions{Source: c.Source, Volume: c.Name, Owner: c.Owner, KeepOwner: r.opts.KeepOwner,
		Pass: pass, Reserve: reserve, Exclude: c.Exclude, Helper: r.opts.Helper, Progress: r.emit}
	// Its error names the source, the volume and the pass.
	res, err := volumes.Copy(ctx, r.eng, o)
	if res != nil {
		e.Bytes, e.Files = res.Bytes, res.Files
	}
	r.emit(progress.End(e, t0, err))
	return res, err
}

// abort undoes a migration that failed before the compose files changed: the
// services that ran are started again on their binds, the volumes this
// migration created are removed and the journal is removed. It returns err
// wrapped with ErrAborted, or with what could not be undone.
func (r *runner) abort(ctx context.Context, err error) error {
	// The undo runs to its end even when ctx was cancelled (Ctrl-C).
	ctx = context.WithoutCancel(ctx)
	if kept := r.keepOnlyCopies(err); kept != nil {
		return kept
	}
	var undo []string
	// Started whatever the step: an engine restart may have stopped them before the stop step.
	if len(r.j.Running) > 0 {
		if e := r.compose(ctx, append([]string{"start"}, r.j.Running...)...); e != nil {
			undo = append(undo, "starting the services again: "+e.Error())
		}
	}
	for _, v := range r.j.Volumes {
		if _, e := r.eng.VolumeRemove(ctx, v, client.VolumeRemoveOptions{}); e != nil {
			undo = append(undo, fmt.Sprintf("removing volume %s: %v", v, e))
		}
	}
	if len(undo) > 0 {
		return mark(fmt.Errorf("%w; undoing it failed: %s", err, strings.Join(undo, "; ")), ErrUndoFailed)
	}
	volumes.RemoveHelper(ctx, r.eng, r.opts.Helper)
	if e := r.j.remove(); e != nil {
		return fmt.Errorf("%w; %v", err, e)
	}
	return fmt.Errorf("%w: %w", ErrAborted, err)
}

// changed handles a compose file that changed since the plan: a run aborts
// (nothing changed), a resume refuses and keeps the journal for --rollback.
func (r *runner) changed(ctx context.Context, err error) error {
	if r.resuming {
		return mark(err, ErrResumable)
	}
	return r.abort(ctx, err)
}

// checkEdits returns an error wrapping compose.ErrChanged when a compose file
// holds neither the content the plan read nor the rewrite.
func checkEdits(edits []fileEdit) error {
	for _, e := range edits {
		cur, err := os.ReadFile(e.Path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", e.Path, err)
		}
		if !bytes.Equal(cur, e.Old) && !bytes.Equal(cur, e.New) {
			return fmt.Errorf("compose file %s %w (the migration's plan no longer applies)", e.Path, compose.ErrChanged)
		}
	}
	return nil
}

// checkReplicas refuses, before anything changes, a service remount can't
// handle: scale > 1 in the compose file or more than one container.
func (r *runner) checkReplicas(ctx context.Context, project string, services []string, svcs types.Services) error {
	for _, s := range services {
		svc := svcs[s]
		if n := svc.GetScale(); n > 1 {
			return fmt.Errorf("service %s has scale %d: %w (its replicas can't keep their layers); scale it to 1 first",
				s, n, remount.ErrUnsupported)
		}
		cs, err := compose.ServiceContainers(ctx, r.eng, project, s)
		if err != nil {
			return err
		}
		if len(cs) > 1 {
			return fmt.Errorf("service %s has %d containers: %w; scale it to 1 first", s, len(cs), remount.ErrUnsupported)
		}
		if len(cs) == 1 {
			if err := refuseUnsettled(s, cs[0]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkInactive refuses, before anything changes, a service of an inactive
// profile whose mounts the plan rewrites while a container of it runs on the
// binds: it would go on writing to the host after the migration.
func (r *runner) checkInactive(ctx context.Context, project string, services []string) error {
	for _, s := range services {
		cs, err := compose.ServiceContainers(ctx, r.eng, project, s)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.State == container.StateRunning {
				return mark(fmt.Errorf("service %s (of a profile not active) runs on the binds the migration converts: %w",
					s, remount.ErrUnsupported), ErrProfileInactive)
			}
		}
	}
	return nil
}

// check runs remount.Check on the container of each service, side by side.
func (r *runner) check(ctx context.Context, services []string) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range services {
		g.Go(func() error {
			cs, err := compose.ServiceContainers(ctx, r.eng, r.j.Project, s)
			if err != nil {
				return err
			}
			if len(cs) != 1 {
				return fmt.Errorf("checking service %s on its volumes: %d containers, want 1", s, len(cs))
			}
			if err := remount.Check(ctx, r.eng, cs[0].ID, r.opts.WaitTimeout); err != nil {
				return fmt.Errorf("checking service %s on its volumes: %w", s, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// running reports whether the service has a running container.
func (r *runner) running(ctx context.Context, service string) (bool, error) {
	cs, err := compose.ServiceContainers(ctx, r.eng, r.j.Project, service)
	if err != nil {
		return false, err
	}
	for _, c := range cs {
		if c.State == container.StateRunning {
			return true, nil
		}
	}
	return false, nil
}

// applyEdits writes the journaled edits (reverse: restores the old content).
// Files that already hold the wanted content are skipped, so an interrupted
// apply can be finished; a file holding neither gives an error wrapping
// compose.ErrChanged before anything is written.
func applyEdits(edits []fileEdit, reverse bool) error {
	var todo []compose.Edit
	write := compose.Apply
	if reverse {
		write = compose.Restore // the backup keeps the content before the migration
	}
	for _, e := range edits {
		from, to := e.Old, e.New
		if reverse {
			from, to = to, from
		}
		cur, err := os.ReadFile(e.Path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", e.Path, err)
		}
		switch {
		case bytes.Equal(cur, to):
		case bytes.Equal(cur, from):
			todo = append(todo, compose.Edit{Path: e.Path, Old: from, New: to})
		default:
			return fmt.Errorf("compose file %s %w (the migration's plan no longer applies)", e.Path, compose.ErrChanged)
		}
	}
	return write(todo)
}

// compose runs a docker compose subcommand on the project.
func (r *runner) compose(ctx context.Context, args ...string) error {
	cli, err := r.opts.Project.CLI(ctx)
	if err != nil {
		return err
	}
	_, err = cli.Run(ctx, args...)
	return err
}
