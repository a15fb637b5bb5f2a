// Package migrate plans and performs the move of a compose project's host
// directory bind mounts into named volumes: which directory becomes which
// volume, who will own the data, what stays a bind mount and why, and the edits
// of the compose files.
package migrate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/volumes"
)

// Engine lists the Docker Engine calls planning makes: it checks volume names
// and reads an image's user database without running the image.
type Engine interface {
	VolumeInspect(ctx context.Context, name string, opts client.VolumeInspectOptions) (client.VolumeInspectResult, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ContainerCreate(ctx context.Context, opts client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	CopyFromContainer(ctx context.Context, id string, opts client.CopyFromContainerOptions) (client.CopyFromContainerResult, error)
	ContainerRemove(ctx context.Context, id string, opts client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerList(ctx context.Context, opts client.ContainerListOptions) (client.ContainerListResult, error)
}

// ErrNoEngine is what leaves an owner OwnerUnknown (Plan.NoEngine) when it can
// only be known from an image and no engine was given.
var ErrNoEngine = errors.New("no Docker Engine to read the image from")

// ErrInvalid is wrapped by Prepare's error for bad options (--owner,
// --volume-name, x-moltctl, unknown services).
var ErrInvalid = errors.New("invalid option")

// Plan is what a migration will do. Its JSON is the --json output of
// `moltctl migrate --dry-run`.
type Plan struct {
	// Project is the compose project name.
	Project string `json:"project"`
	// Conversions are the host directories that become named volumes, by source.
	Conversions []Conversion `json:"conversions"`
	// Kept are the bind mounts that stay binds, with the reason.
	Kept []Kept `json:"kept"`
	// Services are the services that must be recreated with the new mounts.
	Services []string `json:"services"`
	// MissingImages are the images, each named once and sorted, that are not present
	// locally, so that the owner of some conversions is OwnerUnknown. Run
	// refuses such a plan (ErrOwnerUnknown).
	MissingImages []string `json:"missing_images,omitempty"`
	// NoEngine: the owner of some conversions is OwnerUnknown because no
	// engine answered to read an image from (Prepare with a nil Engine).
	NoEngine bool `json:"no_engine,omitempty"`
	// Bytes and Files are the totals of the conversions.
	Bytes int64 `json:"bytes"`
	Files int64 `json:"files"`
	// Space is the room where the engine keeps its volumes (MeasureSpace); nil
	// when not measured. SpaceError says why it could not be measured.
	Space      *Space `json:"space,omitempty"`
	SpaceError string `json:"space_error,omitempty"`
	// SourcesLocal: an engine answered, but the bind sources were read on
	// this host's file system, not where the engine runs (a moltctl build
	// that can't be the helper: not static). Without an engine they are
	// always read here.
	SourcesLocal bool `json:"sources_local,omitempty"`
	// Inactive are services of profiles not active whose mounts are rewritten
	// too: they are not recreated, and use the volumes when started.
	Inactive []string `json:"inactive,omitempty"`
	// Edits are the compose file changes; not part of the JSON.
	Edits []compose.Edit `json:"-"`
}

// Conversion is one host directory that becomes one named volume.
type Conversion struct {
	// Volume is the key under the top-level volumes: of the compose file.
	Volume string `json:"volume"`
	// Name is the engine volume name compose will use: PROJECT_KEY.
	Name string `json:"name"`
	// Source is the absolute host directory.
	Source string `json:"source"`
	// Owner is the uid:gid the data will get, or OwnerUnknown.
	Owner string `json:"owner"`
	// OwnerFrom says where Owner came from: OwnerFromFlag, OwnerFromUser,
	// OwnerFromImage, "env:VARIABLE", OwnerFromSource or OwnerFromUnknown.
	OwnerFrom string `json:"owner_from"`
	// Bytes (allocated) and Files (entries below the source) measure the source.
	Bytes int64 `json:"bytes"`
	Files int64 `json:"files"`
	// Empty is true when the directory has no entries: the mounts get nocopy.
	Empty bool `json:"empty"`
	// Mounts are every service mount of Source.
	Mounts []Mount `json:"mounts"`
	// Exclude are the directories inside Source (relative, slash-separated)
	// that are converted into volumes of their own: the copy leaves their
	// content out and keeps each directory, empty, as the mount point.
	Exclude []string `json:"exclude,omitempty"`
	// FromVolume is set when Source is the directory of a bind-backed named
	// volume (driver_opts o: bind): the Mounts are mounts of that volume, and
	// move to the new volume Volume.
	FromVolume string `json:"from_volume,omitempty"`
}

// Mount is one service mount of a converted directory.
type Mount struct {
	Service  string `json:"service"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only"`
	// File is the absolute path of the compose file that declares the mount.
	File string `json:"file"`
	// Variables are the variables the source was written with (${UPLOAD_LOCATION}):
	// the rewrite replaces the source as a whole, so they no longer apply to it.
	Variables []string `json:"variables,omitempty"`
}

// Kept is a bind mount that stays a bind mount.
type Kept struct {
	Service string `json:"service"`
	Source  string `json:"source"`
	Target  string `json:"target"`
	Reason  string `json:"reason"`
}

// Reasons a bind mount is kept.
const (
	ReasonFile        = "single file"
	ReasonSocket      = "socket"
	ReasonDevice      = "device"
	ReasonMissing     = "missing source"
	ReasonSystem      = "system path"
	ReasonNested      = "inside another converted bind"
	ReasonOptions     = "bind propagation that a volume can't have"
	ReasonOther       = "not a directory"
	ReasonUnselected  = "service not selected"
	ReasonProject     = "contains the compose project"
	ReasonSibling     = "another mount of this directory stays a bind"
	ReasonUndeclared  = "declared outside the compose files (extends?)"
	extensionKey      = "x-moltctl"
	extensionNamesKey = "volume_names"
)

// PlanOptions tune Prepare.
type PlanOptions struct {
	// Services limits the plan to the mounts of these services; empty means all.
	// A directory also bound by an unselected service is still converted for
	// every service that binds it, since one directory becomes one shared volume.
	Services []string
	// Owner is --owner: "uid:gid", "uid", "name" or "name:group", names resolved
	// in the image's /etc/passwd and /etc/group. Empty: see Prepare.
	Owner string
	// Owners is --owner SOURCE=OWNER: the owner of one host directory (absolute,
	// or relative to the project directory), as Owner; it wins over Owner.
	Owners map[string]string
	// VolumeNames is --volume-name SOURCE=KEY: the top-level volume key of a host
	// directory (absolute, or relative to the project directory). It overrides the
	// x-moltctl.volume_names extension of the compose file.
	VolumeNames map[string]string
	// Exclude are --exclude SOURCE: directories (absolute, or relative to the
	// project directory) that stay binds, with everything below them; added to
	// x-moltctl.exclude.
	Exclude []string
	// Include are --include SOURCE: directories converted although the default
	// rules for build contexts and read-only mounts keep them, and the
	// directories of bind-backed named volumes; added to x-moltctl.include.
	Include []string
	// Helper is the helper container's binary the bind sources are inspected
	// with where the engine runs (see Prepare); KeepHelper keeps a helper
	// image that had to be imported for that (a run copies next).
	Helper     volumes.HelperOptions
	KeepHelper bool
}

// Prepare plans the migration of project's host directory bind mounts into named
// volumes and computes the compose file edits (Plan.Edits). It changes nothing.
//
// Each directory gets a key derived from its base name, qualified with its
// parent directories' names while another conversion has the same name
// (backend-src, frontend-src), else from the target's, made unique against the
// project's top-level volumes and against existing engine volumes that belong
// to something else. The owner is, in order: opts.Owners for the directory,
// opts.Owner, the service's user:, the image's USER resolved through the
// image's own /etc/passwd and /etc/group (read from a created, never started,
// container), for an image that starts as root MOLTCTL_USER, PUID[/PGID] or
// USERMAP_UID[/USERMAP_GID] from the service's environment, else the image's,
// else the directory's current owner (Conversion.OwnerFrom says which). An
// owner that needs an image that is not present locally is OwnerUnknown, the
// image listed once in Plan.MissingImages: planning goes on (Plan.Check
// refuses the plan for a real run). What is at each source (kind, emptiness,
// owner, size, mount points, nesting) is learned where the engine runs when
// eng is also a volumes.Engine (a *client.Client is): one helper container
// made from opts.Helper, so the client needs no access to the engine's file
// system; else on this host (Plan.SourcesLocal). eng may be nil when no
// engine answers: the sources are read on this host, volume names are not
// checked against the engine, and an owner that needs the image is
// OwnerUnknown with Plan.NoEngine set. Errors wrap ErrInvalid for bad options
// and compose.ErrCannotEdit for mounts the rewrite refuses.
func Prepare(ctx context.Context, eng Engine, cp *compose.Project, opts PlanOptions) (*Plan, error) {
	p, err := newPlanner(eng, cp.Project, opts)
	if err != nil {
		return nil, err
	}
	if err := p.inspectSources(ctx); err != nil {
		return nil, err
	}
	if err := p.classifySources(); err != nil {
		return nil, err
	}
	if err := p.chooseConversions(); err != nil {
		return nil, err
	}
	p.collectMounts()
	if err := p.completeConversions(ctx); err != nil {
		return nil, err
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return p.plan, nil
}

// planner carries a plan through Prepare's steps.
type planner struct {
	eng     Engine
	opts    PlanOptions
	project *types.Project // with every service, whatever the active profiles (rules.go)
	active  types.Services // the services of the active profiles
	// names and flagged: volumeNames; ownerFlags: --owner SOURCE=, by absolute source
	names      map[string]string
	flagged    map[string]bool
	ownerFlags map[string]string
	declared   map[compose.MountRef]string // where each mount is written
	binds      []bindUse                   // every bind mount, by service then order
	uses       map[string][]bindUse        // the binds by clean source
	rules      *keepRules
	// facts are what the engine's host has at each source (inspectSources).
	facts map[string]*volumes.SourceInfo
	// reasons: why each distinct source stays a bind ("" to convert); dirs:
	// the sources to convert by those reasons, convert: those still converted.
	reasons  map[string]string
	dirs     []string
	convert  map[string]bool
	excludes map[string][]string // nestSources
	bySource map[string]*Conversion
	owners   *ownerResolver
	plan     *Plan
}

// newPlanner checks the options and collects the project's bind mounts.
func newPlanner(eng Engine, project *types.Project, opts PlanOptions) (*planner, error) {
	for _, s := range opts.Services {
		if _, ok := project.Services[s]; !ok {
			return nil, fmt.Errorf("planning the migration: no service %q in project %s: %w", s, project.Name, ErrInvalid)
		}
	}
	p := &planner{eng: eng, opts: opts, active: project.Services, reasons: map[string]string{}, convert: map[string]bool{},
		bySource: map[string]*Conversion{},
		plan:     &Plan{Project: project.Name, Conversions: []Conversion{}, Kept: []Kept{}, Services: []string{}}}
	var err error
	if p.names, p.flagged, err = volumeNames(project, opts.VolumeNames); err != nil {
		return nil, err
	}
	p.ownerFlags = absKeys(project, opts.Owners)
	if p.declared, err = compose.Locate(project.ComposeFiles, project.Environment); err != nil {
		return nil, fmt.Errorf("planning the migration: %w", err)
	}
	p.project = withAllServices(project)
	for _, name := range slices.Sorted(maps.Keys(p.project.Services)) {
		for _, v := range p.project.Services[name].Volumes {
			if v.Type == types.VolumeTypeBind {
				p.binds = append(p.binds, bindUse{name, v})
			}
		}
	}
	p.uses = usesBySource(p.binds)
	if p.rules, err = newKeepRules(p.project, opts, p.uses); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *planner) selected(service string) bool {
	return len(p.opts.Services) == 0 || slices.Contains(p.opts.Services, service)
}

// pathReason is why src stays a bind whatever is there: a host tree, the
// project directory, the default rules, exclude and include (rules.go).
func (p *planner) pathReason(src string) string {
	if r := systemReason(src); r != "" {
		return r
	}
	if wd := p.project.WorkingDir; src == wd || strings.HasPrefix(wd, strings.TrimSuffix(src, "/")+"/") {
		return ReasonProject
	}
	return p.rules.reason(src)
}

// classifySources gives each distinct source its reason to stay a bind, or
// "" (then it is one of dirs), and checks the includes against them.
func (p *planner) classifySources() error {
	for _, b := range p.binds {
		src := filepath.Clean(b.vol.Source)
		if _, done := p.reasons[src]; done {
			continue
		}
		r := kindReason(p.facts[src])
		if r == "" {
			r = p.pathReason(src)
		}
		p.reasons[src] = r
		if r == "" {
			p.dirs = append(p.dirs, src)
		}
	}
	sort.Strings(p.dirs)
	return p.rules.checkIncludes(p.reasons)
}

// chooseConversions decides which directories convert: every mount of one
// must convert (options, declaration, selection), mounts written once for
// several services alike, none inside the directories of earlier
// migrations, and the nesting rules (nest.go).
func (p *planner) chooseConversions() error {
	for _, b := range p.binds {
		src := filepath.Clean(b.vol.Source)
		if p.reasons[src] != "" || !p.selected(b.service) {
			continue
		}
		if mountReason(b.vol, p.declared, b.service) == "" {
			p.convert[src] = true
		}
	}
	for _, b := range p.binds {
		src := filepath.Clean(b.vol.Source)
		if p.convert[src] && mountReason(b.vol, p.declared, b.service) != "" {
			delete(p.convert, src)
		}
	}
	if err := keepUnevenShares(p.project, p.facts, p.convert, p.reasons); err != nil {
		return err
	}
	// Binds inside the directories of earlier migrations (recorded in the
	// volumes' x-moltctl-source) stay binds.
	previous := convertedBefore(p.project)
	for _, d := range p.dirs {
		if !p.convert[d] {
			continue
		}
		for _, o := range previous {
			if o != d && strings.HasPrefix(d, o+"/") {
				delete(p.convert, d)
				p.reasons[d] = ReasonNested + " " + o
				break
			}
		}
	}
	p.excludes = nestSources(p.uses, composeFiles(p.project), p.facts, p.convert, p.reasons)
	return nil
}

// collectMounts puts each bind mount in its conversion or in Kept with its
// reason, and adds the bind-backed named volumes.
func (p *planner) collectMounts() {
	for _, b := range p.binds {
		src := filepath.Clean(b.vol.Source)
		target := path.Clean(b.vol.Target)
		if !p.convert[src] {
			r := p.reasons[src]
			if r == "" {
				r = mountReason(b.vol, p.declared, b.service)
			}
			if r == "" && !p.selected(b.service) {
				r = ReasonUnselected
			}
			if r == "" {
				r = siblingReason(p.binds, src, p.declared)
			}
			p.plan.Kept = append(p.plan.Kept, Kept{Service: b.service, Source: src, Target: target, Reason: r})
			continue
		}
		c := p.bySource[src]
		if c == nil {
			c = &Conversion{Source: src, Exclude: p.excludes[src]}
			p.bySource[src] = c
		}
		c.Mounts = append(c.Mounts, Mount{Service: b.service, Target: target, ReadOnly: b.vol.ReadOnly,
			File: p.declared[compose.MountRef{Service: b.service, Target: target}]})
	}
	p.plan.Kept = append(p.plan.Kept, planBindVolumes(p.project, slices.Sorted(maps.Keys(p.rules.include)), p.declared, p.facts, p.bySource)...)
	for _, c := range p.bySource {
		p.plan.Conversions = append(p.plan.Conversions, *c)
	}
	slices.SortFunc(p.plan.Conversions, func(a, b Conversion) int { return strings.Compare(a.Source, b.Source) })
}

// completeConversions gives each conversion its key, emptiness, owner and
// size, and lists the services to recreate.
func (p *planner) completeConversions(ctx context.Context) error {
	taken := map[string]bool{}
	for k := range p.project.Volumes {
		taken[k] = true
	}
	p.owners = newOwnerResolver(p.eng, p.facts)
	bases := keyBases(p.plan.Conversions)
	for i := range p.plan.Conversions {
		c := &p.plan.Conversions[i]
		key, err := chooseKey(ctx, p.eng, p.project, c, p.names[c.Source], bases[c.Source], taken)
		if err != nil {
			return err
		}
		c.Volume, c.Name = key, p.project.Name+"_"+key
		taken[key] = true
		f := p.facts[c.Source]
		c.Empty = f.Empty
		if c.Owner, c.OwnerFrom, err = p.owners.volumeOwner(ctx, p.project, c, cmp.Or(p.ownerFlags[c.Source], p.opts.Owner)); err != nil {
			return err
		}
		if !f.Measured {
			return fmt.Errorf("planning the migration: %q was not measured", c.Source)
		}
		c.Bytes, c.Files = f.Bytes, f.Files // a nested volume is counted once, in its own conversion
		p.plan.Bytes += c.Bytes
		p.plan.Files += c.Files
		for _, m := range c.Mounts {
			if _, ok := p.active[m.Service]; !ok {
				if !slices.Contains(p.plan.Inactive, m.Service) {
					p.plan.Inactive = append(p.plan.Inactive, m.Service)
				}
			} else if !slices.Contains(p.plan.Services, m.Service) {
				p.plan.Services = append(p.plan.Services, m.Service)
			}
		}
	}
	return nil
}

// finish checks the flags against the conversions, notes the variables and
// the missing images, and computes the compose file edits.
func (p *planner) finish() error {
	plan := p.plan
	for src, key := range p.names {
		if _, ok := p.bySource[src]; !ok && p.flagged[src] {
			return fmt.Errorf("planning the migration: volume name %s=%s: %s is not a directory bind mount this plan converts: %w", src, key, src, ErrInvalid)
		}
	}
	if err := checkOwnerFlags(p.ownerFlags, p.bySource); err != nil {
		return err
	}
	plan.MissingImages = slices.Sorted(slices.Values(p.owners.missing))
	plan.NoEngine = p.owners.noEngine
	if err := noteVariables(p.project, plan); err != nil {
		return err
	}
	sort.Strings(plan.Services)
	sort.Strings(plan.Inactive)
	slices.SortFunc(plan.Kept, func(a, b Kept) int {
		return strings.Compare(a.Service+"\x00"+a.Target, b.Service+"\x00"+b.Target)
	})
	var convs []compose.Conversion
	for _, c := range plan.Conversions {
		cc := compose.Conversion{Key: c.Volume, Source: c.Source, NoCopy: c.Empty, FromVolume: c.FromVolume}
		for _, m := range c.Mounts {
			cc.Mounts = append(cc.Mounts, compose.Mount{MountRef: compose.MountRef{Service: m.Service, Target: m.Target}, File: m.File})
		}
		convs = append(convs, cc)
	}
	var err error
	if plan.Edits, err = compose.Rewrite(p.project.ComposeFiles, p.project.Environment, convs); err != nil {
		return fmt.Errorf("planning the migration: %w", err)
	}
	return nil
}

// kindReason returns why a source stays a bind for what it is (missing, a
// file, a socket, a device), or "" for a directory.
func kindReason(f *volumes.SourceInfo) string {
	if f == nil {
		return ReasonMissing
	}
	switch f.Kind {
	case volumes.KindDir:
		return ""
	case volumes.KindSocket:
		return ReasonSocket
	case volumes.KindDevice:
		return ReasonDevice
	case volumes.KindFile:
		return ReasonFile
	case volumes.KindOther:
		return ReasonOther
	}
	return ReasonMissing
}

// classify returns why the source stays a bind for what it is or where, or
// "" for a directory to convert (the other rules aside).
func classify(src string, f *volumes.SourceInfo) string {
	if r := kindReason(f); r != "" {
		return r
	}
	return systemReason(src)
}

// mountReason says why one mount of a convertible directory can't be converted.
func mountReason(v types.ServiceVolumeConfig, declared map[compose.MountRef]string, service string) string {
	if v.Bind != nil && v.Bind.Propagation != "" {
		return ReasonOptions
	}
	if _, ok := declared[compose.MountRef{Service: service, Target: path.Clean(v.Target)}]; !ok {
		return ReasonUndeclared
	}
	return ""
}

// convertedBefore lists the sources recorded by earlier rewrites.
func convertedBefore(project *types.Project) []string {
	var out []string
	for _, v := range project.Volumes {
		if s, ok := v.Extensions[compose.SourceExtension].(string); ok && filepath.IsAbs(s) {
			out = append(out, filepath.Clean(s))
		}
	}
	return out
}

// volumeNames merges x-moltctl.volume_names with --volume-name (which wins),
// keyed by absolute source; flagged marks the sources named by flags.
func volumeNames(project *types.Project, flags map[string]string) (_ map[string]string, flagged map[string]bool, _ error) {
	out := map[string]string{}
	flagged = map[string]bool{}
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(project.WorkingDir, p)
		}
		return filepath.Clean(p)
	}
	if ext, ok := project.Extensions[extensionKey]; ok {
		m, ok := ext.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("planning the migration: %s must be a mapping: %w", extensionKey, ErrInvalid)
		}
		if raw, ok := m[extensionNamesKey]; ok {
			names, ok := raw.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("planning the migration: %s.%s must map source directories to keys: %w", extensionKey, extensionNamesKey, ErrInvalid)
			}
			for src, k := range names {
				key, ok := k.(string)
				if !ok || !validKey(key) {
					return nil, nil, fmt.Errorf("planning the migration: %s.%s: invalid volume key %v for %s: %w", extensionKey, extensionNamesKey, k, src, ErrInvalid)
				}
				out[abs(src)] = key
			}
		}
	}
	for src, key := range flags {
		if !validKey(key) {
			return nil, nil, fmt.Errorf("planning the migration: invalid volume key %s for %s (letters, digits, '.', '_', '-'; not a single letter): %w", key, src, ErrInvalid)
		}
		out[abs(src)] = key
		flagged[abs(src)] = true
	}
	seen := map[string]string{}
	for src, key := range out {
		if other, dup := seen[key]; dup {
			return nil, nil, fmt.Errorf("planning the migration: volume key %s given to both %s and %s: %w", key, other, src, ErrInvalid)
		}
		if _, exists := project.Volumes[key]; exists {
			return nil, nil, fmt.Errorf("planning the migration: volume key %s for %s is already a top-level volume: %w", key, src, ErrInvalid)
		}
		seen[key] = src
	}
	return out, flagged, nil
}

// validKey reports whether k is a usable volume key: letters, digits, '.', '_',
// '-', not starting with a punctuation mark, and not a single letter (which
// compose's short syntax reads as a Windows drive).
func validKey(k string) bool {
	if k == "" || k[0] == '.' || k[0] == '-' || k[0] == '_' || len(k) == 1 && (k[0]|0x20 >= 'a' && k[0]|0x20 <= 'z') {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// deriveKey makes a readable key from a path: its base name, lower-cased, with
// anything outside [a-z0-9_.-] turned into '-', leading dots dropped.
func deriveKey(p string) string {
	base := strings.ToLower(filepath.Base(p))
	var b strings.Builder
	for _, r := range base {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), ".-_")
}

// chooseKey picks the key of c: the requested one (which must be free), else
// base (keyBases), else a key derived from the first target, with -2, -3, ...
// appended until it collides with neither a taken key nor a foreign engine
// volume.
func chooseKey(ctx context.Context, eng Engine, project *types.Project, c *Conversion, requested, base string, taken map[string]bool) (string, error) {
	if requested != "" {
		if taken[requested] {
			return "", fmt.Errorf("planning the migration: volume key %s for %s is already used: %w", requested, c.Source, ErrInvalid)
		}
		if foreign, err := foreignVolume(ctx, eng, project.Name, requested); err != nil {
			return "", err
		} else if foreign {
			return "", fmt.Errorf("planning the migration: volume %s_%s for %s already exists and is not this project's volume %s: %w", project.Name, requested, c.Source, requested, ErrInvalid)
		}
		return requested, nil
	}
	if base == "" && len(c.Mounts) > 0 {
		base = deriveKey(c.Mounts[0].Target)
	}
	if base == "" {
		base = "data"
	}
	if !validKey(base) {
		base += "-data" // a single letter would read as a Windows drive
	}
	for i := 1; ; i++ {
		key := base
		if i > 1 {
			key = base + "-" + strconv.Itoa(i)
		}
		if taken[key] {
			continue
		}
		foreign, err := foreignVolume(ctx, eng, project.Name, key)
		if err != nil {
			return "", err
		}
		if !foreign {
			return key, nil
		}
	}
}

// foreignVolume reports whether the engine has a volume PROJECT_KEY that is not
// compose's volume KEY of this project. Without an engine it reports false.
func foreignVolume(ctx context.Context, eng Engine, project, key string) (bool, error) {
	if eng == nil {
		return false, nil
	}
	res, err := eng.VolumeInspect(ctx, project+"_"+key, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("planning the migration: checking volume %s_%s: %w", project, key, err)
	}
	l := res.Volume.Labels
	return !(l["com.docker.compose.project"] == project && l["com.docker.compose.volume"] == key), nil
}
