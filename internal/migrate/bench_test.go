package migrate

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/volumes"
)

// benchTree writes dirs × 100 files of 4 KiB of random data in nested
// directories under root, and returns their paths.
func benchTree(tb testing.TB, root string, dirs int) []string {
	tb.Helper()
	var files []string
	buf := make([]byte, 4096)
	for i := 0; i < dirs; i++ {
		sub := filepath.Join(root, fmt.Sprintf("d%02d", i/10), fmt.Sprintf("e%d", i%10))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			tb.Fatal(err)
		}
		for k := 0; k < 100; k++ {
			rand.Read(buf)
			p := filepath.Join(sub, fmt.Sprintf("f%03d", k))
			if err := os.WriteFile(p, buf, 0o644); err != nil {
				tb.Fatal(err)
			}
			files = append(files, p)
		}
	}
	return files
}

// BenchmarkDowntime migrates a running service (busybox, user 1000:1000) whose
// bind holds 2,000 files of 4 KiB in nested directories, 1% of which are
// rewritten (same size) when the services are about to stop, that is after the
// full pass. Besides the time of the whole migration per op, it reports the
// downtime (Report.Downtime less the rewrite), the full pass, and the downtime
// as a percentage of the full pass. bench/migrate.sh measures the issue's
// data sets with baselines.
func BenchmarkDowntime(b *testing.B) {
	ctx := context.Background()
	eng := dockertest.Engine(b)
	var down, full time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		_, file := newProject(b, "migbench", []string{"data"}, `  app:
    image: `+dockertest.Busybox(b)+`
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes:
      - ./data:/data
`)
		files := benchTree(b, filepath.Join(filepath.Dir(file), "data"), 20)
		if out, err := dockertest.Run("docker", "compose", "-f", file, "up", "-d"); err != nil {
			b.Fatalf("docker compose up: %v %s", err, out)
		}
		var fullAt, stopAt time.Time
		var change time.Duration
		var changeErr error
		opts := RunOptions{Project: selecting(file), Helper: volumes.HelperOptions{Binary: staticMoltctl(b)},
			WaitTimeout: time.Second, Progress: func(e progress.Event) {
				switch {
				case e.Phase != progress.Started:
				case e.Step == progress.Copy && fullAt.IsZero():
					fullAt = time.Now()
				case e.Step == "stop":
					stopAt = time.Now()
					buf := make([]byte, 4096)
					for i := 0; i < len(files) && changeErr == nil; i += 100 {
						rand.Read(buf)
						changeErr = os.WriteFile(files[i], buf, 0o644)
					}
					change = time.Since(stopAt)
				}
			}}
		b.StartTimer()
		rep, err := Run(ctx, eng, fresh(b, opts))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if changeErr != nil {
			b.Fatalf("changing 1%% of the files: %v", changeErr)
		}
		if len(rep.Volumes) != 1 || rep.Volumes[0].Delta == nil || len(rep.Volumes[0].Delta.Changed) != len(files)/100 {
			b.Fatalf("got report %+v, want one volume whose delta copied the %d changed files", rep, len(files)/100)
		}
		if rep.Downtime <= change || fullAt.IsZero() {
			b.Fatalf("got downtime %s (1%% rewrite %s), full pass begun %v, want the downtime longer than the rewrite and a full pass",
				rep.Downtime, change, fullAt)
		}
		down += rep.Downtime - change
		full += stopAt.Sub(fullAt)
		n++
		b.StartTimer()
	}
	b.ReportMetric(down.Seconds()/float64(n), "downtime-s/op")
	b.ReportMetric(full.Seconds()/float64(n), "fullpass-s/op")
	b.ReportMetric(100*down.Seconds()/full.Seconds(), "downtime-%-of-full")
}
