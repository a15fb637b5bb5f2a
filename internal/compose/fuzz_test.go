package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRewrite feeds arbitrary compose files to Rewrite, converting every bind
// mount it can find. Any input must give either an error of one line, or files
// that parse and differ from the input only in the converted mounts and the
// added top-level volumes. The seed corpus (every golden input) runs in normal
// `go test`; fuzz with `go test -fuzz FuzzRewrite ./internal/compose`.
func FuzzRewrite(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/rewrite/*.input.yaml")
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, src []byte, nocopy bool) {
		file := filepath.Join(t.TempDir(), "compose.yaml")
		if err := os.WriteFile(file, src, 0o644); err != nil {
			t.Fatal(err)
		}
		doc, err := parse(src)
		if err != nil {
			return // not YAML: Rewrite's own parse error is covered below
		}
		var convs []Conversion
		seen := map[MountRef]bool{}
		for i, sm := range serviceMounts(doc, nil) {
			if sm.typ != "bind" || seen[sm.ref] || !plainName(sm.ref.Service) {
				continue
			}
			seen[sm.ref] = true
			convs = append(convs, Conversion{
				Key:    fmt.Sprintf("k%d", i),
				Source: fmt.Sprintf("/srv/k%d", i),
				NoCopy: nocopy && i%2 == 0,
				Mounts: []Mount{{MountRef: sm.ref, File: file}},
			})
		}
		edits, err := Rewrite([]string{file}, nil, convs)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("got error %q, want one non-empty line", msg)
			}
			return
		}
		for _, e := range edits {
			checkOnlyMountsChanged(t, e.Old, e.New, convs, e.Path, nil)
		}
	})
}

// plainName reports whether a service name decodes as the same string in the
// checker's generic decoding (not a number, bool or null).
func plainName(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	switch strings.ToLower(s) {
	case "true", "false", "null", "yes", "no", "on", "off", "y", "n":
		return false
	}
	return true
}
