package remount

import (
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

func depsProject() *types.Project {
	svc := func(name string, set func(*types.ServiceConfig)) types.ServiceConfig {
		s := types.ServiceConfig{Name: name}
		if set != nil {
			set(&s)
		}
		return s
	}
	svcs := types.Services{
		"gateway": svc("gateway", nil),
		"cli":     svc("cli", func(s *types.ServiceConfig) { s.NetworkMode = "service:gateway" }),
		"logs":    svc("logs", func(s *types.ServiceConfig) { s.VolumesFrom = []string{"cli:ro"} }),
		"pid":     svc("pid", func(s *types.ServiceConfig) { s.Pid = "container:p-gateway-1" }),
		"restart": svc("restart", func(s *types.ServiceConfig) {
			s.DependsOn = types.DependsOnConfig{"gateway": {Condition: "service_started", Restart: true}}
		}),
		"plain": svc("plain", func(s *types.ServiceConfig) {
			s.DependsOn = types.DependsOnConfig{"gateway": {Condition: "service_started"}}
		}),
		"named":  svc("named", func(s *types.ServiceConfig) { s.ContainerName = "gw" }),
		"byname": svc("byname", func(s *types.ServiceConfig) { s.VolumesFrom = []string{"container:gw:rw"} }),
	}
	return &types.Project{Name: "p", Services: svcs}
}

func TestDependents(t *testing.T) {
	p := depsProject()
	for _, tc := range []struct {
		service string
		want    []string
	}{
		{"gateway", []string{"cli", "logs", "pid", "restart"}},
		{"cli", []string{"logs"}},
		{"named", []string{"byname"}},
		{"plain", nil},
	} {
		t.Run(tc.service, func(t *testing.T) {
			got := Dependents(p, tc.service)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Dependents(%s): got %v, want %v", tc.service, got, tc.want)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	p := depsProject()
	for _, tc := range []struct {
		in, want []string
	}{
		{[]string{"cli", "gateway"}, []string{"gateway", "cli"}},
		{[]string{"logs", "cli", "gateway", "plain"}, []string{"gateway", "cli", "logs", "plain"}},
		{[]string{"byname", "named"}, []string{"named", "byname"}},
	} {
		if got := Order(p, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Order(%v): got %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := WithDependents(p, []string{"cli"}); !slices.Equal(got, []string{"cli", "logs"}) {
		t.Errorf("WithDependents(cli): got %v, want [cli logs]", got)
	}
}

func TestSharedNamespace(t *testing.T) {
	for _, tc := range []struct {
		mode  container.NetworkMode
		strip bool
	}{
		{"container:abc", true},
		{"bridge", false},
		{"p_default", false},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			cfg := &container.Config{Hostname: "gw", Domainname: "example.org", ExposedPorts: network.PortSet{network.MustParsePort("80/tcp"): {}}}
			hc := &container.HostConfig{NetworkMode: tc.mode, DNS: nil, ExtraHosts: []string{"a:1.2.3.4"}, Links: []string{"x:y"}, PublishAllPorts: true}
			sharedNamespace(cfg, hc)
			stripped := cfg.Hostname == "" && cfg.Domainname == "" && cfg.ExposedPorts == nil && hc.ExtraHosts == nil && hc.Links == nil && !hc.PublishAllPorts
			kept := cfg.Hostname == "gw" && len(hc.ExtraHosts) == 1 && hc.PublishAllPorts
			if tc.strip && !stripped || !tc.strip && !kept {
				t.Errorf("mode %s: got %+v %+v, want stripped=%v", tc.mode, cfg, hc, tc.strip)
			}
		})
	}
}

func TestLayerChanges(t *testing.T) {
	mounts := []container.MountPoint{{Destination: "/data"}, {Destination: "/home/node/x"}}
	for _, tc := range []struct {
		paths []string
		want  int
	}{
		{[]string{"/data", "/home", "/home/node", "/home/node/x"}, 0},
		{[]string{"/data", "/home/node/.profile", "/opt"}, 2},
		{nil, 0},
	} {
		var changes []container.FilesystemChange
		for _, p := range tc.paths {
			changes = append(changes, container.FilesystemChange{Path: p})
		}
		if got := layerChanges(changes, mounts); got != tc.want {
			t.Errorf("layerChanges(%v): got %d, want %d", tc.paths, got, tc.want)
		}
	}
}
