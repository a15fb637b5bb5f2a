package remount

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/statefile"
)

// groupFile is project's group remount journal (crash points "remount-group:<step>").
func groupFile(project string) statefile.Journal[groupJournal, *groupJournal] {
	return statefile.NewJournal[groupJournal](project, "remount-group")
}

// GroupJournalPath returns the file the journal of a group remount (a service
// and the services that join it) of project lives in.
func GroupJournalPath(project string) string { return groupFile(project).Path() }

// Steps of a group remount, as recorded in its journal (and crash hook names).
const (
	groupBegun     = "group-begun"     // the group and who ran recorded, nothing changed
	groupStopped   = "group-stopped"   // the running services stopped, dependents first
	groupDone      = "group-done"      // one more service remounted (its journal in Done)
	groupRemounted = "group-remounted" // every service remounted
	groupRestored  = "group-restored"  // rollback: one more service restored
)

// groupJournal is the on-disk record of a group remount in progress.
type groupJournal struct {
	Version int    `json:"version"`
	Project string `json:"project"`
	// Service is the service remounted; the others of Services join it.
	Service string `json:"service"`
	// Services is the group in Order (what others join first).
	Services []string `json:"services"`
	// Running are the services that ran before: started again at the end.
	Running []string `json:"running"`
	statefile.Header
	// Current is the service whose remount runs (its own journal tells the step).
	Current string `json:"current,omitempty"`
	// Done are the journals of the finished remounts, in order: a rollback puts
	// them back onto their previous config and snapshot.
	Done      []journal `json:"done,omitempty"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
}

func (g *groupJournal) save(step string) error { return groupFile(g.Project).Save(g, step) }

func (g *groupJournal) remove() error { return groupFile(g.Project).Remove() }

func (g *groupJournal) done(s string) bool {
	return slices.ContainsFunc(g.Done, func(j journal) bool { return j.Service == s })
}

// readGroup returns the project's group journal, or nil when there is none.
func readGroup(project string) (*groupJournal, error) { return groupFile(project).Load() }

// noGroup refuses a remount while an interrupted group remount waits.
func noGroup(opts Options) error {
	if opts.inGroup {
		return nil
	}
	g, err := readGroup(opts.Project.Name)
	if err != nil {
		return err
	}
	if g != nil {
		return &InterruptedError{Service: g.Service, Step: g.Step, Journal: GroupJournalPath(g.Project), Joined: true}
	}
	return nil
}

// noJournal refuses a remount while an interrupted remount's journal waits.
func noJournal(project string) error {
	j, err := readJournal(project)
	if err != nil {
		return err
	}
	if j != nil {
		return interrupted(j)
	}
	return nil
}

// member is the remount of one service of a group: under the group's lock,
// started as soon as it is remounted and checked by the group.
func member(opts Options, service string) Options {
	o := opts
	o.Service, o.Locked, o.NoDependents, o.NoWait, o.inGroup = service, true, true, true, true
	return o
}

// runGroup remounts opts.Service and deps, the services that join it: each is
// checked as Run checks it before anything changes; then the running ones are
// stopped, dependents first, each is remounted (and started) in Order, and the
// ones that were stopped are stopped again.
func runGroup(ctx context.Context, eng Engine, opts Options, deps []string) (*Result, error) {
	unlock, err := lockUnless(ctx, eng, opts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	opts.Locked = true
	if err := noGroup(opts); err != nil {
		return nil, err
	}
	g := &groupJournal{Version: 1, Project: opts.Project.Name, Service: opts.Service}
	var plans []*Result
	for _, s := range append([]string{opts.Service}, deps...) {
		o := member(opts, s)
		o.DryRun = true
		res, err := runOne(ctx, eng, o)
		if errors.Is(err, ErrNoContainer) && s != opts.Service {
			continue // nothing joins it now; compose creates it joined
		}
		if err != nil {
			if s != opts.Service {
				return nil, fmt.Errorf("service %s joins %s: %w", s, opts.Service, err)
			}
			return nil, err
		}
		g.Services = append(g.Services, s)
		plans = append(plans, res)
		running, err := serviceRunning(ctx, eng, g.Project, s)
		if err != nil {
			return nil, err
		}
		if running {
			g.Running = append(g.Running, s)
		}
	}
	if len(g.Services) == 1 {
		opts.NoDependents = true
		return runOne(ctx, eng, opts)
	}
	if opts.DryRun {
		root := plans[0]
		root.Plan = append([]string{fmt.Sprintf("stop %s first (they join %s); remount them after it, in this order, each keeping its writable layer",
			strings.Join(g.Services[1:], ", "), opts.Service)}, root.Plan...)
		root.Joined = plans[1:]
		return root, nil
	}
	if err := g.save(groupBegun); err != nil {
		return nil, err
	}
	return g.forward(ctx, eng, opts)
}

// serviceRunning reports whether one of the service's containers runs.
func serviceRunning(ctx context.Context, eng Engine, project, service string) (bool, error) {
	cs, err := compose.ServiceContainers(ctx, eng, project, service)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(cs, func(c container.Summary) bool { return c.State == container.StateRunning }), nil
}

// stopServices stops the running containers of the services, last first, each
// with its stop_signal and stop_grace_period.
func stopServices(ctx context.Context, eng Engine, opts Options, project string, services []string) error {
	for _, s := range slices.Backward(services) {
		cs, err := compose.ServiceContainers(ctx, eng, project, s)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.State != container.StateRunning {
				continue
			}
			opts.Progress.Emit(progress.Event{Step: progress.Stop, Target: s})
			o := client.ContainerStopOptions{}
			if ins, err := eng.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{}); err == nil && ins.Container.Config != nil {
				o.Signal = ins.Container.Config.StopSignal
			}
			if _, err := eng.ContainerStop(ctx, c.ID, o); err != nil {
				return fmt.Errorf("stopping service %s: %w", s, err)
			}
		}
	}
	return nil
}

// startServices starts the containers of the services, in order.
func startServices(ctx context.Context, eng Engine, opts Options, project string, services []string) error {
	for _, s := range services {
		cs, err := compose.ServiceContainers(ctx, eng, project, s)
		if err != nil {
			return err
		}
		for _, c := range cs {
			opts.Progress.Emit(progress.Event{Step: progress.Start, Target: s})
			if _, err := eng.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
				return fmt.Errorf("starting service %s: %w", s, err)
			}
		}
	}
	return nil
}

// forward runs the group remount from its journal's step to the end: stop the
// group, remount each member, check and settle, report; a failure rolls every
// service of the group back.
func (g *groupJournal) forward(ctx context.Context, eng Engine, opts Options) (*Result, error) {
	t0 := time.Now()
	if g.Step == groupBegun {
		if err := g.stopAll(ctx, eng, opts); err != nil {
			return nil, err
		}
	}
	results := map[string]*Result{}
	var lastUp time.Time
	if g.Step == groupStopped || g.Step == groupDone {
		var err error
		if lastUp, err = g.remountMembers(ctx, eng, opts, results); err != nil {
			return nil, err
		}
	}
	if g.Step == groupRemounted {
		if err := g.settle(ctx, eng, opts); err != nil {
			return nil, err
		}
	}
	if err := g.remove(); err != nil {
		return nil, err
	}
	return g.result(results, lastUp, t0), nil
}

// stopAll stops every service of the group and journals it.
func (g *groupJournal) stopAll(ctx context.Context, eng Engine, opts Options) error {
	g.StoppedAt = time.Now()
	if err := stopServices(ctx, eng, opts, g.Project, g.Services); err != nil {
		return g.fail(ctx, eng, opts, "stopping the group", err)
	}
	if err := g.save(groupStopped); err != nil {
		return g.fail(ctx, eng, opts, "journal", err)
	}
	return nil
}

// remountMembers remounts, in order, each member not done yet (resuming the
// one a kill interrupted), recording each in results; it returns when the last
// one started.
func (g *groupJournal) remountMembers(ctx context.Context, eng Engine, opts Options, results map[string]*Result) (time.Time, error) {
	var lastUp time.Time
	// Killed between recording a finished remount and removing its journal.
	if j, err := readJournal(g.Project); err != nil {
		return lastUp, err
	} else if j != nil && g.done(j.Service) {
		if err := j.remove(); err != nil {
			return lastUp, err
		}
	}
	for _, s := range g.Services {
		if g.done(s) {
			continue
		}
		res, err := g.remountMember(ctx, eng, opts, s)
		if err != nil {
			return lastUp, err
		}
		results[s] = res
		lastUp = time.Now() // a member starts at the end of its remount
	}
	if err := g.save(groupRemounted); err != nil {
		return lastUp, g.fail(ctx, eng, opts, "journal", err)
	}
	return lastUp, nil
}

// remountMember remounts one member of the group, or finishes its interrupted
// remount from that remount's own journal.
func (g *groupJournal) remountMember(ctx context.Context, eng Engine, opts Options, s string) (*Result, error) {
	o := member(opts, s)
	o.done = func(j *journal) error {
		if !g.done(j.Service) {
			g.Done = append(g.Done, *j)
		}
		g.Current = ""
		return g.save(groupDone)
	}
	var res *Result
	err := ErrNoJournal
	if g.Current == s {
		res, err = recoverJournal(ctx, eng, o, false)
	}
	if errors.Is(err, ErrNoJournal) {
		g.Current = s
		if err := g.save(g.Step); err != nil {
			return nil, g.fail(ctx, eng, opts, "journal", err)
		}
		opts.Progress.Emit(progress.Event{Step: progress.Remount, Target: s})
		res, err = runOne(ctx, eng, o)
	}
	if err != nil {
		return nil, g.fail(ctx, eng, opts, "remounting "+s, err)
	}
	return res, nil
}

// settle checks the services that were running and stops again those that
// were stopped before the group remount.
func (g *groupJournal) settle(ctx context.Context, eng Engine, opts Options) error {
	if !opts.NoWait {
		opts.Progress.Emit(progress.Event{Step: progress.Wait, Targets: g.Running, Timeout: opts.WaitTimeout})
		if err := checkServices(ctx, eng, g.Project, g.Running, opts.WaitTimeout); err != nil {
			return g.fail(ctx, eng, opts, "checking the group", err)
		}
	}
	var stopped []string
	for _, s := range g.Services {
		if !slices.Contains(g.Running, s) {
			stopped = append(stopped, s)
		}
	}
	if err := stopServices(ctx, eng, opts, g.Project, stopped); err != nil {
		return fmt.Errorf("stopping again the services that were stopped: %w", err)
	}
	return nil
}

// result is the root service's result with the members' joined to it.
func (g *groupJournal) result(results map[string]*Result, lastUp, t0 time.Time) *Result {
	root := results[g.Service]
	if root == nil {
		root = &Result{Service: g.Service}
	}
	for _, s := range g.Services[1:] {
		if res := results[s]; res != nil {
			root.Joined = append(root.Joined, res)
		}
	}
	if !g.StoppedAt.IsZero() && !lastUp.IsZero() {
		root.Downtime = lastUp.Sub(g.StoppedAt)
	}
	root.Total = time.Since(t0)
	return root
}

// checkServices runs Check on the containers of the services side by side.
func checkServices(ctx context.Context, eng Engine, project string, services []string, timeout time.Duration) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range services {
		cs, err := compose.ServiceContainers(ctx, eng, project, s)
		if err != nil {
			return err
		}
		for _, c := range cs {
			g.Go(func() error {
				if err := Check(ctx, eng, c.ID, timeout); err != nil {
					return fmt.Errorf("service %s: %w", s, err)
				}
				return nil
			})
		}
	}
	return g.Wait()
}

// fail rolls the group back after a failure.
func (g *groupJournal) fail(ctx context.Context, eng Engine, opts Options, step string, cause error) error {
	ctx = context.WithoutCancel(ctx) // the undo runs to its end after Ctrl-C
	restored, err := g.rollback(ctx, eng, opts)
	if err != nil {
		return &StepError{Step: step, Err: cause, Restored: fmt.Sprintf("rolling back failed too: %v (journal kept: %s)",
			err, GroupJournalPath(g.Project)), Pending: g.Service}
	}
	return &StepError{Step: step, Err: cause, Restored: restored, RolledBack: true}
}

// rollback restores every service of the group: an interrupted remount of one
// of them is rolled back; all are stopped, dependents first; the remounted ones
// get their previous config and writable layer back, and the others are
// rejoined when what they join was recreated, what others join first; the
// services that ran are started again in that order.
func (g *groupJournal) rollback(ctx context.Context, eng Engine, opts Options) (string, error) {
	opts.Progress.Emit(progress.Event{Step: progress.Rollback, Targets: g.Services})
	// Before any member's remount began, nothing was recreated: starting
	// again what ran is all there is to undo.
	changed := g.Current != "" || len(g.Done) > 0 || (g.Step != groupBegun && g.Step != groupStopped)
	if g.Current != "" {
		j, err := readJournal(g.Project)
		if err != nil {
			return "", err
		}
		if j != nil && j.Service == g.Current {
			j.Running = false // the group starts it below
			r := &run{eng: eng, opts: member(opts, j.Service), j: j, res: &Result{}}
			if _, err := r.rollback(ctx); err != nil {
				return "", fmt.Errorf("rolling back the remount of %s: %w", j.Service, err)
			}
		}
		g.Current = ""
		if err := g.save(g.Step); err != nil {
			return "", err
		}
	}
	if changed {
		if err := g.restore(ctx, eng, opts); err != nil {
			return "", err
		}
	}
	if err := startServices(ctx, eng, opts, g.Project, g.Running); err != nil {
		return "", err
	}
	if err := g.remove(); err != nil {
		return "", err
	}
	return fmt.Sprintf("rolled back: %s run their previous containers (config and writable layer) again", strings.Join(g.Services, ", ")), nil
}

// restore stops every member, dependents first, and puts them back, what
// others join first: a remounted member gets its previous config and layer
// from its snapshot; one not remounted is rejoined when what it joins was
// recreated.
func (g *groupJournal) restore(ctx context.Context, eng Engine, opts Options) error {
	if err := stopServices(ctx, eng, opts, g.Project, g.Services); err != nil {
		return err
	}
	for _, s := range g.Services {
		i := slices.IndexFunc(g.Done, func(j journal) bool { return j.Service == s })
		if i < 0 {
			if err := rejoin(ctx, eng, member(opts, s)); err != nil {
				return err
			}
			continue
		}
		j := g.Done[i]
		j.Running = false
		r := &run{eng: eng, opts: member(opts, s), j: &j, res: &Result{}}
		if _, err := r.rollback(ctx); err != nil {
			return fmt.Errorf("restoring %s: %w", s, err)
		}
		g.Done = slices.Delete(g.Done, i, i+1)
		if err := g.save(groupRestored); err != nil {
			return err
		}
	}
	return nil
}

// recoverGroup resumes or rolls back the interrupted group remount g.
func recoverGroup(ctx context.Context, eng Engine, opts Options, g *groupJournal, rollback bool) (*Result, error) {
	res := &Result{Service: g.Service, DryRun: opts.DryRun}
	if opts.DryRun {
		if rollback {
			res.Plan = []string{fmt.Sprintf("roll back %s from step %s", strings.Join(g.Services, ", "), g.Step)}
		} else {
			res.Plan = []string{fmt.Sprintf("resume the remount of %s after step %s", strings.Join(g.Services, ", "), g.Step)}
		}
		return res, nil
	}
	opts.Service = g.Service
	// A rollback that was interrupted is finished, whichever was asked.
	if rollback || g.Step == groupRestored {
		restored, err := g.rollback(ctx, eng, opts)
		if err != nil {
			return nil, fmt.Errorf("rolling back the remount of %s: %w (journal kept: %s)", strings.Join(g.Services, ", "), err, GroupJournalPath(g.Project))
		}
		res.Plan = []string{restored}
		return res, nil
	}
	if g.Step == groupBegun {
		// Nothing was stopped yet? Some may have been: stop again and go on.
		g.StoppedAt = time.Now()
	}
	return g.forward(ctx, eng, opts)
}

// Stale reports whether a container of the service joins (network, IPC or PID
// namespace container:<id>) a container that is gone: the service it joins was
// recreated, so it can't start, and compose would recreate it.
func Stale(ctx context.Context, eng Engine, project, service string) (bool, error) {
	cs, err := compose.ServiceContainers(ctx, eng, project, service)
	if err != nil {
		return false, err
	}
	r := &run{eng: eng}
	for _, c := range cs {
		ins, err := eng.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return false, fmt.Errorf("inspecting container %s: %w", c.ID, err)
		}
		hc := ins.Container.HostConfig
		if hc == nil {
			continue
		}
		for _, mode := range []string{string(hc.NetworkMode), string(hc.IpcMode), string(hc.PidMode)} {
			if ref, ok := strings.CutPrefix(mode, "container:"); ok && r.existing(ctx, ref) == "" {
				return true, nil
			}
		}
	}
	return false, nil
}

// rejoin recreates the service's container with its own config (and writable
// layer, through a snapshot) when it is Stale, joined to the current container
// of what it joins, and leaves it stopped.
func rejoin(ctx context.Context, eng Engine, opts Options) error {
	stale, err := Stale(ctx, eng, opts.Project.Name, opts.Service)
	if err != nil || !stale {
		return err
	}
	o := opts
	o.keepConfig, o.NoStart, o.NoWait, o.NoDependents, o.Locked = true, true, true, true, true
	if err := o.defaults(); err != nil {
		return err
	}
	opts.Progress.Emit(progress.Event{Step: progress.Rejoin, Target: opts.Service})
	if _, err := runOne(ctx, eng, o); err != nil {
		return fmt.Errorf("rejoining %s to what it joins: %w", opts.Service, err)
	}
	return nil
}
