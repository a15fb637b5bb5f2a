package helperfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// errCrash stops copyBackTree at a step, as a kill -9 of the helper would:
// nothing after it runs (the deferred closes do, like the kernel's).
var errCrash = errors.New("crashed")

func copyBackAt(t *testing.T, vol, parent, crashAfter string) (res *CopyBackResult, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			if r != errCrash {
				panic(r)
			}
			res, err = nil, errCrash
		}
	}()
	hook := func(step string) {
		if step == crashAfter {
			panic(errCrash)
		}
	}
	return copyBackTree(context.Background(), copyBackTreeOptions{Src: vol, Parent: parent, Name: "target", ID: "mig1", Hook: hook})
}

// copyBackFixture is a volume (the test tree) and a target directory with
// content of its own.
func copyBackFixture(t *testing.T) (vol, parent string) {
	t.Helper()
	dockertest.Root(t)
	tr := makeTree(t)
	parent = t.TempDir()
	writeFile(t, filepath.Join(parent, "target", "old.txt"), "the bind's old content\n", 0o600)
	return tr.Src, parent
}

// checkCopiedBack fails unless parent/target matches vol exactly (every
// content hash, numeric owners kept) and the old content is kept aside.
func checkCopiedBack(t *testing.T, vol, parent string) {
	t.Helper()
	target := filepath.Join(parent, "target")
	rep, err := verifyTree(vol, target, verifyOptions{KeepOwner: true, Full: true})
	must(t, err)
	if len(rep.Differences) > 0 {
		t.Errorf("got differences %q between the volume and the target, want none", rep.Differences)
	}
	if b, err := os.ReadFile(filepath.Join(parent, KeptName("target", "mig1"), "old.txt")); err != nil || string(b) != "the bind's old content\n" {
		t.Errorf("got kept old.txt %q, %v, want the old content", b, err)
	}
	for _, p := range []string{filepath.Join(parent, StagingName("target", "mig1")), filepath.Join(target, StateDir)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %q left behind (%v)", p, err)
		}
	}
}

// TestCopyBackTreeCrashAtEveryStep: killed after any step, a second call
// with the same ID finishes the copy-back; no engine needed.
func TestCopyBackTreeCrashAtEveryStep(t *testing.T) {
	for _, step := range []string{"", "staged", "copying", "copied", "verified", "marked", "exchanged", "renamed"} {
		t.Run("after "+step, func(t *testing.T) {
			vol, parent := copyBackFixture(t)
			res, err := copyBackAt(t, vol, parent, step)
			if step != "" {
				if !errors.Is(err, errCrash) {
					t.Fatalf("got %v, want the crash at %q", err, step)
				}
				res, err = copyBackAt(t, vol, parent, "")
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Kept != KeptName("target", "mig1") {
				t.Errorf("got kept %q, want %q", res.Kept, KeptName("target", "mig1"))
			}
			checkCopiedBack(t, vol, parent)
		})
	}
}

func TestCopyBackTreeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, vol, parent string)
	}{
		{"target is a file", func(t *testing.T, vol, parent string) {
			must(t, os.RemoveAll(filepath.Join(parent, "target")))
			writeFile(t, filepath.Join(parent, "target"), "x", 0o600)
		}},
		{"target is a bind mount of the same file system", func(t *testing.T, vol, parent string) {
			other := filepath.Join(parent, "other")
			must(t, os.Mkdir(other, 0o700))
			must(t, unix.Mount(other, filepath.Join(parent, "target"), "", unix.MS_BIND, ""))
			t.Cleanup(func() { unix.Unmount(filepath.Join(parent, "target"), unix.MNT_DETACH) })
		}},
		{"volume holds copy state", func(t *testing.T, vol, parent string) {
			must(t, os.Mkdir(filepath.Join(vol, StateDir), 0o700))
		}},
		{"staging name taken by a file", func(t *testing.T, vol, parent string) {
			writeFile(t, filepath.Join(parent, StagingName("target", "mig1")), "x", 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol, parent := copyBackFixture(t)
			tc.plant(t, vol, parent)
			before := snapshot(t, parent, "")
			_, err := copyBackAt(t, vol, parent, "")
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, want ErrRefused", err)
			}
			sameSnapshot(t, "the parent directory", before, snapshot(t, parent, ""))
		})
	}
}
