// Command migratebench measures the downtime of a real `moltctl migrate`
// (migrate.Run) of a running compose service whose bind-mounted directory holds
// a data set, where 1% of the files change after the first pass (while the
// service still runs), against two baselines in the same run on the same disk:
// moltctl's own full copy pass (the target: downtime under 10% of it) and the
// usual manual recipe (`docker compose stop`, busybox `cp -a` into a volume,
// `docker compose start`). It is run by bench/migrate.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moltctl/moltctl/bench/internal/benchdata"
	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/engine"
	"github.com/moltctl/moltctl/internal/migrate"
	"github.com/moltctl/moltctl/internal/volumes"
)

func main() {
	dir := flag.String("dir", "/var/tmp/moltctl-copybench", "work directory (on the disk docker's volumes live on); data sets are kept there")
	helper := flag.String("helper", "", "static moltctl binary for the helper image")
	busybox := flag.String("busybox", "moltctl-test/busybox:1", "busybox image: the service and the manual recipe")
	set := flag.String("set", "small", "data set: small (100k files of 4 KiB), large (1 GiB in 64 MiB files), tiny (1,000 files)")
	rounds := flag.Int("rounds", 3, "rounds; the median of each figure is printed")
	flag.Parse()
	if err := run(*dir, *helper, *busybox, *set, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "migratebench:", err)
		os.Exit(1)
	}
}

// round is what one migration measured.
type round struct {
	full, downtime, manual time.Duration
	steps                  map[string]time.Duration // downtime by step, from the progress events
	changed                int
}

func run(dir, helper, busybox, set string, rounds int) error {
	ctx := context.Background()
	src, ds, err := benchdata.Source(dir, set)
	if err != nil {
		return err
	}
	eng, err := engine.Connect(ctx, engine.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	var rs []round
	for i := 0; i < rounds; i++ {
		r, err := once(ctx, eng, dir, src, ds, helper, busybox, i)
		if err != nil {
			return err
		}
		rs = append(rs, r)
		fmt.Fprintf(os.Stderr, "round %d: full pass %.2fs, downtime %.2fs, manual recipe downtime %.2fs\n",
			i+1, r.full.Seconds(), r.downtime.Seconds(), r.manual.Seconds())
	}
	pick := func(f func(round) time.Duration) time.Duration {
		var d []time.Duration
		for _, r := range rs {
			d = append(d, f(r))
		}
		return benchdata.Median(d)
	}
	full := pick(func(r round) time.Duration { return r.full })
	down := pick(func(r round) time.Duration { return r.downtime })
	manual := pick(func(r round) time.Duration { return r.manual })
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("migrate downtime, %s, %d files changed after the first pass, median of %d (load %s)\n",
		ds.Name, rs[0].changed, rounds, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Printf("  %-58s %8.2f s\n", "moltctl full pass (services running)", full.Seconds())
	fmt.Printf("  %-58s %8.2f s  %5.1f%% of the full pass (target < 10%%)\n", "moltctl migrate downtime (stop → service started)", down.Seconds(), 100*down.Seconds()/full.Seconds())
	fmt.Printf("  %-58s %8.2f s  moltctl/manual %.2fx\n", "manual: compose stop, busybox cp -a into a volume, start", manual.Seconds(), down.Seconds()/manual.Seconds())
	fmt.Printf("  downtime by step (median):")
	for _, s := range []string{"stop", "delta", "verify", "rewrite", "remount"} {
		fmt.Printf(" %s %.2fs", s, pick(func(r round) time.Duration { return r.steps[s] }).Seconds())
	}
	fmt.Println()
	return nil
}

// once sets up a running project on a bind of src, times the manual recipe,
// then migrates it, changing 1% of src when the services are about to stop.
func once(ctx context.Context, eng migrate.RunEngine, dir, src string, ds benchdata.Set, helper, busybox string, i int) (r round, err error) {
	name := fmt.Sprintf("migratebench%d%d", time.Now().Unix()%100000, i)
	pdir := filepath.Join(dir, name)
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return r, err
	}
	file := filepath.Join(pdir, "compose.yaml")
	content := fmt.Sprintf(`name: %s
services:
  app:
    image: %s
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    volumes:
      - %s:/data
`, name, busybox, src)
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		return r, err
	}
	dc := func(args ...string) error { return benchdata.Sh("docker", append([]string{"compose", "-f", file}, args...)...) }
	hopts := volumes.HelperOptions{Binary: helper}
	defer func() {
		dc("down", "-v", "--timeout", "1")
		benchdata.Sh("sh", "-c", "docker image ls -q --filter label=io.moltctl.snapshot.project="+name+" | xargs -r docker image rm -f")
		benchdata.Sh("docker", "volume", "rm", "-f", name+"_manual")
		volumes.RemoveHelper(context.Background(), eng, hopts)
		os.RemoveAll(pdir)
	}()
	if err := dc("up", "-d"); err != nil {
		return r, err
	}
	// The manual recipe's downtime.
	benchdata.Warm(src)
	r.manual, err = benchdata.Timed(func() error {
		if err := dc("stop"); err != nil {
			return err
		}
		if err := benchdata.Sh("docker", "run", "--rm", "--network", "none", "-v", src+":/from:ro", "-v", name+"_manual:/to",
			busybox, "cp", "-a", "/from/.", "/to/"); err != nil {
			return err
		}
		return dc("start")
	})
	if err != nil {
		return r, err
	}
	// The migration, 1% changed just before the stop; each step's share of the downtime.
	benchdata.Warm(src)
	r.steps = map[string]time.Duration{}
	var last string
	var lastAt, copyAt time.Time
	progress := func(e migrate.Event) {
		if e.Copy != nil {
			return
		}
		now := time.Now()
		step := e.Step
		if step == "copy" && strings.HasPrefix(e.Detail, "full") {
			copyAt = now
		}
		if step == "stop" {
			r.full = now.Sub(copyAt)
			r.changed, err = benchdata.Change1pct(src, ds.Files)
			now = time.Now()
		}
		if step == "copy" && strings.HasPrefix(e.Detail, "full") {
			step = "full"
		} else if step == "copy" {
			step = "delta"
		}
		if last != "" && last != "full" && last != "create" && last != "plan" && last != "finish" && last != "check" {
			r.steps[last] += now.Sub(lastAt)
		}
		last, lastAt = step, now
	}
	rep, rerr := migrate.Run(ctx, eng, migrate.RunOptions{Compose: compose.Options{Files: []string{file}},
		Helper: hopts, Progress: progress, WaitTimeout: time.Second})
	if rerr != nil {
		return r, rerr
	}
	if err != nil {
		return r, err
	}
	r.downtime = rep.Downtime
	return r, nil
}
