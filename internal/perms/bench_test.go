package perms

import (
	"context"
	"fmt"
	"github.com/moltctl/moltctl/internal/dockertest"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// benchTree makes dirs directories of files files each under root.
func benchTree(tb testing.TB, root string, dirs, files int) {
	tb.Helper()
	for i := range dirs {
		d := filepath.Join(root, fmt.Sprint("d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
		for j := range files {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprint("f", j)), nil, 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// naive is the baseline: what `chown -R` (or find -exec chown) does, a path
// walk that lchowns every entry, unsafe against swaps.
func naive(root string, only bool) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if only {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if owned(fi) {
				return nil
			}
		}
		return os.Lchown(p, uid, gid)
	})
}

func owned(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == uid && st.Gid == gid
}

// BenchmarkFix times Fix beside the naive path walk on the same 10 000-entry
// tree, root-owned (every entry changes) and already owned (nothing changes),
// and reports the ratio (fix/naive; below 1 is faster).
func BenchmarkFix(b *testing.B) {
	dockertest.Root(b)
	for _, tc := range []struct {
		name  string
		owner int
	}{{"root-owned", 0}, {"owned", uid}} {
		b.Run(tc.name, func(b *testing.B) {
			root := b.TempDir()
			benchTree(b, root, 100, 99)
			reset := func() {
				if tc.owner == 0 {
					filepath.WalkDir(root, func(p string, _ fs.DirEntry, _ error) error { return os.Lchown(p, 0, 0) })
				} else if err := naive(root, false); err != nil {
					b.Fatal(err)
				}
			}
			var tFix, tNaive time.Duration
			for b.Loop() {
				b.StopTimer()
				reset()
				b.StartTimer()
				t0 := time.Now()
				if _, err := Fix(context.Background(), root, Options{UID: uid, GID: gid}); err != nil {
					b.Fatal(err)
				}
				tFix += time.Since(t0)
				b.StopTimer()
				reset()
				t0 = time.Now()
				if err := naive(root, tc.owner != 0); err != nil {
					b.Fatal(err)
				}
				tNaive += time.Since(t0)
				b.StartTimer()
			}
			b.ReportMetric(float64(tFix.Microseconds())/float64(b.N)/1000, "fix-ms/op")
			b.ReportMetric(float64(tNaive.Microseconds())/float64(b.N)/1000, "naive-ms/op")
			b.ReportMetric(float64(tFix)/float64(tNaive), "fix/naive")
		})
	}
}
