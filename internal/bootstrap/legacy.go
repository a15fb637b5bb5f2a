package bootstrap

import (
	"context"

	"github.com/moltctl/moltctl/internal/statemigrate"
)

// legacyPlan is the legacy state migration to run after the drop.
type legacyPlan struct {
	rules []statemigrate.Rule
}

// planLegacy builds the preset's rules under home before anything changes; an
// unknown name is statemigrate.ErrUnknownPreset.
func planLegacy(preset, home string) (*legacyPlan, error) {
	rules, err := statemigrate.Preset(preset, home)
	if err != nil {
		return nil, err
	}
	return &legacyPlan{rules: rules}, nil
}

// dirs returns the legacy and target directories of the rules, each once.
func (p *legacyPlan) dirs() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range p.rules {
		for _, d := range []string{r.Legacy, r.Target} {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// run migrates (statemigrate locks beside each target, so bootstraps starting
// at the same moment take turns) and returns the outcomes' warnings, one line
// each. An error is one statemigrate could not turn into a warning.
func (p *legacyPlan) run(ctx context.Context) ([]string, error) {
	outcomes, err := statemigrate.Migrate(ctx, statemigrate.Options{Rules: p.rules})
	var warnings []string
	for _, o := range outcomes {
		if o.Warning != "" {
			warnings = append(warnings, o.Warning)
		}
	}
	return warnings, err
}
