package remount

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/progress"
)

const labelNumber = "com.docker.compose.container-number"

// replica narrows the service's containers to the one being remounted: the
// replica named by opts.replicaName, or the only container. A scaled service
// is remounted through runReplicas.
func (r *run) replica(cs []container.Summary) ([]container.Summary, error) {
	name := r.opts.Service
	if r.opts.replicaName == "" {
		svc := r.opts.Project.Services[name]
		if n := svc.GetScale(); n > 1 {
			return nil, fmt.Errorf("service %s has scale %d: %w here; moltctl remount %s remounts its replicas one at a time", name, n, ErrUnsupported, name)
		}
		if len(cs) > 1 {
			return nil, fmt.Errorf("service %s has %d containers: %w here; moltctl remount %s remounts them one at a time", name, len(cs), ErrUnsupported, name)
		}
		return cs, nil
	}
	for _, c := range cs {
		if slices.Contains(c.Names, "/"+r.opts.replicaName) {
			return []container.Summary{c}, nil
		}
	}
	return nil, fmt.Errorf("replica %s of service %s: %w", r.opts.replicaName, name, ErrNoContainer)
}

// replicas reports whether the service is scaled (scale > 1 or more than one
// container): Run then remounts it one replica at a time.
func replicas(ctx context.Context, eng Engine, opts Options) (bool, error) {
	svc, ok := opts.Project.Services[opts.Service]
	if !ok {
		return false, nil // preflight names the error
	}
	if svc.GetScale() > 1 {
		return true, nil
	}
	cs, err := compose.ServiceContainers(ctx, eng, opts.Project.Name, opts.Service)
	return len(cs) > 1, err
}

// runReplicas remounts a scaled service one replica at a time, the others
// serving meanwhile: compose creates one more container of the service with
// its current config (`up --no-start --no-deps --no-recreate --scale`), which
// is inspected and removed; each replica is then remounted onto that template
// under its own name and number, keeping its own writable layer and
// anonymous volumes, and checked before the next one. A failing replica is
// rolled back and the remount stops there (the replicas done stay remounted).
func runReplicas(ctx context.Context, eng Engine, opts Options) (*Result, error) {
	unlock, err := lockUnless(ctx, eng, opts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	opts.Locked = true
	if err := noGroup(opts); err != nil {
		return nil, err
	}
	if err := noJournal(opts.Project.Name); err != nil {
		return nil, err
	}
	if deps := Dependents(opts.Project.Project, opts.Service); len(deps) > 0 {
		return nil, fmt.Errorf("service %s has replicas and %s join it: %w", opts.Service, strings.Join(deps, ", "), ErrUnsupported)
	}
	cs, err := compose.ServiceContainers(ctx, eng, opts.Project.Name, opts.Service)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("service %s: %w", opts.Service, ErrNoContainer)
	}
	sort.Slice(cs, func(a, b int) bool { return number(cs[a]) < number(cs[b]) })
	// Every replica is checked before anything changes.
	var plans []*Result
	for _, c := range cs {
		o := opts
		o.replicaName, o.DryRun, o.NoDependents = containerName(c.Names), true, true
		res, err := runOne(ctx, eng, o)
		if err != nil {
			return nil, err
		}
		plans = append(plans, res)
	}
	if opts.DryRun {
		root := plans[0]
		root.Plan = append([]string{fmt.Sprintf("remount the %d replicas one at a time, the others serving, on a container compose creates for the current config (scale %d, then removed)",
			len(cs), len(cs)+1)}, root.Plan...)
		root.Joined = plans[1:]
		return root, nil
	}
	opts.Progress.Emit(progress.Event{Step: progress.Template, Command: []string{"up", "--no-start", "--no-recreate", "--scale", fmt.Sprintf("%s=%d", opts.Service, len(cs)+1)}})
	t, err := template(ctx, eng, opts, cs)
	if err != nil {
		return nil, err
	}
	var root *Result
	for _, c := range cs {
		o := opts
		o.replicaName, o.template, o.NoDependents = containerName(c.Names), &t, true
		opts.Progress.Emit(progress.Event{Step: progress.Replica, Target: o.replicaName})
		res, err := runOne(ctx, eng, o)
		if err != nil {
			done := 0
			if root != nil {
				done = 1 + len(root.Joined)
			}
			return root, fmt.Errorf("replica %s (%d of %d remounted before it): %w", o.replicaName, done, len(cs), err)
		}
		if root == nil {
			root = res
		} else {
			root.Joined = append(root.Joined, res)
		}
	}
	return root, nil
}

func number(c container.Summary) int {
	n, _ := strconv.Atoi(c.Labels[labelNumber])
	return n
}

// template has compose create one more container of the service with its
// current config, and returns its inspect after removing it (and its
// anonymous volumes).
func template(ctx context.Context, eng Engine, opts Options, cs []container.Summary) (container.InspectResponse, error) {
	cli, err := opts.Project.CLI(ctx)
	if err != nil {
		return container.InspectResponse{}, err
	}
	if _, err := cli.Run(ctx, "up", "--no-start", "--no-deps", "--no-recreate", "--pull", "never", "--no-build",
		"--scale", fmt.Sprintf("%s=%d", opts.Service, len(cs)+1), opts.Service); err != nil {
		return container.InspectResponse{}, err
	}
	now, err := compose.ServiceContainers(ctx, eng, opts.Project.Name, opts.Service)
	if err != nil {
		return container.InspectResponse{}, err
	}
	var t container.InspectResponse
	found := false
	for _, c := range now {
		if slices.ContainsFunc(cs, func(o container.Summary) bool { return o.ID == c.ID }) {
			continue
		}
		if !found {
			ins, err := eng.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
			if err != nil {
				return t, fmt.Errorf("inspecting compose's template container: %w", err)
			}
			t, found = ins.Container, true
		}
		if _, err := eng.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			return t, fmt.Errorf("removing compose's template container: %w", err)
		}
	}
	if !found {
		return t, fmt.Errorf("docker compose created no container for service %s", opts.Service)
	}
	return t, nil
}

// replicaTemplate is compose's template t made into the container of replica
// old: old's ID (the step that removes compose's container removes old, after
// the commit) and name, number, network aliases, and anonymous volumes.
func replicaTemplate(t, old container.InspectResponse) container.InspectResponse {
	n := t
	cfg := *t.Config
	cfg.Labels = maps.Clone(t.Config.Labels)
	cfg.Labels[labelNumber] = old.Config.Labels[labelNumber]
	cfg.Hostname = ""
	n.Config = &cfg
	n.ID, n.Name = old.ID, old.Name
	tName, oName := strings.TrimPrefix(t.Name, "/"), strings.TrimPrefix(old.Name, "/")
	if t.NetworkSettings != nil {
		ns := *t.NetworkSettings
		ns.Networks = map[string]*network.EndpointSettings{}
		for k, ep := range t.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			e := *ep
			e.Aliases = nil
			for _, a := range ep.Aliases {
				if a == tName {
					a = oName
				}
				if len(t.ID) >= 12 && a == t.ID[:12] {
					continue
				}
				e.Aliases = append(e.Aliases, a)
			}
			ns.Networks[k] = &e
		}
		n.NetworkSettings = &ns
	}
	// Anonymous volumes (compose's mount without a source, or an image VOLUME):
	// the replica keeps its own.
	named := map[string]bool{}
	if t.HostConfig != nil {
		for _, m := range t.HostConfig.Mounts {
			if m.Source != "" {
				named[m.Target] = true
			}
		}
		for _, b := range t.HostConfig.Binds {
			if parts := strings.Split(b, ":"); len(parts) >= 2 {
				named[parts[1]] = true
			}
		}
	}
	oldVol := map[string]string{}
	for _, m := range old.Mounts {
		if m.Type == "volume" {
			oldVol[m.Destination] = m.Name
		}
	}
	n.Mounts = slices.Clone(t.Mounts)
	for i, m := range n.Mounts {
		if m.Type == "volume" && !named[m.Destination] && oldVol[m.Destination] != "" {
			n.Mounts[i].Name = oldVol[m.Destination]
		}
	}
	return n
}
