// Command migratebench measures the downtime of a real `moltctl migrate`
// (migrate.Run) of a running compose service whose bind-mounted directory holds
// a data set, where 1% of the files change after the first pass (while the
// service still runs), beside three baselines in the same run on the same
// disk: moltctl's own full pass (the target: downtime under 10% of it), a host
// `cp -a` of the tree, and the manual recipe (`docker compose stop`, busybox
// `cp -a` into a volume, compose file pointed at the volume, `docker compose up -d`).
// Contestants alternate order between rounds; medians are printed, with each
// step's share of the downtime from the progress events' timestamps. It is run
// by bench/migrate.sh, and removes everything it made, also on error or Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moltctl/moltctl/bench/internal/benchdata"
	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/engine"
	"github.com/moltctl/moltctl/internal/migrate"
	"github.com/moltctl/moltctl/internal/progress"
	"github.com/moltctl/moltctl/internal/volumes"
)

func main() {
	var c config
	flag.StringVar(&c.dir, "dir", "/var/tmp/moltctl-copybench", "work directory (on the disk docker's volumes live on); data sets are kept there")
	flag.StringVar(&c.helper, "helper", "", "static moltctl binary for the helper image (required)")
	flag.StringVar(&c.busybox, "busybox", "", "busybox image for the service and the manual recipe (default: built from the host's static /bin/busybox, removed at the end)")
	flag.StringVar(&c.set, "set", "small", "data set: small (100k files of 4 KiB in nested dirs), large (1 GiB in 64 MiB files), tiny (1,000 files: a run in a minute)")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds; the median of each figure is printed")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "migratebench:", err)
		os.Exit(1)
	}
}

type config struct {
	dir, helper, busybox, set string
	rounds                    int
}

// steps are the parts of migrate's downtime, in order, named after the
// progress event that begins each: the stop, the delta pass, the verification,
// the compose file rewrite and the remount (until the check begins).
var steps = []string{"stop", "delta", "verify", "rewrite", "remount"}

// round is what one round measured.
type round struct {
	order []string
	cp    time.Duration // host cp -a of the tree
	// manual recipe: stop, busybox cp -a, up -d on the volume; and their sum
	mStop, mCopy, mUp, manual time.Duration
	// migrate: wall time of the full pass (services running), the downtime and
	// the total (both without the bench's own 1% change), the helper-side
	// durations of the full pass, delta and verify, and the downtime by step
	full, downtime, total       time.Duration
	hFull, hDelta, hVerify      time.Duration
	change                      time.Duration // the bench rewriting 1% (excluded from the above)
	by                          map[string]time.Duration
	changed, deltaFiles, hashed int
}

func run(ctx context.Context, c config) error {
	if c.helper == "" {
		return errors.New("no -helper binary given")
	}
	if c.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	src, ds, err := benchdata.Source(c.dir, c.set)
	if err != nil {
		return err
	}
	// migrate's journals and locks go to a state dir of our own.
	state, err := os.MkdirTemp(c.dir, "state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	os.Setenv("MOLTCTL_STATE_DIR", state)
	if c.busybox == "" {
		img, remove, err := buildBusybox(c.dir)
		if err != nil {
			return err
		}
		defer remove()
		c.busybox = img
	}
	eng, err := engine.Connect(ctx, engine.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	hopts := volumes.HelperOptions{Binary: c.helper}
	defer volumes.RemoveHelper(context.Background(), eng, hopts)

	var rs []round
	for i := 0; i < c.rounds; i++ {
		r := round{order: []string{"cp -a", "manual", "migrate"}, by: map[string]time.Duration{}}
		if i%2 == 1 {
			slices.Reverse(r.order)
		}
		for _, who := range r.order {
			if err := ctx.Err(); err != nil {
				return err
			}
			var err error
			switch who {
			case "cp -a":
				r.cp, err = hostCopy(c.dir, src)
			case "manual":
				err = manual(ctx, c, src, &r)
			case "migrate":
				err = migration(ctx, eng, c, src, ds, hopts, &r)
			}
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", i+1, who, err)
			}
		}
		rs = append(rs, r)
		printRound(i+1, r)
	}
	printSummary(ds, rs)
	return nil
}

func printRound(i int, r round) {
	fmt.Printf("round %d (%s): cp -a %.2fs | manual %.2fs (stop %.2f, cp %.2f, up %.2f) | migrate full pass %.2fs, downtime %.2fs (",
		i, strings.Join(r.order, ", "), r.cp.Seconds(), r.manual.Seconds(), r.mStop.Seconds(), r.mCopy.Seconds(), r.mUp.Seconds(),
		r.full.Seconds(), r.downtime.Seconds())
	for k, s := range steps {
		if k > 0 {
			fmt.Print(" ")
		}
		fmt.Printf("%s %.2f", s, r.by[s].Seconds())
	}
	fmt.Printf("), total %.2fs; 1%% rewrite %.2fs\n", r.total.Seconds(), r.change.Seconds())
}

func printSummary(ds benchdata.Set, rs []round) {
	med := func(f func(round) time.Duration) time.Duration {
		var d []time.Duration
		for _, r := range rs {
			d = append(d, f(r))
		}
		return benchdata.Median(d)
	}
	cp := med(func(r round) time.Duration { return r.cp })
	full := med(func(r round) time.Duration { return r.full })
	down := med(func(r round) time.Duration { return r.downtime })
	man := med(func(r round) time.Duration { return r.manual })
	fmt.Printf("\nmigrate downtime, %s, %d files changed after the first pass, median of %d, load average %s\n",
		ds.Name, rs[0].changed, len(rs), loadavg())
	row := func(name string, d time.Duration, note string) {
		fmt.Printf("  %-66s %8.2f s  %s\n", name, d.Seconds(), note)
	}
	row("host cp -a of the tree", cp, "")
	row("moltctl full pass (services running)", full, fmt.Sprintf("%.2fx cp -a; helper-side %.2f s",
		full.Seconds()/cp.Seconds(), med(func(r round) time.Duration { return r.hFull }).Seconds()))
	row("moltctl migrate total (plan to finish)", med(func(r round) time.Duration { return r.total }), "")
	row("moltctl migrate downtime (stop → service started on its volume)", down,
		fmt.Sprintf("%.1f%% of the full pass (target < 10%%), %.2fx the manual recipe", 100*down.Seconds()/full.Seconds(), down.Seconds()/man.Seconds()))
	for _, s := range steps {
		note := ""
		switch s {
		case "delta":
			note = fmt.Sprintf("helper-side %.2f s, %d entries copied", med(func(r round) time.Duration { return r.hDelta }).Seconds(), rs[0].deltaFiles)
		case "verify":
			note = fmt.Sprintf("helper-side %.2f s, %d files hashed", med(func(r round) time.Duration { return r.hVerify }).Seconds(), rs[0].hashed)
		}
		row("    "+s, med(func(r round) time.Duration { return r.by[s] }), note)
	}
	row("manual: compose stop, busybox cp -a into a volume, up -d", man, "")
	row("    stop", med(func(r round) time.Duration { return r.mStop }), "")
	row("    busybox cp -a", med(func(r round) time.Duration { return r.mCopy }), "")
	row("    up -d (container recreated on the volume)", med(func(r round) time.Duration { return r.mUp }), "")
	fmt.Printf("  ratios: downtime / full moltctl copy %.3f; downtime / manual downtime %.3f; full pass / cp -a %.2f\n",
		down.Seconds()/full.Seconds(), down.Seconds()/man.Seconds(), full.Seconds()/cp.Seconds())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// buildBusybox builds a busybox image from the host's static /bin/busybox (as
// internal/dockertest.Busybox does for the tests, with a user 1000) under a
// tag of our own, and returns it with its removal.
func buildBusybox(dir string) (string, func(), error) {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", nil, fmt.Errorf("reading the static busybox to build the service image: %w", err)
	}
	ctx, err := os.MkdirTemp(dir, "image-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(ctx)
	files := map[string]string{
		"busybox": string(bb),
		"passwd":  "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n",
		"group":   "root:x:0:\nnode:x:1000:\n",
		"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n" +
			"COPY passwd group /etc/\nRUN mkdir -p /tmp && chmod 1777 /tmp\nENV PATH=/bin\nCMD [\"sh\"]\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ctx, name), []byte(content), 0o755); err != nil {
			return "", nil, err
		}
	}
	tag := fmt.Sprintf("moltctl-bench/busybox:%d", os.Getpid())
	if err := benchdata.Sh("docker", "build", "-q", "-t", tag, ctx); err != nil {
		return "", nil, fmt.Errorf("building the service image: %w", err)
	}
	return tag, func() { benchdata.Sh("docker", "image", "rm", tag) }, nil
}

// hostCopy times `cp -a` of the tree into a fresh volume's directory, where
// the other contestants write too.
func hostCopy(dir, src string) (time.Duration, error) {
	vol := fmt.Sprintf("migratebench-cp-%d", time.Now().UnixNano())
	if err := benchdata.Sh("docker", "volume", "create", vol); err != nil {
		return 0, err
	}
	defer benchdata.Sh("docker", "volume", "rm", "-f", vol)
	mp, err := exec.Command("docker", "volume", "inspect", "-f", "{{.Mountpoint}}", vol).Output()
	if err != nil {
		return 0, fmt.Errorf("inspecting volume %s: %w", vol, err)
	}
	benchdata.Warm(src)
	return benchdata.Timed(func() error {
		return benchdata.Sh("cp", "-a", src, filepath.Join(strings.TrimSpace(string(mp)), "copy"))
	})
}

// project is a compose project of one busybox service (user 1000:1000) with
// the data set bind-mounted at /data. The service exits at once on SIGTERM (the
// trap runs during wait; a `while sleep 1` loop would add up to a second to
// each stop, which is the service's, not moltctl's).
type project struct {
	name, dir, file string
}

func newProject(c config, src, tag string) (*project, error) {
	name := fmt.Sprintf("migratebench%d%s", time.Now().UnixNano()%1e9, tag)
	p := &project{name: name, dir: filepath.Join(c.dir, name)}
	p.file = filepath.Join(p.dir, "compose.yaml")
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	if err := p.write(c.busybox, src, ""); err != nil {
		os.RemoveAll(p.dir)
		return nil, err
	}
	return p, nil
}

// write writes compose.yaml: mount (a host path, or an external volume's name when volume is set) at /data.
func (p *project) write(image, mount, volume string) error {
	content := fmt.Sprintf(`name: %s
services:
  app:
    image: %s
    user: "1000:1000"
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"]
    volumes:
      - %s:/data
`, p.name, image, mount)
	if volume != "" {
		content += fmt.Sprintf("volumes:\n  %s:\n    external: true\n", volume)
	}
	return os.WriteFile(p.file, []byte(content), 0o644)
}

func (p *project) compose(args ...string) error {
	return benchdata.Sh("docker", append([]string{"compose", "-f", p.file}, args...)...)
}

// remove takes the project down and removes its volumes (compose's, migrate's
// and the manual recipe's), its snapshot images and its directory.
func (p *project) remove() {
	p.compose("down", "-v", "--timeout", "1")
	for _, q := range []string{
		"docker volume ls -q --filter label=com.docker.compose.project=" + p.name + " | xargs -r docker volume rm -f",
		"docker image ls -q --filter label=io.moltctl.snapshot.project=" + p.name + " | xargs -r docker image rm -f",
	} {
		benchdata.Sh("sh", "-c", q)
	}
	benchdata.Sh("docker", "volume", "rm", "-f", p.name+"_manual")
	os.RemoveAll(p.dir)
}

// manual times the recipe without moltctl: stop, copy into a volume with
// busybox cp -a, point the compose file at the volume, up -d.
func manual(ctx context.Context, c config, src string, r *round) error {
	p, err := newProject(c, src, "m")
	if err != nil {
		return err
	}
	defer p.remove()
	if err := p.compose("up", "-d"); err != nil {
		return err
	}
	vol := p.name + "_manual"
	benchdata.Warm(src)
	var t0, t1, t2 time.Time
	r.manual, err = benchdata.Timed(func() error {
		t0 = time.Now()
		if err := p.compose("stop"); err != nil {
			return err
		}
		t1 = time.Now()
		if err := benchdata.Sh("docker", "run", "--rm", "--network", "none", "-v", src+":/from:ro", "-v", vol+":/to",
			c.busybox, "cp", "-a", "/from/.", "/to/"); err != nil {
			return err
		}
		if err := p.write(c.busybox, vol, vol); err != nil {
			return err
		}
		t2 = time.Now()
		return p.compose("up", "-d")
	})
	if err != nil {
		return err
	}
	r.mStop, r.mCopy, r.mUp = t1.Sub(t0), t2.Sub(t1), r.manual-t2.Sub(t0)
	return ctx.Err()
}

// event is the start of a step and when it came.
type event struct {
	step, pass string
	at         time.Time
}

// migration migrates a fresh project, rewriting 1% of the data set in the
// progress callback of the "stop" event (just before the services stop), and
// fills in r's migrate figures.
func migration(ctx context.Context, eng migrate.RunEngine, c config, src string, ds benchdata.Set, hopts volumes.HelperOptions, r *round) error {
	p, err := newProject(c, src, "n")
	if err != nil {
		return err
	}
	defer p.remove()
	if err := p.compose("up", "-d"); err != nil {
		return err
	}
	benchdata.Warm(src)
	benchdata.Sh("sync")
	var evs []event
	var changeErr error
	onProgress := func(e progress.Event) {
		if e.Phase != progress.Started {
			return
		}
		if e.Step == progress.Stop {
			t := time.Now()
			r.changed, changeErr = benchdata.Change1pct(src, ds.Files)
			r.change = time.Since(t)
		}
		evs = append(evs, event{string(e.Step), e.Pass, time.Now()})
	}
	project, err := compose.Load(ctx, compose.Options{Files: []string{p.file}})
	if err != nil {
		return err
	}
	rep, err := migrate.Run(ctx, eng, migrate.RunOptions{Project: project,
		Helper: hopts, Progress: onProgress, WaitTimeout: time.Second})
	if err != nil {
		return err
	}
	if changeErr != nil {
		return fmt.Errorf("changing 1%% of the files: %w", changeErr)
	}
	if len(rep.Volumes) != 1 || rep.Volumes[0].Full == nil || rep.Volumes[0].Delta == nil || rep.Volumes[0].Verify == nil {
		return fmt.Errorf("migrate reported %d volume(s), want 1 with a full pass, a delta and a verification", len(rep.Volumes))
	}
	v := rep.Volumes[0]
	r.hFull, r.hDelta, r.hVerify = v.Full.Duration, v.Delta.Duration, v.Verify.Duration
	r.deltaFiles, r.hashed = int(v.Delta.Files), v.Verify.Hashed
	// The downtime begins just before the "stop" event, so it holds the 1% change.
	r.downtime, r.total = rep.Downtime-r.change, rep.Total-r.change
	return breakdown(evs, r)
}

// breakdown fills in the full pass and the downtime by step from the events:
// each step lasts from its first event to the next step's.
func breakdown(evs []event, r *round) error {
	first := map[string]time.Time{}
	for _, e := range evs {
		step := e.step
		if step == "copy" {
			step = "delta"
			if e.pass == "full" {
				step = "full"
			}
		}
		if _, ok := first[step]; !ok {
			first[step] = e.at
		}
	}
	order := append([]string{"full"}, append(steps, "check")...)
	for k, s := range order[:len(order)-1] {
		from, ok1 := first[s]
		to, ok2 := first[order[k+1]]
		if !ok1 || !ok2 {
			return fmt.Errorf("no %q or %q progress event (events %v)", s, order[k+1], evs)
		}
		if s == "full" {
			r.full = to.Sub(from) - r.change // the stop event came after the change
		} else {
			r.by[s] = to.Sub(from)
		}
	}
	return nil
}
