package migrate

// What stays a bind by default (beyond the kind of the source, see classify),
// the user's exclude and include, and the services of inactive profiles.

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/compose"
)

// Reasons a bind mount is kept by the default rules of rules.go; the plan
// appends what the rule matched (a service, a path) after the constant.
const (
	ReasonHome        = "a home directory"
	ReasonCredentials = "credentials in a home directory"
	ReasonUserFolder  = "a user folder"
	ReasonExcluded    = "excluded"
	ReasonDockerShare = "shared with containers started through the Docker socket"
	ReasonBuild       = "source code: in the build context of service"
	ReasonReadOnly    = "read-only in every service that mounts it"
)

// credentialDirs are the home directory's folders of keys and tokens.
var credentialDirs = []string{".ssh", ".gnupg", ".docker", ".kube", ".aws"}

// userFolders are the XDG user directories' usual names, besides what
// ~/.config/user-dirs.dirs names.
var userFolders = []string{"Desktop", "Documents", "Downloads", "Music", "Pictures", "Videos", "Public", "Templates"}

// extension keys of x-moltctl read here.
const (
	extensionExcludeKey = "exclude"
	extensionIncludeKey = "include"
)

// bindUse is one bind mount of a source by a service (of any profile).
type bindUse struct {
	service string
	vol     types.ServiceVolumeConfig
}

// keepRules decide which convertible directories stay binds by default.
type keepRules struct {
	project *types.Project
	uses    map[string][]bindUse // by clean source
	exclude map[string]string    // clean absolute source -> where it was said
	include map[string]string
	// sources given in PlanOptions.Exclude and Include -> the value as given, for errors
	flaggedExclude, flaggedInclude map[string]string
}

// newKeepRules reads x-moltctl.exclude/include and the flags (which add to them).
func newKeepRules(project *types.Project, opts PlanOptions, uses map[string][]bindUse) (*keepRules, error) {
	k := &keepRules{project: project, uses: uses, exclude: map[string]string{}, include: map[string]string{},
		flaggedExclude: map[string]string{}, flaggedInclude: map[string]string{}}
	if ext, ok := project.Extensions[extensionKey].(map[string]any); ok {
		for _, key := range []string{extensionExcludeKey, extensionIncludeKey} {
			raw, ok := ext[key]
			if !ok {
				continue
			}
			list, ok := raw.([]any)
			if !ok {
				return nil, fmt.Errorf("planning the migration: %s.%s must be a list of source directories: %w", extensionKey, key, ErrInvalid)
			}
			for _, v := range list {
				s, ok := v.(string)
				if !ok || s == "" {
					return nil, fmt.Errorf("planning the migration: %s.%s: %q is not a source directory: %w", extensionKey, key, fmt.Sprint(v), ErrInvalid)
				}
				k.add(key, projectPath(project, s), extensionKey)
			}
		}
	}
	for _, s := range opts.Exclude {
		k.add(extensionExcludeKey, projectPath(project, s), "--exclude")
		k.flaggedExclude[projectPath(project, s)] = s
	}
	for _, s := range opts.Include {
		k.add(extensionIncludeKey, projectPath(project, s), "--include")
		k.flaggedInclude[projectPath(project, s)] = s
	}
	for src := range k.include {
		if k.excluded(src) != "" {
			return nil, fmt.Errorf("planning the migration: %q is both excluded and included: %w", src, ErrInvalid)
		}
	}
	// Also named: a directory converted before (planning again after a
	// migration is no error) and the directory of a bind-backed named volume.
	known := convertedBefore(project)
	for _, v := range project.Volumes {
		if dev, ok := bindVolumeDevice(v); ok {
			known = append(known, dev)
		}
	}
	for i, flagged := range []map[string]string{k.flaggedExclude, k.flaggedInclude} {
		excluding := i == 0 // an exclude may name a directory above the sources
		for _, src := range slices.Sorted(maps.Keys(flagged)) {
			_, bound := uses[src]
			if !bound && !slices.Contains(known, src) && !(excluding && k.holdsSource(src)) {
				return nil, fmt.Errorf("planning the migration: %w", &OptionError{Option: []string{"exclude", "include"}[i], Value: flagged[src],
					Err: fmt.Errorf("no bind mount of the project has the source %q: %w", src, ErrInvalid)})
			}
		}
	}
	return k, nil
}

func (k *keepRules) add(key, src, origin string) {
	if key == extensionExcludeKey {
		k.exclude[src] = origin
	} else {
		k.include[src] = origin
	}
}

// holdsSource reports whether a bind source is at or below dir.
func (k *keepRules) holdsSource(dir string) bool {
	for src := range k.uses {
		if within(src, dir) {
			return true
		}
	}
	return false
}

// projectPath makes p absolute: ~/ is the user's home, a relative path is
// relative to the project directory.
func projectPath(project *types.Project, p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = home + p[1:]
		}
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(project.WorkingDir, p)
	}
	return filepath.Clean(p)
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// excluded returns where src (or a directory above it) was excluded, or "".
func (k *keepRules) excluded(src string) string {
	for dir, origin := range k.exclude {
		if within(src, dir) {
			return origin
		}
	}
	return ""
}

// reason returns why the directory src stays a bind by default, or "" to
// convert it. Included sources skip the build-context and read-only rules.
func (k *keepRules) reason(src string) string {
	if r := homeReason(src, hostHomes(src), k.project.WorkingDir); r != "" {
		return r
	}
	if origin := k.excluded(src); origin != "" {
		return ReasonExcluded + " (" + origin + ")"
	}
	if s := k.dockerShared(src); s != "" {
		return ReasonDockerShare + " (service " + s + " binds it at the same path and mounts the Docker socket)"
	}
	if k.include[src] != "" {
		return ""
	}
	if s := k.buildContext(src); s != "" {
		return ReasonBuild + " " + s
	}
	if uses := k.uses[src]; len(uses) > 0 && !slices.ContainsFunc(uses, func(u bindUse) bool { return !u.vol.ReadOnly }) {
		return ReasonReadOnly
	}
	return ""
}

// checkIncludes refuses an include of a source that stays a bind for a rule
// --include can't override (host trees, files, sockets, devices, homes, the
// project directory, exclusions): reasons are the per-source reasons.
func (k *keepRules) checkIncludes(reasons map[string]string) error {
	for _, src := range slices.Sorted(maps.Keys(k.include)) {
		if r := reasons[src]; r != "" {
			err := fmt.Errorf("the source stays a bind (%s), which include can't override: %w", r, ErrInvalid)
			if v, ok := k.flaggedInclude[src]; ok {
				return fmt.Errorf("planning the migration: %w", &OptionError{Option: "include", Value: v, Err: err})
			}
			return fmt.Errorf("planning the migration: %s.%s %q: %w", extensionKey, extensionIncludeKey, src, err)
		}
	}
	return nil
}

// dockerShared returns a service that binds src at the same path inside and
// mounts the Docker socket: containers it starts bind the host path too.
func (k *keepRules) dockerShared(src string) string {
	for _, u := range k.uses[src] {
		if path.Clean(u.vol.Target) != src {
			continue
		}
		for _, v := range k.project.AllServices()[u.service].Volumes {
			if v.Type == types.VolumeTypeBind && (path.Base(v.Source) == "docker.sock" ||
				path.Clean(v.Target) == "/var/run/docker.sock" || path.Clean(v.Target) == "/run/docker.sock") {
				return u.service
			}
		}
	}
	return ""
}

// buildContext returns "SERVICE (CONTEXT)" for a service whose local build
// context is src or holds it.
func (k *keepRules) buildContext(src string) string {
	all := k.project.AllServices()
	for _, name := range slices.Sorted(maps.Keys(all)) {
		b := all[name].Build
		if b == nil || b.Context == "" || strings.Contains(b.Context, "://") || !filepath.IsAbs(b.Context) {
			continue
		}
		if ctx := filepath.Clean(b.Context); within(src, ctx) {
			return name + " (" + ctx + ")"
		}
	}
	return ""
}

// hostHomes lists the home directories src may be in: $HOME, /root, the
// /home/NAME of the path, and the homes of /etc/passwd's users (uid 0 or >= 1000).
// A variable for tests.
var hostHomes = func(src string) []string {
	homes := []string{"/root"}
	if h := os.Getenv("HOME"); h != "" && h != "/" {
		homes = append(homes, filepath.Clean(h))
	}
	if rest, ok := strings.CutPrefix(src, "/home/"); ok && rest != "" {
		name, _, _ := strings.Cut(rest, "/")
		homes = append(homes, "/home/"+name)
	}
	if f, err := os.Open("/etc/passwd"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 6 || fields[5] == "" || fields[5] == "/" {
				continue
			}
			var uid int
			if _, err := fmt.Sscanf(fields[2], "%d", &uid); err == nil && (uid == 0 || uid >= 1000 && uid < 65534) {
				homes = append(homes, filepath.Clean(fields[5]))
			}
		}
	}
	return homes
}

// homeReason keeps a home directory itself, its credential directories and
// its user folders (the XDG ones, and those ~/.config/user-dirs.dirs names),
// of the deepest home src is in. A project kept in a user folder
// (~/Documents/myapp) still has its own directories converted.
func homeReason(src string, homes []string, project string) string {
	home := ""
	for _, h := range homes {
		if within(src, h) && len(h) > len(home) {
			home = h
		}
	}
	if home == "" {
		return ""
	}
	if src == home {
		return ReasonHome
	}
	for _, d := range credentialDirs {
		if within(src, filepath.Join(home, d)) {
			return ReasonCredentials + " (" + filepath.Join(home, d) + ")"
		}
	}
	for _, d := range append(xdgUserDirs(home), userFolders...) {
		dir := d
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(home, d)
		}
		if dir != home && within(src, dir) && !(within(project, dir) && within(src, project)) {
			return ReasonUserFolder + " (" + dir + ")"
		}
	}
	return ""
}

// xdgUserDirs reads the directories home/.config/user-dirs.dirs names
// (XDG_PICTURES_DIR="$HOME/Bilder"), as absolute paths.
func xdgUserDirs(home string) []string {
	b, err := os.ReadFile(filepath.Join(home, ".config", "user-dirs.dirs"))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || !strings.HasPrefix(name, "XDG_") || !strings.HasSuffix(name, "_DIR") {
			continue
		}
		val = strings.Trim(val, `"`)
		if rest, ok := strings.CutPrefix(val, "$HOME"); ok {
			val = home + rest
		}
		if filepath.IsAbs(val) {
			out = append(out, filepath.Clean(val))
		}
	}
	return out
}

// withAllServices returns a copy of project whose Services are all services,
// of the active profiles and the others.
func withAllServices(project *types.Project) *types.Project {
	if len(project.DisabledServices) == 0 {
		return project
	}
	p := *project
	p.Services = project.AllServices()
	p.DisabledServices = nil
	return &p
}

// usesBySource groups the bind mounts by clean source.
func usesBySource(binds []bindUse) map[string][]bindUse {
	out := map[string][]bindUse{}
	for _, b := range binds {
		src := filepath.Clean(b.vol.Source)
		out[src] = append(out[src], b)
	}
	return out
}

// siblingReason says which other mount of src stays a bind and why: one
// directory is one volume, all its mounts convert or none.
func siblingReason(binds []bindUse, src string, declared map[compose.MountRef]string) string {
	for _, b := range binds {
		if filepath.Clean(b.vol.Source) != src {
			continue
		}
		if r := mountReason(b.vol, declared, b.service); r != "" {
			return fmt.Sprintf("%s (service %s at %s: %s)", ReasonSibling, b.service, path.Clean(b.vol.Target), r)
		}
	}
	return ReasonSibling
}

// systemPaths are the host's own trees, never converted: the path itself and
// everything below it (and /lib* : /lib, /lib32, /lib64, ...).
var systemPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/boot", "/etc", "/proc", "/sys", "/dev", "/run", "/var/run",
	"/var/log", "/var/cache", "/var/spool", "/var/lib/docker", "/var/lib/containerd"}

// systemRoots are never converted themselves (directories below them may be).
var systemRoots = []string{"/", "/var", "/var/lib", "/home", "/root", "/tmp", "/mnt", "/media", "/srv", "/opt"}

// systemReason keeps the host's own trees and the bare roots.
func systemReason(src string) string {
	if slices.Contains(systemRoots, src) {
		return ReasonSystem
	}
	for _, p := range systemPaths {
		if within(src, p) {
			return ReasonSystem
		}
	}
	if first, _, _ := strings.Cut(strings.TrimPrefix(src, "/"), "/"); strings.HasPrefix(first, "lib") {
		return ReasonSystem // /lib32, /lib64, /libx32 and below
	}
	return ""
}
