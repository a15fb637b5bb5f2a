package remount

import (
	"context"
	"slices"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// recorder records the create and connect requests clone makes, for the API
// versions this machine's engine (1.41) can't show: it answers as an engine of
// version would.
type recorder struct {
	Engine
	version  string
	create   client.ContainerCreateOptions
	connects []string
}

func (r *recorder) ClientVersion() string { return r.version }

func (r *recorder) ContainerCreate(_ context.Context, o client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	r.create = o
	return client.ContainerCreateResult{ID: "new"}, nil
}

func (r *recorder) NetworkConnect(_ context.Context, n string, _ client.NetworkConnectOptions) (client.NetworkConnectResult, error) {
	r.connects = append(r.connects, n)
	return client.NetworkConnectResult{}, nil
}

func TestCloneRequest(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	tmpl := container.InspectResponse{
		ID:     id,
		Name:   "/p-web-1",
		Config: &container.Config{Hostname: id[:12], Image: "base", Env: []string{"A=1"}},
		HostConfig: &container.HostConfig{
			NetworkMode: "p_default",
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Target: "/anon"}},
		},
		Mounts: []container.MountPoint{{Type: mount.TypeVolume, Name: "abc123", Destination: "/anon"}, {Type: mount.TypeVolume, Name: "def456", Destination: "/imgvol"}},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			"p_default": {Aliases: []string{"web", id[:12]}},
			"p_extra":   {Aliases: []string{"web-extra"}, IPAMConfig: &network.EndpointIPAMConfig{}},
		}},
	}
	for _, tc := range []struct {
		version   string
		endpoints []string
		connects  []string
	}{
		{"1.41", []string{"p_default"}, []string{"p_extra"}},
		{"1.43", []string{"p_default"}, []string{"p_extra"}},
		{"1.44", []string{"p_default", "p_extra"}, nil},
		{"1.52", []string{"p_default", "p_extra"}, nil},
	} {
		t.Run(tc.version, func(t *testing.T) {
			rec := &recorder{version: tc.version}
			r := &run{eng: rec}
			if _, err := r.clone(context.Background(), tmpl, "snap:1"); err != nil {
				t.Fatal(err)
			}
			var eps []string
			for n := range rec.create.NetworkingConfig.EndpointsConfig {
				eps = append(eps, n)
			}
			slices.Sort(eps)
			if !slices.Equal(eps, tc.endpoints) || !slices.Equal(rec.connects, tc.connects) {
				t.Errorf("got endpoints %v and connects %v, want %v and %v", eps, rec.connects, tc.endpoints, tc.connects)
			}
			if got := rec.create.NetworkingConfig.EndpointsConfig["p_default"].Aliases; !slices.Equal(got, []string{"web"}) {
				t.Errorf("aliases: got %v, want [web] (no stale short ID)", got)
			}
			c := rec.create
			if c.Name != "p-web-1" || c.Config.Image != "snap:1" || c.Config.Hostname != "" {
				t.Errorf("got name %q image %q hostname %q, want p-web-1, snap:1 and the default hostname", c.Name, c.Config.Image, c.Config.Hostname)
			}
			want := []mount.Mount{{Type: mount.TypeVolume, Source: "abc123", Target: "/anon"}, {Type: mount.TypeVolume, Source: "def456", Target: "/imgvol"}}
			if !slices.EqualFunc(c.HostConfig.Mounts, want, func(a, b mount.Mount) bool { return a.Type == b.Type && a.Source == b.Source && a.Target == b.Target }) {
				t.Errorf("mounts: got %+v, want %+v (anonymous volumes by name)", c.HostConfig.Mounts, want)
			}
			if tmpl.HostConfig.Mounts[0].Source != "" {
				t.Errorf("clone changed the template's mounts")
			}
		})
	}
}
