package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/statefile"
	"github.com/moltctl/moltctl/internal/volumes"
)

// ErrOnlyCopy: a source directory vanished or was replaced after the full
// pass, so the volume may hold the only copy of its data: the migration
// stopped with the volume, the journal and the stopped services kept as they are.
var ErrOnlyCopy = errors.New("the volume may hold the only copy of the data")

// sourceID names a directory's identity (device and inode): a directory moved
// away and replaced by another under the same path gets a different one.
func sourceID(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return "", fmt.Errorf("%q is not a directory", path)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// recordSources journals the identity of every source after the full pass.
func (r *runner) recordSources() {
	r.j.Sources = map[string]string{}
	for _, c := range r.j.Conversions {
		if id, err := sourceID(c.Source); err == nil {
			r.j.Sources[c.Source] = id
		}
	}
}

// changedSources returns the conversions whose source is gone or is no longer
// the directory the full pass copied: their volumes may hold the only copy.
func (r *runner) changedSources() []Conversion {
	if r.j.Sources == nil || stepIndex(r.j.Step) < stepIndex(StepCopied) {
		return nil
	}
	var out []Conversion
	for _, c := range r.j.Conversions {
		if id, err := sourceID(c.Source); err != nil || id != r.j.Sources[c.Source] {
			out = append(out, c)
		}
	}
	return out
}

// checkSource refuses a delta pass from a source that is not the directory
// the full pass copied (it would make the volume mirror another directory).
func (r *runner) checkSource(c Conversion) error {
	want, ok := r.j.Sources[c.Source]
	if !ok {
		return nil
	}
	id, err := sourceID(c.Source)
	if err != nil {
		return fmt.Errorf("source %q: %w: %w", c.Source, ErrOnlyCopy, err)
	}
	if id != want {
		return fmt.Errorf("source %q was replaced by another directory since the full pass: %w", c.Source, ErrOnlyCopy)
	}
	return nil
}

// keepOnlyCopies is abort's guard: when a source changed after the full pass
// nothing is undone (no service started on what may be an empty directory,
// no volume removed) and the error says where the data is.
func (r *runner) keepOnlyCopies(err error) error {
	changed := r.changedSources()
	if len(changed) == 0 {
		return nil
	}
	var where []string
	for _, c := range changed {
		where = append(where, fmt.Sprintf("%q is in volume %s", c.Source, c.Name))
	}
	stopped := "no service was stopped"
	if stepIndex(r.j.Step) >= stepIndex(StepStopping) && len(r.j.Services) > 0 {
		stopped = "services " + strings.Join(r.j.Services, ", ") + " stay stopped"
	}
	return mark(fmt.Errorf("%w; %w: the full copy of %s (kept, with the journal %s); %s so that none starts on an empty directory",
		err, ErrOnlyCopy, strings.Join(where, ", "), JournalPath(r.j.Project), stopped), ErrResumable)
}

// runningServices returns the services (of services) with a running container.
func (r *runner) runningServices(ctx context.Context, services []string) ([]string, error) {
	var out []string
	for _, s := range services {
		running, err := r.running(ctx, s)
		if err != nil {
			return nil, err
		}
		if running {
			out = append(out, s)
		}
	}
	return out, nil
}

// addRunning adds to j.Running the services running now: the ones recorded at
// the plan stay (an engine restart may have stopped them since).
func (r *runner) addRunning(ctx context.Context) error {
	now, err := r.runningServices(ctx, r.j.Services)
	if err != nil {
		return err
	}
	for _, s := range now {
		if !slices.Contains(r.j.Running, s) {
			r.j.Running = append(r.j.Running, s)
		}
	}
	return nil
}

// refuseUnsettled refuses a paused or restarting container before anything
// changes: stopping it would not stop it cleanly and remount refuses it.
func refuseUnsettled(service string, c container.Summary) error {
	if c.State == container.StatePaused || c.State == container.StateRestarting {
		return fmt.Errorf("service %s: container %s is %s: %w; unpause it or wait until it runs or stops",
			service, strings.TrimPrefix(firstName(c.Names), "/"), c.State, remount.ErrUnsupported)
	}
	return nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// checkFiles checks what can be checked of the compose files before the
// services stop: each can be replaced atomically (compose.CheckReplaceable).
func (r *runner) checkFiles() error {
	var paths []string
	for _, e := range r.j.Edits {
		paths = append(paths, e.Path)
	}
	return compose.CheckReplaceable(paths)
}

// snapshotRoom is the room the remounts' snapshots will take, kept free by
// the full pass (volumes.CopyOptions.Reserve): twice the writable layer of
// each affected service's container (an engine with the containerd image
// store keeps a compressed blob and an unpacked snapshot of a commit).
func (r *runner) snapshotRoom(ctx context.Context) (int64, error) {
	var total int64
	for _, s := range r.j.Services {
		cs, err := compose.ServiceContainers(ctx, r.eng, r.j.Project, s)
		if err != nil {
			return 0, err
		}
		for _, c := range cs {
			ins, err := r.eng.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{Size: true})
			if err != nil {
				return 0, fmt.Errorf("measuring the writable layer of service %s: %w", s, err)
			}
			if ins.Container.SizeRw != nil {
				total += 2 * *ins.Container.SizeRw
			}
		}
	}
	return total, nil
}

// checkJournalRoom checks, before the stop, that the state directory can hold
// the journals of the run: this one written a few more times (each save puts
// a new file beside the old), a remount journal per service, and a margin.
// A journal that can't be written after the stop leaves the services stopped.
func (r *runner) checkJournalRoom() error {
	b, _ := json.Marshal(r.j)
	need := 4*int64(len(b)) + int64(len(r.j.Services))*(256<<10) + 1<<20
	return statefile.CheckRoom(filepath.Dir(JournalPath(r.j.Project)), need, 16)
}

// ranOnVolumes reports whether a container (not a copy helper) ever started
// with one of the volumes this migration created mounted: an interrupted
// remount may have created one that never ran (nothing was written to the
// volumes then, and a rollback removes them).
func (r *runner) ranOnVolumes(ctx context.Context) (bool, error) {
	for _, v := range r.j.Volumes {
		f := client.Filters{}
		f.Add("volume", v)
		res, err := r.eng.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		if err != nil {
			return false, fmt.Errorf("listing the containers of volume %s: %w", v, err)
		}
		for _, c := range res.Items {
			if c.Labels[volumes.LabelHelper] != "" {
				continue
			}
			ins, err := r.eng.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
			if err != nil {
				return false, fmt.Errorf("inspecting container %.12s: %w", c.ID, err)
			}
			if st := ins.Container.State; st != nil && (st.Running || (st.StartedAt != "" && !strings.HasPrefix(st.StartedAt, "0001-01-01"))) {
				return true, nil
			}
		}
	}
	return false, nil
}

// missingSources refuses a rollback onto bind directories that are gone: the
// services would start on empty directories the engine creates, while the
// data is in the volumes. Nothing is changed; the error says where the data is.
func missingSources(conversions []Conversion) error {
	var where []string
	for _, c := range conversions {
		if _, err := sourceID(c.Source); err != nil {
			where = append(where, fmt.Sprintf("%q (its data is in volume %s)", c.Source, c.Name))
		}
	}
	if len(where) == 0 {
		return nil
	}
	return fmt.Errorf("rolling back onto the bind directories: %w: %s gone",
		ErrOnlyCopy, strings.Join(where, ", "))
}

// forwardNoted runs forward; when a journal write failed after the stop (a
// state directory filled up since the check) its error says that the
// services may be stopped and what to do.
func (r *runner) forwardNoted(ctx context.Context) (*Report, error) {
	rep, err := r.forward(ctx)
	if errors.Is(err, statefile.ErrJournal) && stepIndex(r.j.Step) >= stepIndex(StepStopped) && r.j.Step != StepDone {
		stopped := strings.Join(r.j.Running, ", ")
		if stopped == "" {
			stopped = "none were running"
		}
		return nil, mark(fmt.Errorf("%w; the services may be stopped (%s) until there is room in the state directory %q",
			err, stopped, filepath.Dir(JournalPath(r.j.Project))), ErrResumable)
	}
	return rep, err
}
