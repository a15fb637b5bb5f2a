package compose

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSourceVariables(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "compose.yaml")
	over := filepath.Join(dir, "override.yaml")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(base, `services:
  app:
    volumes:
      - ${UPLOAD_LOCATION}:/usr/src/app/upload
      - ${BASE:-.}/${SUB}:/data
      - ./plain:/plain
      - type: bind
        source: $CONF
        target: /conf
      - ${OVERRIDDEN}:/over
`)
	write(over, `services:
  app:
    volumes:
      - ./fixed:/over
`)
	env := map[string]string{"UPLOAD_LOCATION": "./library", "SUB": "x", "CONF": "./conf", "OVERRIDDEN": "./o"}
	got, err := SourceVariables([]string{base, over}, env)
	if err != nil {
		t.Fatal(err)
	}
	want := map[MountRef][]string{
		{Service: "app", Target: "/usr/src/app/upload"}: {"UPLOAD_LOCATION"},
		{Service: "app", Target: "/data"}:               {"BASE", "SUB"},
		{Service: "app", Target: "/conf"}:               {"CONF"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
