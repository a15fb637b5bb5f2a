package depgraph

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// flag is a command-line flag as an error message would name it (--resume,
// --owner); "docker compose --dry-run" names compose's own flag, not moltctl's.
var flag = regexp.MustCompile(`(^|[\s(])--[a-z]`)

// TestNoFlagsInLibraryErrors: the errors of internal/ name no command-line
// flag: they wrap sentinel or typed errors and cmd/moltctl adds the flag or
// the advice (errors.Is, errors.As), so the libraries stay usable without
// moltctl's command line.
func TestNoFlagsInLibraryErrors(t *testing.T) {
	fset := token.NewFileSet()
	root := filepath.Join("..", "..", "internal")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok || !(pkg.Name == "fmt" && sel.Sel.Name == "Errorf" || pkg.Name == "errors" && sel.Sel.Name == "New") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || strings.HasPrefix(s, "docker compose ") {
				return true
			}
			if flag.MatchString(s) {
				t.Errorf("%s: error %q names a command-line flag: wrap a sentinel (or typed) error and add the flag in cmd/moltctl", fset.Position(lit.Pos()), s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
