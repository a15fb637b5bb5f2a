package migrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/moltctl/moltctl/internal/volumes"
)

// inspectSources learns what is at every bind source, at the files compose
// reads (secrets:, configs:, for the nesting rules) and at the directories of
// the included bind-backed volumes: through the engine when it can run the
// helper container (volumes.InspectSources: one container for the whole
// plan; the engine may be remote, the data stays there), else on this host
// (Plan.SourcesLocal). The directories the rules that need no look at them
// leave to convert are measured; host trees are bound without their submounts.
func (p *planner) inspectSources(ctx context.Context) error {
	var reqs []volumes.SourceRequest
	for _, src := range slices.Sorted(maps.Keys(p.uses)) {
		reqs = append(reqs, volumes.SourceRequest{Path: src, Bind: true, Measure: p.pathReason(src) == "",
			Shallow: systemReason(src) != ""})
	}
	for _, x := range composeFiles(p.project) {
		reqs = append(reqs, volumes.SourceRequest{Path: x.path, Shallow: systemReason(x.path) != ""})
	}
	for _, key := range slices.Sorted(maps.Keys(p.project.Volumes)) {
		if dev, ok := bindVolumeDevice(p.project.Volumes[key]); ok && p.rules.include[dev] != "" {
			reqs = append(reqs, volumes.SourceRequest{Path: dev, Measure: true, Shallow: systemReason(dev) != ""})
		}
	}
	var err error
	if eng, ok := p.eng.(volumes.Engine); ok && p.eng != nil {
		p.facts, err = volumes.InspectSources(ctx, eng, volumes.InspectSourcesOptions{Sources: reqs, Helper: p.opts.Helper, KeepHelper: p.opts.KeepHelper})
		if !errors.Is(err, volumes.ErrNotStatic) {
			if err != nil {
				return fmt.Errorf("planning the migration: %w", err)
			}
			return nil
		}
	}
	p.plan.SourcesLocal = p.eng != nil // without an engine this host is the only one to look at
	if p.facts, err = volumes.InspectSourcesLocal(reqs); err != nil {
		return fmt.Errorf("planning the migration: %w", err)
	}
	return nil
}

// under returns the path of p relative to the source o when p is o or lies
// below it where the engine runs ("." for the same directory). A missing p
// is compared by its name.
func under(facts map[string]*volumes.SourceInfo, p, o string) (string, bool) {
	if f := facts[p]; f == nil || f.Kind == volumes.KindMissing {
		rel, err := filepath.Rel(o, p)
		if err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
			return "", false
		}
		return filepath.ToSlash(rel), true
	}
	if f := facts[o]; f != nil {
		rel, ok := f.Under[p]
		return rel, ok
	}
	return "", false
}
