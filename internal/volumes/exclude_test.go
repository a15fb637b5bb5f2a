package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckExclude(t *testing.T) {
	tests := []struct {
		in   []string
		fail bool
	}{
		{nil, false},
		{[]string{"workspace", "a/b"}, false},
		{[]string{"/abs"}, true},
		{[]string{"."}, true},
		{[]string{""}, true},
		{[]string{"../up"}, true},
		{[]string{"a/../b"}, true},
		{[]string{"a/"}, true},
	}
	for _, tt := range tests {
		if err := checkExclude(tt.in); (err != nil) != tt.fail {
			t.Errorf("checkExclude(%q): got %v, want failure %v", tt.in, err, tt.fail)
		}
	}
}

// TestMeasureExclude: the excluded directory counts as one entry, its content
// not at all (the plan counts it in its own conversion).
func TestMeasureExclude(t *testing.T) {
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "workspace"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "openclaw.json"), []byte("{}\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "workspace", "AGENTS.md"), make([]byte, 10000), 0o644))
	all, err := Measure(src)
	must(t, err)
	out, err := Measure(src, "workspace")
	must(t, err)
	if all.Files != 3 || out.Files != 2 || all.Bytes-out.Bytes < 10000 {
		t.Errorf("got %+v measured, %+v without the workspace, want 3 and 2 entries, the workspace's 10000 bytes left out", all, out)
	}
}

// TestMeasureErrorNamesPathOnce: "measuring "/x": open /x: …" named the
// path twice.
func TestMeasureErrorNamesPathOnce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing")
	_, err := Measure(p)
	if err == nil || strings.Count(err.Error(), p) != 1 || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want one error naming %q once, wrapping ErrNotExist", err, p)
	}
}
