package helperfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// benchTree makes n files of size bytes, 100 per directory, 10 directories per parent.
func benchTree(b *testing.B, n, size int) string {
	b.Helper()
	src := filepath.Join(b.TempDir(), "src")
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for i := 0; i < n; i++ {
		d := filepath.Join(src, fmt.Sprintf("d%03d", i/1000), fmt.Sprintf("e%02d", i/100%10))
		if i%100 == 0 {
			must(b, os.MkdirAll(d, 0o755))
		}
		must(b, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i%100)), buf, 0o644))
	}
	return src
}

// syncAll flushes dirty pages outside the timed part, so that one contestant's
// writeback does not slow the next.
func syncAll(b *testing.B) {
	b.StopTimer()
	exec.Command("sync").Run()
	b.StartTimer()
}

// BenchmarkCopyTree compares the in-process copier (one and two workers) with
// host `cp -a` on the same tree in the same run, warm cache, and reports the
// ratio copier/cp as "x-cp". Run: go test -bench CopyTree -run ^$ ./internal/helperfs
func BenchmarkCopyTree(b *testing.B) {
	sets := []struct {
		name    string
		n, size int
	}{{"10k-files-4KiB", 10000, 4096}, {"4-files-64MiB", 4, 64 << 20}}
	for _, set := range sets {
		src := benchTree(b, set.n, set.size)
		var cp time.Duration
		b.Run(set.name+"/cp-a", func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				dst := filepath.Join(b.TempDir(), "dst")
				syncAll(b)
				start := time.Now()
				if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
					b.Fatalf("cp -a: %v %s", err, out)
				}
				total += time.Since(start)
			}
			cp = total / time.Duration(b.N)
		})
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/moltctl-workers=%d", set.name, workers), func(b *testing.B) {
				var total time.Duration
				for i := 0; i < b.N; i++ {
					dst := filepath.Join(b.TempDir(), "dst")
					must(b, os.Mkdir(dst, 0o755))
					syncAll(b)
					start := time.Now()
					if _, err := copyPass(context.Background(), passOptions{Src: src, Dst: dst, UID: 1000, GID: 1000, Workers: workers}); err != nil {
						b.Fatal(err)
					}
					total += time.Since(start)
				}
				if cp > 0 {
					b.ReportMetric(float64(total/time.Duration(b.N))/float64(cp), "x-cp")
				}
			})
		}
	}
}
