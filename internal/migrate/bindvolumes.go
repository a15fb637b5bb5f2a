package migrate

import (
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/volumes"
)

// Reasons of bind-backed named volumes.
const (
	// ReasonBindVolume: a named volume whose local driver binds a host
	// directory (driver_opts o: bind, device: DIR) has a bind's ownership
	// problems; it converts when included (--include DIR).
	ReasonBindVolume = "bind-backed named volume (driver_opts o: bind); convert it with --include"
	// ReasonBindVolumeShared: its directory is also bound directly, or by
	// another bind-backed volume.
	ReasonBindVolumeShared = "bind-backed named volume whose directory is also mounted otherwise"
)

// bindVolumeDevice returns the host directory of a bind-backed volume: local
// driver, o listing bind (bind, rbind), an absolute device (compose resolves a
// relative one against the project directory only for driver: local and
// o: bind, before this sees it).
func bindVolumeDevice(v types.VolumeConfig) (string, bool) {
	if v.External || v.Driver != "" && v.Driver != "local" {
		return "", false
	}
	dev := v.DriverOpts["device"]
	o := strings.Split(v.DriverOpts["o"], ",")
	if !filepath.IsAbs(dev) || !slices.Contains(o, "bind") && !slices.Contains(o, "rbind") {
		return "", false
	}
	return filepath.Clean(dev), true
}

// planBindVolumes lists the service mounts of bind-backed named volumes
// (issue 15): each is kept with ReasonBindVolume, unless its directory is in
// include (absolute, or relative to the project directory), when it becomes a
// conversion from the volume into a new, plain named volume, with the same
// copy and ownership as a bind. bySource holds the bind conversions so far;
// the new conversions are added to it. facts are what is at the directories.
func planBindVolumes(project *types.Project, include []string, declared map[compose.MountRef]string, facts map[string]*volumes.SourceInfo, bySource map[string]*Conversion) []Kept {
	included := map[string]bool{}
	for _, s := range include {
		if !filepath.IsAbs(s) {
			s = filepath.Join(project.WorkingDir, s)
		}
		included[filepath.Clean(s)] = true
	}
	devices := map[string][]string{} // device -> volume keys
	for _, key := range slices.Sorted(maps.Keys(project.Volumes)) {
		if dev, ok := bindVolumeDevice(project.Volumes[key]); ok {
			devices[dev] = append(devices[dev], key)
		}
	}
	bound := map[string]bool{}
	for _, s := range project.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				bound[filepath.Clean(v.Source)] = true
			}
		}
	}
	var kept []Kept
	for _, dev := range slices.Sorted(maps.Keys(devices)) {
		keys := devices[dev]
		reason := ""
		switch {
		case len(keys) > 1 || bound[dev] || bySource[dev] != nil:
			reason = ReasonBindVolumeShared
		case !included[dev]:
			reason = ReasonBindVolume
		default:
			reason = classify(dev, facts[dev])
		}
		var mounts []Mount
		for _, name := range slices.Sorted(maps.Keys(project.Services)) {
			for _, v := range project.Services[name].Volumes {
				if v.Type != types.VolumeTypeVolume || !slices.Contains(keys, v.Source) {
					continue
				}
				target := path.Clean(v.Target)
				file := declared[compose.MountRef{Service: name, Target: target}]
				if file == "" && reason == "" {
					reason = ReasonUndeclared
				}
				mounts = append(mounts, Mount{Service: name, Target: target, ReadOnly: v.ReadOnly, File: file})
			}
		}
		if len(mounts) == 0 {
			continue
		}
		if reason != "" {
			for _, m := range mounts {
				kept = append(kept, Kept{Service: m.Service, Source: dev, Target: m.Target, Reason: reason})
			}
			continue
		}
		bySource[dev] = &Conversion{Source: dev, FromVolume: keys[0], Mounts: mounts}
	}
	return kept
}
