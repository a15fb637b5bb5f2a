package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/statefile"
	"github.com/moltctl/moltctl/internal/volumes"
)

// Journal steps of a copy-back (Rollback with CopyBack), written to the
// copy-back journal (crash points "migrate-copyback:<step>").
const (
	StepCopyBackStopping = "copyback-stopping" // the volumes to copy back and the services running on them are recorded
	StepCopiedBack       = "copied-back"       // one more volume is copied back into its bind directory
)

// copyBackJournal is the progress of a copy-back, beside the migrate journal
// (<state dir>/<project>/migrate-copyback.json): which volumes to copy back,
// which services were stopped for it, which volumes are done. volumes.CopyBack
// itself resumes an interrupted volume from the marks it leaves on disk.
type copyBackJournal struct {
	ID string `json:"id"` // the migration's
	statefile.Header
	Volumes []string `json:"volumes"` // to copy back, in order
	// Stopped are the services that were running on the volumes and were
	// stopped for the copy; Rollback starts them again.
	Stopped []string `json:"stopped,omitempty"`
	// Kept maps each volume copied back to where its bind directory's previous
	// content is ("" when the directory did not exist).
	Kept map[string]string `json:"kept"`
}

func copyBackFile(project string) statefile.Journal[copyBackJournal, *copyBackJournal] {
	return statefile.NewJournal[copyBackJournal](project, "migrate-copyback")
}

// CopyBackPath returns the file the copy-back journal of project lives in.
func CopyBackPath(project string) string { return copyBackFile(project).Path() }

// readCopyBack returns the copy-back journal of the migration j, or nil when
// there is none (a journal of another migration is ignored).
func readCopyBack(j *journal) (*copyBackJournal, error) {
	cb, err := copyBackFile(j.Project).Load()
	if err != nil || cb == nil || cb.ID != j.ID {
		return nil, err
	}
	if cb.Kept == nil {
		cb.Kept = map[string]string{}
	}
	return cb, nil
}

// writtenConversions are the conversions whose volumes a service may have
// written to: every volume mounted read-write once the migration remounted
// the services (StepRemounted, StepDone), and before that those of the
// services already remounted onto them (or being remounted) when it was
// interrupted. Call it before Rollback changes j.Remounted and j.Current.
func writtenConversions(j *journal) []Conversion {
	all := stepIndex(j.Step) >= stepIndex(StepRemounted)
	if !all && j.Step != StepApplied {
		return nil
	}
	var out []Conversion
	for _, c := range j.Conversions {
		if slices.ContainsFunc(c.Mounts, func(m Mount) bool {
			return !m.ReadOnly && (all || slices.Contains(j.Remounted, m.Service) || m.Service == j.Current)
		}) {
			out = append(out, c)
		}
	}
	return out
}

// copyBack copies the volumes the services wrote to back into their bind
// directories (volumes.CopyBack), for Rollback: it records the volumes and the
// running services in the copy-back journal, stops those services, finishes
// the volumes and copies each back, journaling each one. It returns nil when
// there is nothing to copy back: CopyBack not asked for and no copy-back begun
// (one that was begun is always finished, so that no bind directory is left
// half-way), or no service wrote to the volumes. When the first volume is
// refused (volumes.ErrRefused) the services are started again and the
// journal removed: nothing changed.
func (r *runner) copyBack(ctx context.Context) (*copyBackJournal, error) {
	j := r.j
	cb, err := readCopyBack(j)
	if err != nil {
		return nil, err
	}
	if cb == nil {
		written := writtenConversions(j)
		if !r.opts.CopyBack || len(written) == 0 {
			return nil, nil
		}
		cb = &copyBackJournal{ID: j.ID, Kept: map[string]string{}}
		for _, c := range written {
			cb.Volumes = append(cb.Volumes, c.Name)
		}
		for _, s := range cb.services(j) {
			running, err := r.running(ctx, s)
			if err != nil {
				return nil, err
			}
			if running {
				cb.Stopped = append(cb.Stopped, s)
			}
		}
		if err := copyBackFile(j.Project).Save(cb, StepCopyBackStopping); err != nil {
			return nil, err
		}
	}
	if len(cb.Kept) == len(cb.Volumes) {
		return cb, nil // done before an interruption: the services may run on their binds again
	}
	services := cb.services(j)
	r.emit(progress.Event{Step: progress.Stop, Targets: services})
	if err := r.compose(ctx, append([]string{"stop"}, services...)...); err != nil {
		return nil, mark(fmt.Errorf("stopping the services to copy the volumes back (nothing copied back yet is lost): %w", err), ErrRollbackStopped)
	}
	for _, c := range j.Conversions {
		if _, done := cb.Kept[c.Name]; done || !slices.Contains(cb.Volumes, c.Name) {
			continue
		}
		if _, err := r.eng.VolumeInspect(ctx, c.Name, client.VolumeInspectOptions{}); err == nil && j.Step != StepDone {
			// The copy state is still in the volume: remove it as the migration's last step does
			// (not in a missing volume: the helper's mount would create it; CopyBack refuses it).
			if err := volumes.Finish(ctx, r.eng, volumes.FinishOptions{Volume: c.Name, Helper: r.opts.Helper}); err != nil {
				return nil, fmt.Errorf("finishing volume %s before copying it back: %w", c.Name, err)
			}
		}
		e, t0 := progress.Event{Step: progress.CopyBack, Target: c.Name, Source: c.Source}, time.Now()
		r.emit(e)
		o := volumes.CopyBackOptions{Volume: c.Name, Target: c.Source, ID: j.ID, Helper: r.opts.Helper, Progress: r.emit}
		res, err := volumes.CopyBack(ctx, r.eng, o)
		r.emit(progress.End(e, t0, err))
		if errors.Is(err, volumes.ErrRefused) && len(cb.Kept) == 0 {
			return nil, r.undoCopyBack(ctx, cb, err)
		}
		if err != nil {
			return nil, mark(fmt.Errorf("copying the volumes back (services %s stay stopped): %w",
				strings.Join(services, ", "), err), ErrRollbackStopped)
		}
		cb.Kept[c.Name] = res.Kept
		if err := copyBackFile(j.Project).Save(cb, StepCopiedBack); err != nil {
			return nil, err
		}
	}
	return cb, nil
}

// undoCopyBack puts things back after the first volume was refused: the
// stopped services start again, the copy-back journal goes.
func (r *runner) undoCopyBack(ctx context.Context, cb *copyBackJournal, err error) error {
	if len(cb.Stopped) > 0 {
		if e := r.compose(ctx, append([]string{"start"}, cb.Stopped...)...); e != nil {
			return fmt.Errorf("copying the volumes back: %w; starting the services %s again failed: %v", err, strings.Join(cb.Stopped, ", "), e)
		}
	}
	if e := copyBackFile(r.j.Project).Remove(); e != nil {
		return fmt.Errorf("copying the volumes back: %w; %v", err, e)
	}
	return fmt.Errorf("copying the volumes back: %w", err)
}

// services are the services that mount the volumes to copy back.
func (cb *copyBackJournal) services(j *journal) []string {
	var out []string
	for _, c := range j.Conversions {
		if !slices.Contains(cb.Volumes, c.Name) {
			continue
		}
		for _, m := range c.Mounts {
			if !slices.Contains(out, m.Service) {
				out = append(out, m.Service)
			}
		}
	}
	return out
}

// warnings name where the bind directories' previous content was kept.
func (cb *copyBackJournal) warnings(j *journal) []string {
	var out []string
	for _, c := range j.Conversions {
		kept, ok := cb.Kept[c.Name]
		switch {
		case !ok:
		case kept == "":
			out = append(out, fmt.Sprintf("volume %s copied back into %s (which did not exist); the volume is kept", c.Name, c.Source))
		default:
			out = append(out, fmt.Sprintf("volume %s copied back into %s; its previous content is kept in %s (remove it when no longer needed); the volume is kept",
				c.Name, c.Source, kept))
		}
	}
	return out
}
