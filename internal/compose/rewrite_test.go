package compose

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/rewrite")

// goldenCase is one testdata/rewrite/NAME.input.yaml with its companion files
// NAME.*.input.yaml (-f files, except NAME.common*.input.yaml: files the others
// extend) and its directives, lines of the main file such as
//
//	#! convert KEY [nocopy] SERVICE:TARGET[@COMPANION]...
//	#! env NAME=VALUE
type goldenCase struct {
	name     string
	files    []string // main first, then companions, sorted
	extended []string // files the others extend
	convs    []Conversion
	env      map[string]string
}

func loadGolden(tb testing.TB, main string) goldenCase {
	tb.Helper()
	name := strings.TrimSuffix(filepath.Base(main), ".input.yaml")
	dir := filepath.Dir(main)
	comp, err := filepath.Glob(filepath.Join(dir, name+".*.input.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(comp)
	gc := goldenCase{name: name, files: []string{mustAbs(tb, main)}, env: map[string]string{}}
	for _, c := range absAll(tb, comp) {
		if strings.HasPrefix(filepath.Base(c), name+".common") {
			gc.extended = append(gc.extended, c)
		} else {
			gc.files = append(gc.files, c)
		}
	}
	src, err := os.ReadFile(main)
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) < 2 || f[0] != "#!" {
			continue
		}
		switch f[1] {
		case "env":
			k, v, _ := strings.Cut(f[2], "=")
			gc.env[k] = v
		case "convert":
			c := Conversion{Key: f[2], Source: "/srv/" + f[2]}
			for _, m := range f[3:] {
				if m == "nocopy" {
					c.NoCopy = true
					continue
				}
				file := gc.files[0]
				if at := strings.LastIndex(m, "@"); at >= 0 {
					file = mustAbs(tb, filepath.Join(dir, name+"."+m[at+1:]+".input.yaml"))
					m = m[:at]
				}
				svc, tgt, _ := strings.Cut(m, ":")
				c.Mounts = append(c.Mounts, Mount{MountRef: MountRef{Service: svc, Target: tgt}, File: file})
			}
			gc.convs = append(gc.convs, c)
		default:
			tb.Fatalf("%s: unknown directive %q", main, line)
		}
	}
	return gc
}

func mustAbs(tb testing.TB, p string) string {
	tb.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func absAll(tb testing.TB, ps []string) []string {
	tb.Helper()
	var out []string
	for _, p := range ps {
		out = append(out, mustAbs(tb, p))
	}
	return out
}

func goldenPath(input, ext string) string {
	return strings.TrimSuffix(input, ".input.yaml") + ext
}

// TestRewriteGolden rewrites every testdata/rewrite/*.input.yaml and compares
// each file with its *.golden.yaml, or the error with *.golden.err. Run with
// -update to regenerate the golden files.
func TestRewriteGolden(t *testing.T) {
	mains, err := filepath.Glob("testdata/rewrite/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, m := range mains {
		if strings.Count(filepath.Base(m), ".") == 2 { // NAME.input.yaml, not NAME.x.input.yaml
			cases = append(cases, m)
		}
	}
	if len(cases) < 10 {
		t.Fatalf("got %d golden cases, want at least 10", len(cases))
	}
	for _, main := range cases {
		gc := loadGolden(t, main)
		t.Run(gc.name, func(t *testing.T) {
			edits, err := Rewrite(gc.files, gc.env, gc.convs)
			errFile := goldenPath(main, ".golden.err")
			if err != nil {
				if !errors.Is(err, ErrCannotEdit) {
					t.Errorf("got error %v, want one wrapping ErrCannotEdit", err)
				}
				compareGolden(t, errFile, []byte(relErr(err)+"\n"))
				return
			}
			if _, serr := os.Stat(errFile); serr == nil && !*update {
				t.Fatalf("got no error, want the one in %s", errFile)
			}
			for _, f := range slices.Concat(gc.files, gc.extended) {
				want := goldenPath(f, ".golden.yaml")
				got, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range edits {
					if e.Path == f {
						got = e.New
					}
				}
				compareGolden(t, want, got)
			}
			// Rewriting the result again changes nothing.
			dir := t.TempDir()
			var again []string
			remap := map[string]string{}
			for _, f := range slices.Concat(gc.files, gc.extended) {
				b, _ := os.ReadFile(f)
				for _, e := range edits {
					if e.Path == f {
						b = e.New
					}
				}
				p := filepath.Join(dir, filepath.Base(f))
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				if slices.Contains(gc.files, f) {
					again = append(again, p)
				}
				remap[f] = p
			}
			convs := remapFiles(gc.convs, remap)
			edits2, err := Rewrite(again, gc.env, convs)
			if err != nil {
				t.Fatalf("rewriting twice: %v", err)
			}
			for _, e := range edits2 {
				t.Errorf("rewriting twice changed %s:\n%s", e.Path, e.Diff())
			}
		})
	}
}

func remapFiles(convs []Conversion, remap map[string]string) []Conversion {
	var out []Conversion
	for _, c := range convs {
		c2 := Conversion{Key: c.Key, Source: c.Source, NoCopy: c.NoCopy}
		for _, m := range c.Mounts {
			m.File = remap[m.File]
			c2.Mounts = append(c2.Mounts, m)
		}
		out = append(out, c2)
	}
	return out
}

// relErr strips the working directory from error messages so golden files don't
// depend on where the repository is checked out.
func relErr(err error) string {
	wd, _ := os.Getwd()
	return strings.ReplaceAll(err.Error(), wd+string(filepath.Separator), "")
}

func compareGolden(tb testing.TB, path string, got []byte) {
	tb.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading golden file: %v (run go test -update)", err)
	}
	if string(got) != string(want) {
		tb.Errorf("%s: got\n%s\nwant\n%s\ndiff:\n%s", path, got, want, unifiedDiff("want", "got", want, got))
	}
}

// TestRewriteKeepsEverythingElse checks, for every golden case, that the
// rewritten YAML equals the original except the converted mounts and the added
// top-level volumes, by comparing the decoded documents.
func TestRewriteKeepsEverythingElse(t *testing.T) {
	mains, _ := filepath.Glob("testdata/rewrite/*.input.yaml")
	for _, main := range mains {
		if strings.Count(filepath.Base(main), ".") != 2 {
			continue
		}
		gc := loadGolden(t, main)
		t.Run(gc.name, func(t *testing.T) {
			edits, err := Rewrite(gc.files, gc.env, gc.convs)
			if err != nil {
				return // refused: covered by the golden test
			}
			for _, e := range edits {
				if slices.Contains(gc.extended, e.Path) {
					continue // the base service's mount changes: its golden file shows it
				}
				checkOnlyMountsChanged(t, e.Old, e.New, gc.convs, e.Path, gc.env)
			}
		})
	}
}

// checkOnlyMountsChanged decodes old and new, blanks the converted mounts and
// the added volume keys, and compares the rest.
func checkOnlyMountsChanged(tb testing.TB, old, new []byte, convs []Conversion, file string, env map[string]string) {
	tb.Helper()
	var a, b any
	if err := yaml.Unmarshal(old, &a); err != nil {
		tb.Fatalf("old does not parse: %v", err)
	}
	if err := yaml.Unmarshal(new, &b); err != nil {
		tb.Fatalf("rewritten file does not parse: %v\n%s", err, new)
	}
	a, b = normalize(a), normalize(b)
	for _, doc := range []any{a, b} {
		// Extensions are not compose configuration; YAML anchors live there.
		if m, ok := doc.(map[string]any); ok {
			for k := range m {
				if strings.HasPrefix(k, "x-") {
					delete(m, k)
				}
			}
		}
	}
	blank := func(doc any, isNew bool) {
		m, _ := doc.(map[string]any)
		for _, c := range convs {
			if isNew {
				if vols, ok := m["volumes"].(map[string]any); ok {
					delete(vols, c.Key)
					if len(vols) == 0 {
						delete(m, "volumes")
					}
				}
			}
			for _, mt := range c.Mounts {
				if mt.File != file {
					continue
				}
				vols, _ := lookup(lookup(m["services"], mt.Service), "volumes").([]any)
				for i, v := range vols {
					var target string
					switch v := v.(type) {
					case string:
						_, target, _, _ = splitShort(v)
					case map[string]any:
						target, _ = v["target"].(string)
					}
					if cleanTarget(subst(target, env)) == mt.Target {
						vols[i] = "converted"
					}
				}
			}
		}
	}
	blank(a, false)
	blank(b, true)
	if am, ok := a.(map[string]any); ok {
		if va, ok := am["volumes"]; ok && va == nil {
			delete(am, "volumes") // volumes: (null) that got entries
		}
		if va, ok := am["volumes"].(map[string]any); ok && len(va) == 0 {
			delete(am, "volumes")
		}
	}
	ya, _ := yaml.Marshal(a)
	yb, _ := yaml.Marshal(b)
	if string(ya) != string(yb) {
		tb.Errorf("more than the converted mounts changed:\n%s", unifiedDiff("old", "new", ya, yb))
	}
}

func subst(s string, env map[string]string) string {
	for k, v := range env {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	return s
}

// lookup returns v[key] for maps decoded with string or any keys (a null key
// decodes as nil).
func lookup(v any, key string) any {
	switch m := v.(type) {
	case map[string]any:
		return m[key]
	case map[any]any:
		for k, x := range m {
			if fmt.Sprint(k) == key || (k == nil && key == "") {
				return x
			}
		}
	}
	return nil
}

// normalize turns maps with non-string keys into maps keyed by their text, so
// the comparison can index every mapping the same way.
func normalize(v any) any {
	switch m := v.(type) {
	case map[string]any:
		for k, x := range m {
			m[k] = normalize(x)
		}
		return m
	case map[any]any:
		out := map[string]any{}
		for k, x := range m {
			key := fmt.Sprint(k)
			if k == nil {
				key = ""
			}
			out[key] = normalize(x)
		}
		return out
	case []any:
		for i, x := range m {
			m[i] = normalize(x)
		}
	}
	return v
}
