package remount

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"github.com/moltctl/moltctl/internal/compose"
)

// joins reports whether service s of project p joins service target: it runs in
// target's network, IPC or PID namespace (network_mode/ipc/pid service:target, or
// container: one of target's container names), mounts its volumes (volumes_from),
// or depends on it with restart: true. Such a service must be stopped before
// target and recreated after it, joined to target's new container.
func joins(p *types.Project, s types.ServiceConfig, target string) bool {
	names := containerNames(p, target)
	ref := func(mode string) bool {
		if v, ok := strings.CutPrefix(mode, "service:"); ok {
			return v == target
		}
		if v, ok := strings.CutPrefix(mode, "container:"); ok {
			return slices.Contains(names, v)
		}
		return false
	}
	if ref(s.NetworkMode) || ref(s.Ipc) || ref(s.Pid) {
		return true
	}
	for _, vf := range s.VolumesFrom {
		if v, ok := strings.CutPrefix(vf, "container:"); ok {
			name, _, _ := strings.Cut(v, ":")
			if slices.Contains(names, name) {
				return true
			}
			continue
		}
		if name, _, _ := strings.Cut(vf, ":"); name == target {
			return true
		}
	}
	if d, ok := s.DependsOn[target]; ok && d.Restart {
		return true
	}
	return false
}

// containerNames are the names compose gives the containers of service s.
func containerNames(p *types.Project, s string) []string {
	svc, ok := p.Services[s]
	if !ok {
		return nil
	}
	if svc.ContainerName != "" {
		return []string{svc.ContainerName}
	}
	n := max(svc.GetScale(), 1)
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%s-%s-%d", p.Name, s, i))
	}
	return out
}

// Dependents returns the services of p that join service (see joins), directly
// or through another dependent, in Order.
func Dependents(p *types.Project, service string) []string {
	seen := map[string]bool{service: true}
	queue := []string{service}
	var out []string
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		for _, name := range p.ServiceNames() {
			if seen[name] || !joins(p, p.Services[name], t) {
				continue
			}
			seen[name] = true
			out = append(out, name)
			queue = append(queue, name)
		}
	}
	return Order(p, out)
}

// WithDependents returns services plus every service that joins one of them, in
// Order.
func WithDependents(p *types.Project, services []string) []string {
	set := slices.Clone(services)
	for _, s := range services {
		for _, d := range Dependents(p, s) {
			if !slices.Contains(set, d) {
				set = append(set, d)
			}
		}
	}
	return Order(p, set)
}

// Order sorts services so that each comes after every service of the list it
// joins (what others join comes first); otherwise by name. A cycle (which
// compose refuses) keeps the names' order for the services in it.
func Order(p *types.Project, services []string) []string {
	rest := slices.Clone(services)
	sort.Strings(rest)
	var out []string
	for len(rest) > 0 {
		progress := false
		for i := 0; i < len(rest); i++ {
			s := rest[i]
			ready := true
			for _, t := range rest {
				if t != s && joins(p, p.Services[s], t) {
					ready = false
					break
				}
			}
			if ready {
				out = append(out, s)
				rest = slices.Delete(rest, i, i+1)
				progress = true
				break
			}
		}
		if !progress {
			return append(out, rest...)
		}
	}
	return out
}

// sharedNamespace drops from a create request what the engine refuses, or
// ignores, with a joined (container:) network mode: the hostname and domain
// name (inspect reports the joined container's), DNS settings, extra hosts,
// links and ports. They all come from the joined container.
func sharedNamespace(cfg *container.Config, hc *container.HostConfig) {
	if !hc.NetworkMode.IsContainer() {
		return
	}
	cfg.Hostname, cfg.Domainname = "", ""
	cfg.ExposedPorts = nil
	hc.DNS, hc.DNSSearch, hc.DNSOptions, hc.ExtraHosts, hc.Links = nil, nil, nil, nil, nil
	hc.PortBindings, hc.PublishAllPorts = nil, false
}

// rejoinModes points the namespace modes of a container about to be created
// (network, IPC, PID as container:<id>) that name a container that no longer
// exists at the current container of the service the compose file says it
// joins: a rollback recreates a container whose old config names the joined
// service's previous container.
func (r *run) rejoinModes(ctx context.Context, labels map[string]string, hc *container.HostConfig) error {
	var svc types.ServiceConfig
	if r.opts.Project != nil {
		svc = r.opts.Project.Services[labels["com.docker.compose.service"]]
	}
	fix := func(mode, want string) (string, error) {
		ref, ok := strings.CutPrefix(mode, "container:")
		if !ok || r.existing(ctx, ref) != "" {
			return mode, nil
		}
		target, ok := strings.CutPrefix(want, "service:")
		if !ok {
			return "", fmt.Errorf("container %.12s it joins is gone", ref)
		}
		id, err := r.currentContainer(ctx, target)
		if err != nil {
			return "", err
		}
		return "container:" + id, nil
	}
	nm, err := fix(string(hc.NetworkMode), svc.NetworkMode)
	if err != nil {
		return fmt.Errorf("network_mode: %w", err)
	}
	hc.NetworkMode = container.NetworkMode(nm)
	ipc, err := fix(string(hc.IpcMode), svc.Ipc)
	if err != nil {
		return fmt.Errorf("ipc: %w", err)
	}
	hc.IpcMode = container.IpcMode(ipc)
	pid, err := fix(string(hc.PidMode), svc.Pid)
	if err != nil {
		return fmt.Errorf("pid: %w", err)
	}
	hc.PidMode = container.PidMode(pid)
	return nil
}

// currentContainer is the ID of the one container of the service.
func (r *run) currentContainer(ctx context.Context, service string) (string, error) {
	cs, err := compose.ServiceContainers(ctx, r.eng, r.opts.Project.Name, service)
	if err != nil {
		return "", err
	}
	if len(cs) == 0 {
		return "", fmt.Errorf("service %s has no container", service)
	}
	sort.Slice(cs, func(a, b int) bool { return cs[a].Names[0] < cs[b].Names[0] })
	return cs[0].ID, nil
}
