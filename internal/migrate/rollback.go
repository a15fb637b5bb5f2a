package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/volumes"
)

// Rollback undoes the project's last migration, interrupted or completed:
// restores the compose files (refusing, with an error wrapping
// compose.ErrChanged, when one changed since the migration), puts the services
// back onto their binds with their writable layers (remount), starts the
// services that ran before, and removes the volumes the migration created when
// no service used them yet. Once services ran on the volumes they are kept and
// a warning says that data written to them since stays in them, unless
// opts.CopyBack: then, first, the services on those volumes are stopped and
// each volume is copied back into its bind directory (volumes.CopyBack, the
// directory's previous content kept beside it and named in a warning), every
// volume journaled (CopyBackPath) so a rerun after kill -9 goes on; a copy-back
// once begun is finished by any later Rollback. Before any service ran on the
// volumes CopyBack changes nothing. It returns an error wrapping ErrNoJournal
// when there is nothing to roll back, volumes.ErrRefused when the first volume
// can't be copied back (nothing changed then).
func Rollback(ctx context.Context, eng RunEngine, opts RunOptions) (*Report, error) {
	r, unlock, err := open(ctx, eng, opts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	j := r.j
	r.rep.RolledBack = true
	r.emit(progress.Event{Step: progress.Rollback, From: j.Step})
	if stepIndex(j.Step) < stepIndex(StepVerified) {
		// The compose files were not touched.
		return r.rep, r.rollbackEarly(ctx)
	}
	written, ran, err := r.rollbackChecks(ctx)
	if err != nil {
		return nil, err
	}
	cb, err := r.copyBack(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.restoreFiles(); err != nil {
		return nil, err
	}
	project, err := opts.Project.Reload(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the restored project: %w", err)
	}
	if err := r.remountBack(ctx, project); err != nil {
		return nil, err
	}
	if err := r.rejoinStale(ctx, project); err != nil {
		return nil, err
	}
	if err := r.startAgain(ctx, project, cb); err != nil {
		return nil, err
	}
	r.rollbackWarnings(cb, written)
	if !ran {
		r.removeVolumes(ctx)
	}
	volumes.RemoveHelper(ctx, eng, opts.Helper)
	if err := j.remove(); err != nil {
		return nil, err
	}
	if err := copyBackFile(j.Project).Remove(); err != nil {
		return nil, err
	}
	r.rep.Total = time.Since(r.t0)
	return r.rep, nil
}

// rollbackChecks reads back the compose files' content and refuses, before
// anything changes, a rollback onto a bind directory that is gone (unless
// CopyBack fills it). It returns the conversions whose volumes a service
// wrote to, and whether a service ran on the volumes at all: the real state
// of an interrupted remount's containers, looked at before its rollback
// removes them.
func (r *runner) rollbackChecks(ctx context.Context) (written []Conversion, ran bool, err error) {
	j := r.j
	if err := j.loadContent(); err != nil {
		return nil, false, fmt.Errorf("restoring the compose files: %w", err)
	}
	written = writtenConversions(j) // before the steps below change the journal
	ran = len(j.Remounted) > 0 || stepIndex(j.Step) >= stepIndex(StepRemounted)
	if !ran && j.Current != "" {
		if ran, err = r.ranOnVolumes(ctx); err != nil {
			return nil, false, err
		}
	}
	if !ran {
		written = nil
	}
	// A copy back fills only the directories of the volumes a service wrote
	// to: every other one must still be there (else its volume is removed
	// when no service ran on it, and the service starts on an empty one).
	check := j.Conversions
	if r.opts.CopyBack {
		check = slices.DeleteFunc(slices.Clone(check), func(c Conversion) bool {
			return slices.ContainsFunc(written, func(w Conversion) bool { return w.Name == c.Name })
		})
	}
	if err := missingSources(check); err != nil {
		return nil, false, err
	}
	return written, ran, nil
}

// restoreFiles puts the compose files' content before the migration back;
// at StepVerified the rewrite may have been interrupted: only the files it
// wrote are restored.
func (r *runner) restoreFiles() error {
	j := r.j
	edits := j.Edits
	if j.Step == StepVerified {
		edits = nil
		for _, e := range j.Edits {
			if cur, err := os.ReadFile(e.Path); err == nil && bytes.Equal(cur, e.New) {
				edits = append(edits, e)
			}
		}
	}
	r.emit(progress.Event{Step: progress.Restore, Count: len(edits)})
	if err := applyEdits(edits, true); err != nil {
		return fmt.Errorf("restoring the compose files: %w", err)
	}
	for _, e := range edits {
		r.rep.Files = append(r.rep.Files, e.Path)
	}
	return nil
}

// rollbackRemount are the remount options of service s of the restored project.
func (r *runner) rollbackRemount(project *compose.Project, s string) remount.Options {
	return remount.Options{Project: project, Service: s,
		WaitTimeout: r.opts.WaitTimeout, Locked: true, NoDependents: true}
}

// remountBack puts the services back onto their binds: an interrupted
// remount onto the volumes by its own rollback (the old container back),
// the remounted ones stopped together (compose stops the services that join
// others first), then remounted in order, what others join first, each
// journaled.
func (r *runner) remountBack(ctx context.Context, project *compose.Project) error {
	j := r.j
	if j.Current != "" {
		r.emit(progress.Event{Step: progress.RemountUndo, Target: j.Current})
		if _, err := remount.Rollback(ctx, r.eng, r.rollbackRemount(project, j.Current)); err != nil && !errors.Is(err, remount.ErrNoJournal) {
			return err // "rolling back the remount of <service>: …": remount names it
		}
		j.Current = ""
		if err := j.save(j.Step); err != nil {
			return err
		}
	}
	if len(j.Remounted) > 0 {
		if err := r.compose(ctx, append([]string{"stop"}, j.Remounted...)...); err != nil {
			return mark(fmt.Errorf("stopping the services: %w", err), ErrRollbackStopped)
		}
		j.Remounted = remount.Order(project.Project, j.Remounted)
	}
	for len(j.Remounted) > 0 {
		s := j.Remounted[0]
		r.emit(progress.Event{Step: progress.RemountBinds, Target: s})
		if _, err := remount.Run(ctx, r.eng, r.rollbackRemount(project, s)); err != nil && !errors.Is(err, remount.ErrNoContainer) {
			return mark(fmt.Errorf("remounting %s back onto its binds: %w", s, err), ErrRollbackStopped)
		}
		r.rep.Services = append(r.rep.Services, s)
		j.Remounted = j.Remounted[1:]
		if err := j.save(j.Step); err != nil {
			return err
		}
	}
	return nil
}

// rejoinStale remounts, joined and with its layer kept, a service that joins
// one whose container was recreated (by a remount's rollback): it still
// names the old one. It is started with the others (startAgain).
func (r *runner) rejoinStale(ctx context.Context, project *compose.Project) error {
	j := r.j
	for _, s := range remount.Order(project.Project, j.Services) {
		stale, err := remount.Stale(ctx, r.eng, j.Project, s)
		if err != nil {
			return err
		}
		if !stale {
			continue
		}
		r.emit(progress.Event{Step: progress.Rejoin, Target: s})
		o := r.rollbackRemount(project, s)
		o.NoStart = true // started with the others, once what it joins runs
		if _, err := remount.Run(ctx, r.eng, o); err != nil {
			return mark(fmt.Errorf("remounting %s joined to what it joins: %w", s, err), ErrRollbackStopped)
		}
	}
	return nil
}

// startAgain starts, in order, the services that ran before the migration
// and those the copy-back stopped.
func (r *runner) startAgain(ctx context.Context, project *compose.Project, cb *copyBackJournal) error {
	start := remount.Order(project.Project, r.j.Running)
	if cb != nil {
		for _, s := range cb.Stopped {
			if !slices.Contains(start, s) {
				start = append(slices.Clip(start), s)
			}
		}
	}
	if len(start) == 0 {
		return nil
	}
	if err := r.compose(ctx, append([]string{"start"}, start...)...); err != nil {
		return fmt.Errorf("starting the services again: %w", err)
	}
	return nil
}

// rollbackWarnings say where the data written to the volumes is: copied
// back (cb), or still in the volumes.
func (r *runner) rollbackWarnings(cb *copyBackJournal, written []Conversion) {
	if cb != nil {
		r.rep.Warnings = append(r.rep.Warnings, cb.warnings(r.j)...)
		return
	}
	if len(written) == 0 {
		return
	}
	var names []string
	for _, c := range written {
		names = append(names, c.Name)
	}
	r.rep.Warnings = append(r.rep.Warnings, "data written to the volumes since the migration stays in the volumes "+
		strings.Join(names, ", ")+" (the services use their bind directories again; --copy-back copies it back)")
}

// removeVolumes removes the volumes the migration created, when no service
// ever ran on them: they hold nothing but the copy.
func (r *runner) removeVolumes(ctx context.Context) {
	for _, v := range r.j.Volumes {
		if _, err := r.eng.VolumeRemove(ctx, v, client.VolumeRemoveOptions{}); err != nil {
			r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("removing volume %s: %v", v, err))
		}
	}
}

// rollbackEarly undoes a migration interrupted before the compose files could
// have changed: restart what ran, remove the volumes it created.
func (r *runner) rollbackEarly(ctx context.Context) error {
	err := r.abort(ctx, errors.New("rolled back"))
	if errors.Is(err, ErrAborted) {
		r.rep.Total = time.Since(r.t0)
		return nil
	}
	return err
}
