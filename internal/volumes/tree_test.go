package volumes

import (
	"os"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/safefs"
)

// Names in the test tree (dockertest.NewTree) the engine tests look at (the
// tree copy's own tests, without an engine, are helperfs's).
const (
	nSparse  = dockertest.TreeSparse
	nSetuid  = dockertest.TreeSetuid
	nHard1   = dockertest.TreeHard1
	nHard2   = dockertest.TreeHard2
	nLinkIn  = dockertest.TreeLinkIn
	nLinkOut = dockertest.TreeLinkOut
)

// testTree is dockertest's tree: every kind of entry, owned by root, next to
// an outside directory that its symlink and hardlink point at.
type testTree = dockertest.Tree

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

var (
	writeFile = dockertest.WriteFile
	makeTree  = dockertest.NewTree
)

// snapshot is a manifest with every content hashed, for before/after comparisons.
func snapshot(tb testing.TB, root, skip string) map[string]*safefs.Entry {
	tb.Helper()
	m, _, err := safefs.Manifest(root, safefs.ManifestOptions{Skip: []string{skip}, Hash: func(string) bool { return true }})
	must(tb, err)
	return m
}

func sameSnapshot(tb testing.TB, what string, before, after map[string]*safefs.Entry) {
	tb.Helper()
	if len(before) != len(after) {
		tb.Errorf("%s: got %d entries, want %d", what, len(after), len(before))
	}
	for p, b := range before {
		if a := after[p]; !reflect.DeepEqual(a, b) {
			tb.Errorf("%s: %q changed: got %+v, want %+v", what, p, a, b)
		}
	}
}

func statOutside(tb testing.TB, t *testTree) (unix.Stat_t, string) {
	tb.Helper()
	var st unix.Stat_t
	must(tb, unix.Lstat(t.Secret, &st))
	b, err := os.ReadFile(t.Secret)
	must(tb, err)
	return st, string(b)
}

// rewrite changes a file's content keeping its size, as an app rewriting state does.
func rewrite(tb testing.TB, p, content string) {
	tb.Helper()
	must(tb, os.WriteFile(p, []byte(content), 0o644))
}
