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
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/compose"
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
// refuses the plan for a real run). Each source is measured (Bytes, Files) on
// this host. eng may be nil when no engine answers: volume names are then not
// checked against the engine, and an owner that needs the image is
// OwnerUnknown with Plan.NoEngine set. Errors wrap ErrInvalid for bad
// options and compose.ErrCannotEdit for mounts the rewrite refuses.
func Prepare(ctx context.Context, eng Engine, p *compose.Project, opts PlanOptions) (*Plan, error) {
	project := p.Project
	for _, s := range opts.Services {
		if _, ok := project.Services[s]; !ok {
			return nil, fmt.Errorf("planning the migration: no service %q in project %s: %w", s, project.Name, ErrInvalid)
		}
	}
	names, flagged, err := volumeNames(project, opts.VolumeNames)
	if err != nil {
		return nil, err
	}
	ownerFlags := absKeys(project, opts.Owners)
	declared, err := compose.Locate(project.ComposeFiles, project.Environment)
	if err != nil {
		return nil, fmt.Errorf("planning the migration: %w", err)
	}
	plan := &Plan{Project: project.Name, Conversions: []Conversion{}, Kept: []Kept{}, Services: []string{}}

	// Every service counts, whatever the active profiles (rules.go).
	active := project.Services
	project = withAllServices(project)
	type bind = bindUse
	var binds []bind
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		for _, v := range project.Services[name].Volumes {
			if v.Type == types.VolumeTypeBind {
				binds = append(binds, bind{name, v})
			}
		}
	}
	uses := usesBySource(binds)
	rules, err := newKeepRules(project, opts, uses)
	if err != nil {
		return nil, err
	}
	selected := func(s string) bool { return len(opts.Services) == 0 || slices.Contains(opts.Services, s) }

	// Classify each distinct source once.
	reasons := map[string]string{}
	var dirs []string
	for _, b := range binds {
		src := filepath.Clean(b.vol.Source)
		if _, done := reasons[src]; done {
			continue
		}
		r := classify(src)
		if r == "" && (src == project.WorkingDir || strings.HasPrefix(project.WorkingDir, strings.TrimSuffix(src, "/")+"/")) {
			r = ReasonProject
		}
		if r == "" {
			r = rules.reason(src) // the default rules of rules.go, exclude and include
		}
		reasons[src] = r
		if r == "" {
			dirs = append(dirs, src)
		}
	}
	if err := rules.checkIncludes(reasons); err != nil {
		return nil, err
	}
	// Per-mount reasons: options, declaration, selection.
	convert := map[string]bool{}
	for _, b := range binds {
		src := filepath.Clean(b.vol.Source)
		if reasons[src] != "" || !selected(b.service) {
			continue
		}
		if mountReason(b.vol, declared, b.service) == "" {
			convert[src] = true
		}
	}
	// A source is converted only if every mount of it can be.
	for _, b := range binds {
		src := filepath.Clean(b.vol.Source)
		if convert[src] && mountReason(b.vol, declared, b.service) != "" {
			delete(convert, src)
		}
	}
	if err := keepUnevenShares(project, convert, reasons); err != nil {
		return nil, err
	}
	// Binds inside the directories of earlier migrations (recorded in the
	// volumes' x-moltctl-source) stay binds; then nested and overlapping
	// sources (nest.go).
	sort.Strings(dirs)
	previous := convertedBefore(project)
	for _, d := range dirs {
		if !convert[d] {
			continue
		}
		for _, o := range previous {
			if o != d && strings.HasPrefix(d, o+"/") {
				delete(convert, d)
				reasons[d] = ReasonNested + " " + o
				break
			}
		}
	}
	excludes := nestSources(uses, composeFiles(project), convert, reasons)

	taken := map[string]bool{}
	for k := range project.Volumes {
		taken[k] = true
	}
	owners := newOwnerResolver(eng)
	bySource := map[string]*Conversion{}
	for _, b := range binds {
		src := filepath.Clean(b.vol.Source)
		target := path.Clean(b.vol.Target)
		if !convert[src] {
			r := reasons[src]
			if r == "" {
				r = mountReason(b.vol, declared, b.service)
			}
			if r == "" && !selected(b.service) {
				r = ReasonUnselected
			}
			if r == "" {
				r = siblingReason(binds, src, declared)
			}
			plan.Kept = append(plan.Kept, Kept{Service: b.service, Source: src, Target: target, Reason: r})
			continue
		}
		c := bySource[src]
		if c == nil {
			c = &Conversion{Source: src, Exclude: excludes[src]}
			bySource[src] = c
		}
		c.Mounts = append(c.Mounts, Mount{Service: b.service, Target: target, ReadOnly: b.vol.ReadOnly,
			File: declared[compose.MountRef{Service: b.service, Target: target}]})
	}
	plan.Kept = append(plan.Kept, planBindVolumes(project, slices.Sorted(maps.Keys(rules.include)), declared, bySource)...)
	for _, c := range bySource {
		plan.Conversions = append(plan.Conversions, *c)
	}
	slices.SortFunc(plan.Conversions, func(a, b Conversion) int { return strings.Compare(a.Source, b.Source) })
	bases := keyBases(plan.Conversions)
	for i := range plan.Conversions {
		c := &plan.Conversions[i]
		key, err := chooseKey(ctx, eng, project, c, names[c.Source], bases[c.Source], taken)
		if err != nil {
			return nil, err
		}
		c.Volume, c.Name = key, project.Name+"_"+key
		taken[key] = true
		if c.Empty, err = isEmpty(c.Source); err != nil {
			return nil, fmt.Errorf("planning the migration: %w", err)
		}
		if c.Owner, c.OwnerFrom, err = owners.volumeOwner(ctx, project, c, cmp.Or(ownerFlags[c.Source], opts.Owner)); err != nil {
			return nil, err
		}
		if err := measure(plan, c); err != nil {
			return nil, err
		}
		for _, m := range c.Mounts {
			if _, ok := active[m.Service]; !ok {
				if !slices.Contains(plan.Inactive, m.Service) {
					plan.Inactive = append(plan.Inactive, m.Service)
				}
			} else if !slices.Contains(plan.Services, m.Service) {
				plan.Services = append(plan.Services, m.Service)
			}
		}
	}
	for src, key := range names {
		if _, ok := bySource[src]; !ok && flagged[src] {
			return nil, fmt.Errorf("planning the migration: volume name %s=%s: %s is not a directory bind mount this plan converts: %w", src, key, src, ErrInvalid)
		}
	}
	if err := checkOwnerFlags(ownerFlags, bySource); err != nil {
		return nil, err
	}
	plan.MissingImages = slices.Sorted(slices.Values(owners.missing))
	plan.NoEngine = owners.noEngine
	if err := noteVariables(project, plan); err != nil {
		return nil, err
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
	if plan.Edits, err = compose.Rewrite(project.ComposeFiles, project.Environment, convs); err != nil {
		return nil, fmt.Errorf("planning the migration: %w", err)
	}
	return plan, nil
}

// classify returns why the source stays a bind, or "" for a directory to convert.
func classify(src string) string {
	fi, err := os.Stat(src)
	if err != nil {
		return ReasonMissing
	}
	m := fi.Mode()
	switch {
	case m&os.ModeSocket != 0:
		return ReasonSocket
	case m&os.ModeDevice != 0:
		return ReasonDevice
	case m.IsRegular():
		return ReasonFile
	case !m.IsDir():
		return ReasonOther
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

func isEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading %s: %w", dir, err)
	}
	return true, nil
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

// statOwner returns the uid:gid of path.
func statOwner(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("no owner for %s", p)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid), nil
}
