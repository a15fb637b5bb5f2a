package migrate

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/compose"
)

// maxKeyDepth bounds how many trailing path components a key is made of.
const maxKeyDepth = 4

// keyBases gives each conversion's source its base key: the directory's name
// (deriveKey), qualified with its parent directories' names as long as another
// conversion of the plan would get the same key (./backend/src and
// ./frontend/src: backend-src and frontend-src, not src and src-2). A source
// without a usable name gets "" (chooseKey falls back on the target).
func keyBases(convs []Conversion) map[string]string {
	depth := map[string]int{}
	for _, c := range convs {
		depth[c.Source] = 1
	}
	for changed := true; changed; {
		changed = false
		groups := map[string][]string{}
		for _, c := range convs {
			if k := pathKey(c.Source, depth[c.Source]); k != "" {
				groups[k] = append(groups[k], c.Source)
			}
		}
		for _, srcs := range groups {
			if len(srcs) < 2 {
				continue
			}
			for _, s := range srcs {
				if d := depth[s]; d < maxKeyDepth && pathKey(s, d+1) != pathKey(s, d) {
					depth[s] = d + 1
					changed = true
				}
			}
		}
	}
	out := map[string]string{}
	for _, c := range convs {
		out[c.Source] = pathKey(c.Source, depth[c.Source])
	}
	return out
}

// pathKey is the key made of the last depth components of p (fewer when p
// has fewer), each through deriveKey, joined with '-'; "" when the last
// component gives nothing.
func pathKey(p string, depth int) string {
	var parts []string
	for i := 0; i < depth; i++ {
		base := filepath.Base(p)
		if base == "/" || base == "." {
			break
		}
		k := deriveKey(base)
		if i == 0 && k == "" {
			return ""
		}
		if k != "" {
			parts = append([]string{k}, parts...)
		}
		p = filepath.Dir(p)
	}
	return strings.Join(parts, "-")
}

// noteVariables sets Mount.Variables: the variables a converted mount's
// source was written with, which no longer apply to it after the rewrite.
func noteVariables(project *types.Project, plan *Plan) error {
	vars, err := compose.SourceVariables(project.ComposeFiles, project.Environment)
	if err != nil {
		return fmt.Errorf("planning the migration: %w", err)
	}
	for i := range plan.Conversions {
		for j := range plan.Conversions[i].Mounts {
			m := &plan.Conversions[i].Mounts[j]
			m.Variables = vars[compose.MountRef{Service: m.Service, Target: m.Target}]
		}
	}
	return nil
}
