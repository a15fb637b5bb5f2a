package migrate

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/volumes"
)

// Reasons of the rules of this file.
const (
	// ReasonShared: the mount is declared once for several service mounts (a
	// YAML anchor, a service others extend), and not all of them convert alike.
	ReasonShared = "declared once for several services"
	// ReasonSELinuxEmpty: an empty directory gets nocopy, and compose drops
	// the SELinux label of a volume mount with nocopy.
	ReasonSELinuxEmpty = "empty directory with an SELinux label (compose drops the label of a nocopy volume mount)"
)

// keepUnevenShares applies the rules about how mounts are written to the
// sources still to convert, deleting from convert and giving reasons:
//   - a mount entry several service mounts share (through a YAML anchor or
//     extends:) is rewritten once, for all of them: its source converts only
//     when each of them is a bind of that source in this project (not a
//     service of an inactive profile, not another source);
//   - a source mounted with an SELinux label (:z, :Z, bind.selinux) converts
//     with the label kept, unless it is empty (see ReasonSELinuxEmpty).
//
// Nothing else is held back: every other source converts as planned.
func keepUnevenShares(project *types.Project, facts map[string]*volumes.SourceInfo, convert map[string]bool, reasons map[string]string) error {
	decls, err := compose.Declarations(project.ComposeFiles, project.Environment)
	if err != nil {
		return fmt.Errorf("planning the migration: %w", err)
	}
	source := map[compose.MountRef]string{}
	labelled := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		for _, v := range project.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			src := filepath.Clean(v.Source)
			source[compose.MountRef{Service: name, Target: path.Clean(v.Target)}] = src
			if v.Bind != nil && v.Bind.SELinux != "" {
				labelled[src] = true
			}
		}
	}
	for _, ref := range slices.SortedFunc(maps.Keys(source), compareRefs) {
		src := source[ref]
		if !convert[src] {
			continue
		}
		d := decls[ref]
		var uneven []compose.MountRef
		for _, r := range d.Shared {
			if source[r] != src {
				uneven = append(uneven, r)
			}
		}
		if len(uneven) > 0 {
			delete(convert, src)
			reasons[src] = fmt.Sprintf("%s through %s (%s); %s would change with it without being converted",
				ReasonShared, d.Via, serviceList(d.Shared), serviceList(uneven))
		}
	}
	for _, src := range slices.Sorted(maps.Keys(labelled)) {
		if !convert[src] {
			continue
		}
		if facts[src].Empty {
			delete(convert, src)
			reasons[src] = ReasonSELinuxEmpty
		}
	}
	return nil
}

func compareRefs(a, b compose.MountRef) int {
	return strings.Compare(a.Service+"\x00"+a.Target, b.Service+"\x00"+b.Target)
}

// serviceList names the services of refs, each once, in order.
func serviceList(refs []compose.MountRef) string {
	var names []string
	for _, r := range refs {
		if !slices.Contains(names, r.Service) {
			names = append(names, r.Service)
		}
	}
	return "services " + strings.Join(names, ", ")
}
