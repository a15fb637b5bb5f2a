package statefile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSaveLoadRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "p", "j.json")
	type rec struct{ Step string }
	var got rec
	if ok, err := Load(path, &got); ok || err != nil {
		t.Fatalf("got %v, %v loading a missing file, want false, nil", ok, err)
	}
	for _, step := range []string{"one", "two"} {
		if err := Save(path, rec{step}); err != nil {
			t.Fatal(err)
		}
		if ok, err := Load(path, &got); !ok || err != nil || got.Step != step {
			t.Fatalf("got %+v, %v, %v, want step %s", got, ok, err, step)
		}
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(filepath.Dir(path))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Errorf("got file mode %v, dir mode %v, want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("got %d entries beside the file, want no temporary file left", len(entries))
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := Load(path, &got); err == nil {
		t.Errorf("got no error loading broken JSON")
	}
	for i := 0; i < 2; i++ {
		if err := Remove(path); err != nil {
			t.Fatalf("got %v removing (time %d), want nil", err, i+1)
		}
	}
}
