package depgraph

import (
	"maps"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/moltctl/moltctl/"

// allowed is every import edge between the module's packages (paths relative to
// the module, test files not counted), as the tree has them. A new edge, or a new
// package, has to be added here; an edge that disappears has to be removed.
var allowed = map[string][]string{
	"bench/bootstrapmin":                {"internal/bootstrap"},
	"bench/copybench":                   {"bench/internal/benchdata", "internal/engine", "internal/volumes"},
	"bench/internal/benchdata":          nil,
	"bench/migratebench":                {"bench/internal/benchdata", "internal/compose", "internal/engine", "internal/migrate", "internal/progress", "internal/volumes"},
	"cmd/moltctl":                       {"cmd/moltctl/internal/bootstrapcmd", "cmd/moltctl/internal/render", "internal/compose", "internal/engine", "internal/helperfs", "internal/migrate", "internal/remount", "internal/volumes"},
	"cmd/moltctl/entrypoint":            {"cmd/moltctl/internal/bootstrapcmd"},
	"cmd/moltctl/internal/bootstrapcmd": {"internal/bootstrap", "internal/perms"},
	"cmd/moltctl/internal/render":       {"internal/progress"},
	"e2e":                               nil,
	"internal/bootstrap":                {"internal/perms", "internal/statemigrate"},
	"internal/compose":                  {"internal/safefs"},
	"internal/depgraph":                 nil,
	"internal/dockertest":               {"internal/engine"},
	"internal/engine":                   nil,
	"internal/helperfs":                 {"internal/safefs", "internal/statefile"},
	"internal/migrate":                  {"internal/compose", "internal/progress", "internal/remount", "internal/statefile", "internal/volumes"},
	"internal/perms":                    {"internal/safefs"},
	"internal/progress":                 nil,
	"internal/remount":                  {"internal/compose", "internal/progress", "internal/statefile"},
	"internal/safefs":                   nil,
	"internal/statefile":                {"internal/safefs"},
	"internal/statemigrate":             {"internal/safefs"},
	"internal/volumes":                  {"internal/helperfs", "internal/progress", "internal/safefs"},
}

// entrypointForbidden are packages the entrypoint build (the gateway image's
// PID 1, kept small) must not depend on, directly or not.
var entrypointForbidden = []string{
	"github.com/moby/moby/client",
	"github.com/compose-spec/compose-go/v2/types",
	"go.yaml.in/yaml/v4",
	"net/http",
	module + "internal/engine",
	module + "internal/volumes",
}

// goList runs go list in the module's root with args and returns its output lines.
func goList(tb testing.TB, args ...string) []string {
	tb.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append([]string{"list"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			tb.Fatalf("go list %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		tb.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// graph returns the module's import edges from go list: package -> the module's
// packages it imports (relative paths, sorted).
func graph(tb testing.TB) map[string][]string {
	tb.Helper()
	g := map[string][]string{}
	for _, line := range goList(tb, "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		g[pkg] = nil
		for _, imp := range fields[1:] {
			if rel, ok := strings.CutPrefix(imp, module); ok {
				g[pkg] = append(g[pkg], rel)
			}
		}
		slices.Sort(g[pkg])
	}
	return g
}

func TestImportGraph(t *testing.T) {
	got := graph(t)
	for _, pkg := range slices.Sorted(maps.Keys(got)) {
		imps := got[pkg]
		want, known := allowed[pkg]
		if !known {
			t.Errorf("new package %s (imports %v): add it and its imports to allowed in internal/depgraph/depgraph_test.go", pkg, imps)
			continue
		}
		for _, imp := range imps {
			if !slices.Contains(want, imp) {
				t.Errorf("new import edge %s -> %s: not in the allowed graph; if the architecture should change, add the edge to allowed in internal/depgraph/depgraph_test.go (and to README's architecture section)", pkg, imp)
			}
		}
		for _, imp := range want {
			if !slices.Contains(imps, imp) {
				t.Errorf("import edge %s -> %s no longer exists: remove it from allowed in internal/depgraph/depgraph_test.go", pkg, imp)
			}
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(allowed)) {
		if _, ok := got[pkg]; !ok {
			t.Errorf("package %s no longer exists: remove it from allowed in internal/depgraph/depgraph_test.go", pkg)
		}
	}
}

func TestEntrypointDeps(t *testing.T) {
	deps := goList(t, "-deps", "./cmd/moltctl/entrypoint")
	for _, f := range entrypointForbidden {
		if slices.Contains(deps, f) {
			t.Errorf("the entrypoint build (cmd/moltctl/entrypoint) depends on %s: it must stay small and engine-free (go list -deps ./cmd/moltctl/entrypoint)", f)
		}
	}
}
