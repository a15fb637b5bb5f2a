package migrate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestKeyBases(t *testing.T) {
	tests := []struct {
		name    string
		sources []string
		want    []string
	}{
		{"distinct names", []string{"/p/state", "/p/cache"}, []string{"state", "cache"}},
		{"same name: the parents tell them apart", []string{"/p/backend/src", "/p/frontend/src", "/p/db"}, []string{"backend-src", "frontend-src", "db"}},
		{"same parent name too", []string{"/p/a/app/data", "/p/b/app/data"}, []string{"a-app-data", "b-app-data"}},
		{"one is shorter", []string{"/x/src", "/y/x/src"}, []string{"x-src", "y-x-src"}},
		{"hidden and spaced names", []string{"/home/me/.openclaw", "/srv/My Data/.openclaw"}, []string{"me-openclaw", "my-data-openclaw"}},
		{"no usable name", []string{"/p/..."}, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var convs []Conversion
			for _, s := range tt.sources {
				convs = append(convs, Conversion{Source: s})
			}
			got := keyBases(convs)
			for i, s := range tt.sources {
				if got[s] != tt.want[i] {
					t.Errorf("got %s -> %q, want %q", s, got[s], tt.want[i])
				}
			}
		})
	}
}

// TestPrepareKeysSizesVariables plans without an engine (numeric --owner):
// readable keys for two src directories, the sizes of each source and the
// total, and the variables that stop applying to a rewritten source.
func TestPrepareKeysSizesVariables(t *testing.T) {
	f := newFixture(t, `services:
  backend:
    image: example/backend:1
    volumes:
      - ./backend/src:/app/src
      - ${UPLOAD_LOCATION}:/usr/src/app/upload   # edit UPLOAD_LOCATION in .env
  frontend:
    image: example/frontend:1
    volumes:
      - type: bind
        source: ./frontend/src
        target: /usr/src/app
`)
	for _, d := range []string{"backend/src", "frontend/src", "library"} {
		if err := os.MkdirAll(filepath.Join(f.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir, "library/photo.jpg"), make([]byte, 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, ".env"), []byte("UPLOAD_LOCATION=./library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plan, err := Prepare(context.Background(), nil, load(t, f, "keys"), PlanOptions{Owner: "1000:1000"})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var bytes, files int64
	for _, c := range plan.Conversions {
		keys = append(keys, c.Volume)
		bytes += c.Bytes
		files += c.Files
		var vars []string
		for _, m := range c.Mounts {
			vars = append(vars, m.Variables...)
		}
		wantVars := []string(nil)
		if c.Volume == "library" {
			wantVars = []string{"UPLOAD_LOCATION"}
			if c.Files != 1 || c.Bytes < 256<<10 {
				t.Errorf("got library %d files, %d bytes, want 1 file of at least 256 KiB", c.Files, c.Bytes)
			}
		}
		if !slices.Equal(vars, wantVars) {
			t.Errorf("got variables %v for %s, want %v", vars, c.Volume, wantVars)
		}
	}
	if want := []string{"backend-src", "frontend-src", "library"}; !slices.Equal(keys, want) {
		t.Errorf("got keys %v, want %v", keys, want)
	}
	if plan.Bytes != bytes || plan.Files != files || plan.Files != 1 {
		t.Errorf("got totals %d bytes, %d files, want the sum %d, %d (1 file)", plan.Bytes, plan.Files, bytes, files)
	}
	for _, e := range plan.Edits {
		if !strings.Contains(string(e.New), "- library:/usr/src/app/upload   # edit UPLOAD_LOCATION in .env") {
			t.Errorf("got rewrite\n%s\nwant the variable source replaced by the key", e.New)
		}
	}
}
