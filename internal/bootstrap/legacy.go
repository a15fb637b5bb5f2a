package bootstrap

import (
	"context"
	"errors"
	"fmt"
)

// errUnknownPreset: MOLTCTL_LEGACY names no preset.
var errUnknownPreset = errors.New("unknown legacy preset")

// legacyPlan is the legacy state migration to run after the drop.
type legacyPlan struct {
	preset, home string
}

// planLegacy validates the preset before anything changes.
// Placeholder until internal/statemigrate lands: it knows the preset names and
// migrates nothing.
func planLegacy(preset, home string) (*legacyPlan, error) {
	switch preset {
	case "moltbot", "openclaw":
		return &legacyPlan{preset: preset, home: home}, nil
	}
	return nil, fmt.Errorf("%q (want moltbot, openclaw or off): %w", preset, errUnknownPreset)
}

// run migrates and returns the warnings, one per line.
func (p *legacyPlan) run(ctx context.Context) ([]string, error) {
	return nil, nil
}
