package migrate

// Nested and overlapping sources: one set of files must never end up split
// between a volume and the host.

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/volumes"
)

// Reasons of the nesting rules; the plan appends the other path and who uses it.
const (
	ReasonHolds   = "holds a path still used from the host:"
	ReasonOverlap = "overlaps a bind at an unrelated target:"
)

// hostReader is a path on the host that stays in use there: a bind source
// that is not converted, or a file compose reads (secrets:, configs:).
type hostReader struct {
	path string
	who  string // "service S at T", "secret S"
}

// composeFiles lists the files compose itself reads for secrets: and configs:.
func composeFiles(project *types.Project) []hostReader {
	var out []hostReader
	for _, name := range slices.Sorted(maps.Keys(project.Secrets)) {
		if f := project.Secrets[name].File; f != "" && filepath.IsAbs(f) {
			out = append(out, hostReader{filepath.Clean(f), "compose secret " + name})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(project.Configs)) {
		if f := project.Configs[name].File; f != "" && filepath.IsAbs(f) {
			out = append(out, hostReader{filepath.Clean(f), "compose config " + name})
		}
	}
	return out
}

// matching reports whether every mount of the outer source shows inner
// through a mount of inner at the matching place (outer's target joined with
// rel, inner's path below outer), in the same service. It returns the first
// mount of outer that does not.
func matching(uses map[string][]bindUse, outer, inner, rel string) (bool, bindUse) {
	for _, o := range uses[outer] {
		want := path.Join(path.Clean(o.vol.Target), filepath.ToSlash(rel))
		if !slices.ContainsFunc(uses[inner], func(i bindUse) bool {
			return i.service == o.service && path.Clean(i.vol.Target) == want
		}) {
			return false, o
		}
	}
	return true, bindUse{}
}

func describeUse(src string, u bindUse) string {
	return fmt.Sprintf("%s (service %s at %s)", src, u.service, path.Clean(u.vol.Target))
}

// nestSources applies the nesting rules to the sources about to be converted
// (convert), recording why a source stays a bind in reasons:
//   - a converted directory holding a path still used from the host (a bind
//     that stays one, a file compose reads) stays a bind;
//   - a converted source inside another bound source (converted or not) is
//     fine when every mount of the outer one shows it through its own mount at
//     the matching place (the openclaw layout); otherwise both stay binds.
//
// It repeats until nothing changes and returns, per converted source, the
// paths (relative, slash-separated) of the converted sources directly below
// it: the outer copy leaves them out.
func nestSources(uses map[string][]bindUse, extra []hostReader, facts map[string]*volumes.SourceInfo, convert map[string]bool, reasons map[string]string) map[string][]string {
	sources := slices.Sorted(maps.Keys(uses))
	// Compared as the engine's host binds them: symlinks and bind mounts
	// resolved (volumes.SourceInfo.Under).
	inside := func(p, o string) bool {
		rel, ok := under(facts, p, o)
		return ok && rel != "."
	}
	same := func(p, o string) bool {
		rel, ok := under(facts, p, o)
		return ok && rel == "."
	}
	relative := func(p, o string) string {
		rel, _ := under(facts, p, o)
		return rel
	}
	firstUse := func(src string) string {
		if len(uses[src]) == 0 {
			return src
		}
		return describeUse(src, uses[src][0])
	}
	for changed := true; changed; {
		changed = false
		keep := func(src, reason string) {
			if convert[src] {
				delete(convert, src)
				reasons[src] = reason
				changed = true
			}
		}
		for _, o := range sources {
			if reasons[o] == ReasonSystem {
				continue // a view of the host as a whole (/:/host:ro), not a shared directory
			}
			for _, x := range extra {
				if convert[o] && inside(x.path, o) {
					keep(o, fmt.Sprintf("%s %s (%s)", ReasonHolds, x.path, x.who))
				}
			}
			for _, p := range sources {
				if p != o && same(p, o) { // one directory under two names (a link, a bind mount)
					keep(p, ReasonOverlap+" "+firstUse(o))
					keep(o, ReasonOverlap+" "+firstUse(p))
					continue
				}
				if p == o || !inside(p, o) || !convert[o] && !convert[p] {
					continue
				}
				ok, bad := matching(uses, o, p, relative(p, o))
				switch {
				case convert[p] && ok:
					// p's volume hides that subtree of o everywhere: a converted o
					// leaves it out of its copy, a bind o keeps it on the host unseen
				case !convert[p]:
					keep(o, ReasonHolds+" "+firstUse(p))
				default:
					keep(p, ReasonOverlap+" "+describeUse(o, bad))
					keep(o, ReasonOverlap+" "+firstUse(p))
				}
			}
		}
	}
	excludes := map[string][]string{}
	for _, o := range sources {
		if !convert[o] {
			continue
		}
		for _, p := range sources {
			if !convert[p] || !inside(p, o) {
				continue
			}
			direct := !slices.ContainsFunc(sources, func(q string) bool {
				return convert[q] && inside(q, o) && inside(p, q)
			})
			if direct {
				excludes[o] = append(excludes[o], relative(p, o))
			}
		}
		slices.Sort(excludes[o])
	}
	return excludes
}
