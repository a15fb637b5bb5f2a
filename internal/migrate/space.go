package migrate

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/volumes"
)

// Errors a real run refuses a plan with, before changing anything.
var (
	// ErrOwnerUnknown: the owner of some conversions needs an image that is
	// not present locally (Plan.MissingImages).
	ErrOwnerUnknown = errors.New("owner unknown")
	// ErrNoSpace: the data plus SpaceMargin does not fit where the engine
	// keeps its volumes. It is volumes.ErrNoSpace.
	ErrNoSpace = volumes.ErrNoSpace
)

// Space is the room for the plan's data where the engine keeps its volumes.
type Space struct {
	// Free is what is available there (bytes), as the engine's file system reports it.
	Free int64 `json:"free"`
	// Needed is the data to copy (Plan.Bytes); Margin is kept free on top of it.
	Needed int64 `json:"needed"`
	Margin int64 `json:"margin"`
	// FreeInodes is what is available there (0 when the file system has no limit).
	FreeInodes int64 `json:"free_inodes"`
}

// Fits reports whether the data and the margin fit.
func (s *Space) Fits() bool { return s.Needed+s.Margin <= s.Free }

// SpaceMargin is what a migration leaves free besides its data: 5% of the
// data, at least 64 MiB (the engine, the journal and the services keep
// writing while the copy runs).
func SpaceMargin(bytes int64) int64 {
	return max(bytes/20, 64<<20)
}

// MeasureSpace asks the engine how much room its volumes have
// (volumes.FreeSpace: a throwaway volume and a helper container, both removed)
// and sets plan.Space. The helper image it may import is kept only with
// keepHelper.
func MeasureSpace(ctx context.Context, eng volumes.Engine, plan *Plan, helper volumes.HelperOptions, keepHelper bool) error {
	o := volumes.FreeSpaceOptions{Helper: helper, KeepHelper: keepHelper}
	if spaceProbeDriverOpts != nil {
		o.DriverOpts, o.Labels = spaceProbeDriverOpts, spaceProbeLabels
	}
	sp, err := volumes.FreeSpace(ctx, eng, o)
	if err != nil {
		return err
	}
	plan.Space = &Space{Free: sp.Free, Needed: plan.Bytes, Margin: SpaceMargin(plan.Bytes), FreeInodes: sp.FreeInodes}
	return nil
}

// spaceProbeDriverOpts, set by tests, backs the throwaway volume of
// MeasureSpace with a small file system.
var spaceProbeDriverOpts map[string]string

// spaceProbeLabels, set by tests with spaceProbeDriverOpts, label that
// volume so the test can find its own among other runs'.
var spaceProbeLabels map[string]string

// Check refuses a plan a real run must not start: an unknown owner (error
// wrapping ErrOwnerUnknown, naming every missing image once), or data that
// does not fit (ErrNoSpace, with the numbers; only when Space was measured).
func (p *Plan) Check() error {
	var dirs []string
	for _, c := range p.Conversions {
		if c.OwnerFrom == OwnerFromUnknown {
			dirs = append(dirs, fmt.Sprintf("%q", c.Source))
		}
	}
	if len(dirs) > 0 {
		why := ErrNoEngine.Error()
		if len(p.MissingImages) > 0 {
			why = map[bool]string{true: "image", false: "images"}[len(p.MissingImages) == 1] +
				" not present locally: " + strings.Join(p.MissingImages, ", ")
		}
		return fmt.Errorf("%w for %s (%s)", ErrOwnerUnknown, strings.Join(dirs, ", "), why)
	}
	if p.Space != nil && !p.Space.Fits() {
		return fmt.Errorf("%w: the data needs %s (%d bytes) plus a margin of %s, the engine's volumes have %s (%d bytes) free",
			ErrNoSpace, HumanBytes(p.Space.Needed), p.Space.Needed, HumanBytes(p.Space.Margin), HumanBytes(p.Space.Free), p.Space.Free)
	}
	return nil
}

// HumanBytes renders n in binary units with one decimal (1.5 GiB).
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// preflight refuses a plan Run must not start (Plan.Check), measuring the
// free space first. The helper image is kept for the copy, or removed again
// when the plan is refused.
func preflight(ctx context.Context, eng volumes.Engine, plan *Plan, helper volumes.HelperOptions) error {
	if err := plan.Check(); err != nil {
		return err
	}
	if err := MeasureSpace(ctx, eng, plan, helper, true); err != nil {
		return err
	}
	if err := plan.Check(); err != nil {
		volumes.RemoveHelper(context.WithoutCancel(ctx), eng, helper)
		return err
	}
	return nil
}

// absKeys keys a SOURCE=VALUE flag map by absolute, clean source (relative
// sources are relative to the project directory).
func absKeys(project *types.Project, m map[string]string) map[string]string {
	out := map[string]string{}
	for src, v := range m {
		if !filepath.IsAbs(src) {
			src = filepath.Join(project.WorkingDir, src)
		}
		out[filepath.Clean(src)] = v
	}
	return out
}

// checkOwnerFlags refuses --owner SOURCE=... for a source the plan does not convert.
func checkOwnerFlags(flags map[string]string, converted map[string]*Conversion) error {
	for src, o := range flags {
		if _, ok := converted[src]; !ok {
			return fmt.Errorf("planning the migration: owner %s=%s: %q is not a directory bind mount this plan converts: %w", src, o, src, ErrInvalid)
		}
	}
	return nil
}
