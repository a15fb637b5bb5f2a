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
	n := &nester{uses: uses, extra: extra, facts: facts, convert: convert, reasons: reasons,
		sources: slices.Sorted(maps.Keys(uses))}
	for n.changed = true; n.changed; {
		n.changed = false
		for _, o := range n.sources {
			n.checkOuter(o)
		}
	}
	return n.excludes()
}

// nester is the state of nestSources.
type nester struct {
	uses    map[string][]bindUse
	extra   []hostReader
	facts   map[string]*volumes.SourceInfo
	convert map[string]bool
	reasons map[string]string
	sources []string // sorted
	changed bool     // a source stopped being converted in this pass
}

// inside reports whether p is strictly below o. Sources are compared as the
// engine's host binds them: symlinks and bind mounts resolved
// (volumes.SourceInfo.Under).
func (n *nester) inside(p, o string) bool {
	rel, ok := under(n.facts, p, o)
	return ok && rel != "."
}

// same reports whether p and o are one directory.
func (n *nester) same(p, o string) bool {
	rel, ok := under(n.facts, p, o)
	return ok && rel == "."
}

// relative is p's path relative to o.
func (n *nester) relative(p, o string) string {
	rel, _ := under(n.facts, p, o)
	return rel
}

// firstUse describes src by its first use.
func (n *nester) firstUse(src string) string {
	if len(n.uses[src]) == 0 {
		return src
	}
	return describeUse(src, n.uses[src][0])
}

// keep makes src stay a bind for reason, if it was to be converted.
func (n *nester) keep(src, reason string) {
	if n.convert[src] {
		delete(n.convert, src)
		n.reasons[src] = reason
		n.changed = true
	}
}

// checkOuter applies the rules to source o and every source inside it.
func (n *nester) checkOuter(o string) {
	if n.reasons[o] == ReasonSystem {
		return // a view of the host as a whole (/:/host:ro), not a shared directory
	}
	for _, x := range n.extra {
		if n.convert[o] && n.inside(x.path, o) {
			n.keep(o, fmt.Sprintf("%s %s (%s)", ReasonHolds, x.path, x.who))
		}
	}
	for _, p := range n.sources {
		n.checkPair(o, p)
	}
}

// checkPair applies the rules to source p inside (or the same as) source o.
func (n *nester) checkPair(o, p string) {
	if p != o && n.same(p, o) { // one directory under two names (a link, a bind mount)
		n.keep(p, ReasonOverlap+" "+n.firstUse(o))
		n.keep(o, ReasonOverlap+" "+n.firstUse(p))
		return
	}
	if p == o || !n.inside(p, o) || !n.convert[o] && !n.convert[p] {
		return
	}
	ok, bad := matching(n.uses, o, p, n.relative(p, o))
	switch {
	case n.convert[p] && ok:
		// p's volume hides that subtree of o everywhere: a converted o
		// leaves it out of its copy, a bind o keeps it on the host unseen
	case !n.convert[p]:
		n.keep(o, ReasonHolds+" "+n.firstUse(p))
	default:
		n.keep(p, ReasonOverlap+" "+describeUse(o, bad))
		n.keep(o, ReasonOverlap+" "+n.firstUse(p))
	}
}

// excludes lists, per converted source, the converted sources directly below
// it (relative paths, sorted).
func (n *nester) excludes() map[string][]string {
	excludes := map[string][]string{}
	for _, o := range n.sources {
		if !n.convert[o] {
			continue
		}
		for _, p := range n.sources {
			if n.convert[p] && n.inside(p, o) && n.directlyBelow(p, o) {
				excludes[o] = append(excludes[o], n.relative(p, o))
			}
		}
		slices.Sort(excludes[o])
	}
	return excludes
}

// directlyBelow reports whether no converted source lies between p and o.
func (n *nester) directlyBelow(p, o string) bool {
	return !slices.ContainsFunc(n.sources, func(q string) bool {
		return n.convert[q] && n.inside(q, o) && n.inside(p, q)
	})
}
