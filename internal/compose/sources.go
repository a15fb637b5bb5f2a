package compose

import (
	"fmt"
	"os"
	"slices"

	"github.com/compose-spec/compose-go/v2/template"
)

// SourceVariables returns, for every mount whose source is written with
// variables in the file that declares it (the last file listing it, as
// Locate), the names of those variables, sorted. A rewrite replaces such a
// source as a whole, so the variables no longer apply to the mount.
func SourceVariables(files []string, env map[string]string) (map[MountRef][]string, error) {
	out := map[MountRef][]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading compose file: %w", err)
		}
		doc, err := parse(src)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		for _, sm := range serviceMounts(doc, env) {
			var vars []string
			template.Substitute(sm.source, func(k string) (string, bool) {
				if !slices.Contains(vars, k) {
					vars = append(vars, k)
				}
				v, ok := env[k]
				return v, ok
			})
			slices.Sort(vars)
			if len(vars) > 0 {
				out[sm.ref] = vars
			} else {
				delete(out, sm.ref)
			}
		}
	}
	return out, nil
}
