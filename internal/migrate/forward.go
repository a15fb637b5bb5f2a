package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/volumes"
)

// forwardSteps is the migration's step table: each journal step after
// StepPlanned, in order (steps), with the method that takes a journal at the
// step before it there. forward journals the step once its method returned
// nil; a method that fails undoes what it must (abort, changed) itself.
var forwardSteps = []struct {
	step string
	run  func(*runner, context.Context) error
}{
	{StepCreated, (*runner).createVolumes},
	{StepCopied, (*runner).fullPass},
	{StepStopping, (*runner).recordRunning},
	{StepStopped, (*runner).stopServices},
	{StepDelta, (*runner).deltaPass},
	{StepVerified, (*runner).verify},
	{StepApplied, (*runner).rewrite},
	{StepRemounted, (*runner).remountAll},
	{StepDone, (*runner).finish},
}

// forward runs the steps after the journal's, then reports.
func (r *runner) forward(ctx context.Context) (*Report, error) {
	for _, s := range forwardSteps {
		if stepIndex(r.j.Step) >= stepIndex(s.step) {
			continue
		}
		if err := s.run(r, ctx); err != nil {
			return nil, err
		}
		if err := r.j.save(s.step); err != nil {
			return nil, err
		}
	}
	return r.report(), nil
}

// report completes the report of a migration that stands.
func (r *runner) report() *Report {
	j := r.j
	for _, e := range j.Edits {
		r.rep.Files = append(r.rep.Files, e.Path)
	}
	r.rep.Services, r.rep.Skipped = j.Remounted, j.Skipped
	for _, c := range j.Conversions {
		r.volumeReport(c)
	}
	for _, s := range j.Skipped {
		r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("service %s has no container: `docker compose up` creates it on the volumes", s))
	}
	r.rep.Total = time.Since(r.t0)
	return r.rep
}

// createVolumes creates the volumes (journaling each one it created, for the undo).
func (r *runner) createVolumes(ctx context.Context) error {
	j := r.j
	cli, err := r.opts.Project.CLI(ctx)
	if err != nil {
		return r.abort(ctx, err)
	}
	version := cli.Version()
	for _, c := range j.Conversions {
		r.emit(progress.Event{Step: progress.Create, Target: c.Name})
		res, err := volumes.Create(ctx, r.eng, volumes.CreateOptions{Name: c.Name, Project: j.Project, Key: c.Volume,
			ComposeVersion: version, Migration: j.ID, Helper: r.opts.Helper})
		if err != nil {
			return r.abort(ctx, err) // it names the volume
		}
		if (res.Created || res.Replaced) && !slices.Contains(j.Volumes, c.Name) {
			j.Volumes = append(j.Volumes, c.Name)
			if err := j.save(StepPlanned); err != nil {
				return err
			}
		}
	}
	return nil
}

// fullPass copies every source into its volume while the services run,
// leaving room for the snapshots the remounts commit, and records the
// sources' identities.
func (r *runner) fullPass(ctx context.Context) error {
	j := r.j
	reserve, err := r.snapshotRoom(ctx)
	if err != nil {
		return r.abort(ctx, err)
	}
	for _, c := range j.Conversions {
		res, err := r.copy(ctx, c, volumes.PassFull, reserve)
		if err != nil {
			return r.abort(ctx, err)
		}
		r.volumeReport(c).Full = res
	}
	r.recordSources()
	return nil
}

// recordRunning checks, before any downtime, that the compose files still
// hold the plan (else the run stops here) and the state directory has room,
// and records the services running now and when the stop begins.
func (r *runner) recordRunning(ctx context.Context) error {
	j := r.j
	if err := checkEdits(j.Edits); err != nil {
		return r.changed(ctx, err)
	}
	if err := r.checkFiles(); err != nil {
		return r.changed(ctx, err)
	}
	if err := r.checkJournalRoom(); err != nil {
		return r.changed(ctx, err)
	}
	if err := r.addRunning(ctx); err != nil {
		return err
	}
	j.StoppedAt = time.Now()
	return nil
}

// stopServices stops the affected services.
func (r *runner) stopServices(ctx context.Context) error {
	j := r.j
	r.emit(progress.Event{Step: progress.Stop, Targets: j.Services})
	if err := r.compose(ctx, append([]string{"stop"}, j.Services...)...); err != nil {
		return r.abort(ctx, fmt.Errorf("stopping the services: %w", err))
	}
	return nil
}

// deltaPass copies what changed since the full pass from the sources the
// full pass copied; the services are down from here, so the volumes are done
// side by side.
func (r *runner) deltaPass(ctx context.Context) error {
	j := r.j
	res := make([]*volumes.CopyResult, len(j.Conversions))
	if err := r.each(ctx, func(ctx context.Context, i int, c Conversion) (err error) {
		if err := r.checkSource(c); err != nil {
			return err
		}
		res[i], err = r.copy(ctx, c, volumes.PassDelta, 0)
		return err
	}); err != nil {
		return r.abort(ctx, err)
	}
	for i, c := range j.Conversions {
		r.volumeReport(c).Delta = res[i]
	}
	return nil
}

// verify compares every volume with its source, side by side.
func (r *runner) verify(ctx context.Context) error {
	j := r.j
	reps := make([]*volumes.VerifyReport, len(j.Conversions))
	if err := r.each(ctx, func(ctx context.Context, i int, c Conversion) (err error) {
		e, t0 := progress.Event{Step: progress.Verify, Target: c.Name, Source: c.Source, Group: "verify"}, time.Now()
		r.emit(e)
		reps[i], err = volumes.Verify(ctx, r.eng, volumes.VerifyOptions{Source: c.Source, Volume: c.Name, Owner: c.Owner,
			KeepOwner: r.opts.KeepOwner, Full: r.opts.VerifyFull, Exclude: c.Exclude, Helper: r.opts.Helper})
		r.emit(progress.End(e, t0, err))
		return err // it names the volume and the source
	}); err != nil {
		return r.abort(ctx, err)
	}
	for i, c := range j.Conversions {
		r.volumeReport(c).Verify = reps[i]
	}
	return nil
}

// rewrite rewrites the compose files (backups beside them).
func (r *runner) rewrite(ctx context.Context) error {
	j := r.j
	r.emit(progress.Event{Step: progress.Rewrite, Count: len(j.Edits)})
	if err := applyEdits(j.Edits, false); errors.Is(err, compose.ErrChanged) {
		return r.changed(ctx, err)
	} else if err != nil {
		return mark(fmt.Errorf("rewriting the compose files (services %s stay stopped): %w",
			strings.Join(j.Running, ", "), err), ErrResumable)
	}
	return nil
}

// remountAll remounts every affected service onto its volumes, in Order
// (what others join first: a service is started only once what it joins
// runs), journaling the one being remounted and each one done; then checks
// them together (settle).
func (r *runner) remountAll(ctx context.Context) error {
	j := r.j
	project, err := r.opts.Project.Reload(ctx)
	if err != nil {
		return fmt.Errorf("loading the rewritten project: %w", err)
	}
	var lastUp time.Time
	for _, s := range remount.Order(project.Project, j.Services) {
		if slices.Contains(j.Remounted, s) || slices.Contains(j.Skipped, s) {
			continue
		}
		j.Current = s
		if err := j.save(StepApplied); err != nil {
			return err
		}
		up, err := r.remountOne(ctx, project, s)
		switch {
		case errors.Is(err, remount.ErrNoContainer):
			j.Skipped = append(j.Skipped, s)
		case err != nil:
			return mark(fmt.Errorf("remounting service %s onto its volumes: %w", s, err), ErrResumable)
		default:
			j.Remounted = append(j.Remounted, s)
			lastUp = up
		}
		j.Current = ""
		if err := j.save(StepApplied); err != nil {
			return err
		}
	}
	if !lastUp.IsZero() && !j.StoppedAt.IsZero() {
		r.rep.Downtime = lastUp.Sub(j.StoppedAt)
	}
	return r.settle(ctx)
}

// remountOne remounts service s onto its volumes (resuming its interrupted
// remount on Resume) and returns when it was up again.
func (r *runner) remountOne(ctx context.Context, project *compose.Project, s string) (time.Time, error) {
	r.emit(progress.Event{Step: progress.Remount, Target: s})
	ro := remount.Options{Project: project, Service: s,
		WaitTimeout: r.opts.WaitTimeout, Locked: true, NoWait: true, NoDependents: true}
	t := time.Now()
	var res *remount.Result
	err := remount.ErrNoJournal
	if s == r.resumeCurrent {
		res, err = remount.Resume(ctx, r.eng, ro)
	}
	if errors.Is(err, remount.ErrNoJournal) {
		t = time.Now()
		res, err = remount.Run(ctx, r.eng, ro)
	}
	if err != nil {
		return time.Time{}, err
	}
	return t.Add(res.Downtime), nil
}

// settle checks the remounted services that ran before: each started as soon
// as it was remounted; whether they keep running (or turn healthy) is checked
// for all of them together, so one service's check does not keep the next one
// down. Services that were stopped before the migration stay stopped.
func (r *runner) settle(ctx context.Context) error {
	j := r.j
	var check, stop []string
	for _, s := range j.Remounted {
		if slices.Contains(j.Running, s) {
			check = append(check, s)
		} else {
			stop = append(stop, s)
		}
	}
	if len(check) > 0 && r.resuming {
		// An engine restart may have stopped them since they were started.
		if err := r.compose(ctx, append([]string{"start"}, check...)...); err != nil {
			return fmt.Errorf("starting the remounted services: %w", err)
		}
	}
	if len(check) > 0 {
		r.emit(progress.Event{Step: progress.Check, Targets: check})
		if err := r.check(ctx, check); err != nil {
			return mark(fmt.Errorf("%w (the compose files use the volumes now; `docker compose logs` shows why)", err), ErrResumable)
		}
	}
	if len(stop) > 0 {
		if err := r.compose(ctx, append([]string{"stop"}, stop...)...); err != nil {
			return fmt.Errorf("stopping again the services that were not running: %w", err)
		}
	}
	return nil
}

// finish finishes the volumes (their copy state goes), removes the helper
// image and drops the compose files' content from the journal: the
// migration stands.
func (r *runner) finish(ctx context.Context) error {
	j := r.j
	for _, c := range j.Conversions {
		r.emit(progress.Event{Step: progress.Finish, Target: c.Name})
		if err := volumes.Finish(ctx, r.eng, volumes.FinishOptions{Volume: c.Name, Helper: r.opts.Helper}); err != nil {
			return fmt.Errorf("finishing volume %s: %w", c.Name, err)
		}
	}
	if err := volumes.RemoveHelper(ctx, r.eng, r.opts.Helper); err != nil {
		r.rep.Warnings = append(r.rep.Warnings, "removing the helper image: "+err.Error())
	}
	j.dropContent()
	return nil
}
