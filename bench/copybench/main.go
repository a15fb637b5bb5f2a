// Command copybench measures moltctl's volume copy (volumes.Copy, through the
// helper container) against host `cp -a` and the busybox recipe
// `docker run --rm -v SRC:/from -v VOL:/to busybox cp -a /from/. /to/`, side by
// side in one run on the same disk, and the delta pass after 1% of the files
// changed. It is run by bench/copy.sh, which documents the conditions.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/moltctl/moltctl/bench/internal/benchdata"
	"github.com/moltctl/moltctl/internal/engine"
	"github.com/moltctl/moltctl/internal/volumes"
)

var rounds = 1

func main() {
	dir := flag.String("dir", "/var/tmp/moltctl-copybench", "work directory (on the disk docker's volumes live on)")
	helper := flag.String("helper", "", "static moltctl binary for the helper image")
	busybox := flag.String("busybox", "moltctl-test/busybox:1", "busybox image for the recipe")
	sets := flag.String("sets", "large,small", "data sets: large (1 GiB in 64 MiB files), small (100k files of 4 KiB), tiny (1,000 files)")
	flag.IntVar(&rounds, "rounds", 1, "rounds per data set; the median of each contestant is printed")
	flag.Parse()
	if err := run(*dir, *helper, *busybox, strings.Split(*sets, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "copybench:", err)
		os.Exit(1)
	}
}

func run(dir, helper, busybox string, sets []string) error {
	ctx := context.Background()
	eng, err := engine.Connect(ctx, engine.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	b := &bench{ctx: ctx, eng: eng, hopts: volumes.HelperOptions{Binary: helper}, busybox: busybox}
	if _, err := volumes.EnsureHelper(ctx, eng, b.hopts); err != nil {
		return err
	}
	defer volumes.RemoveHelper(context.Background(), eng, b.hopts)
	fmt.Printf("%-36s %-28s %10s %10s\n", "data set", "copy", "seconds", "ratio")
	for _, name := range sets {
		if err := b.set(dir, name); err != nil {
			return err
		}
	}
	return nil
}

// bench is what every round of every data set uses.
type bench struct {
	ctx     context.Context
	eng     *client.Client
	hopts   volumes.HelperOptions
	busybox string
}

// timings are one round's results: each contestant's time, moltctl's copy
// results and how many files the delta pass saw changed.
type timings struct {
	cp, bb, full, delta time.Duration
	res, dres           *volumes.CopyResult
	changed             int
}

// set runs the rounds of data set name (made under dir) and prints the
// median of each contestant.
func (b *bench) set(dir, name string) error {
	src, ds, err := benchdata.Source(dir, name)
	if err != nil {
		return err
	}
	var cps, bbs, fulls, deltas []time.Duration
	var last timings
	for round := 0; round < rounds; round++ {
		if last, err = b.round(src, name, ds); err != nil {
			return err
		}
		cps, bbs, fulls, deltas = append(cps, last.cp), append(bbs, last.bb), append(fulls, last.full), append(deltas, last.delta)
	}
	med := timings{cp: benchdata.Median(cps), bb: benchdata.Median(bbs), full: benchdata.Median(fulls), delta: benchdata.Median(deltas),
		res: last.res, dres: last.dres, changed: last.changed}
	printSet(ds.Name, med)
	return nil
}

// round times the three contestants once on src.
func (b *bench) round(src, name string, ds benchdata.Set) (timings, error) {
	var t timings
	var err error
	stamp := fmt.Sprintf("%d", time.Now().UnixNano())
	if t.cp, err = timeHostCp(src, stamp); err != nil {
		return t, err
	}
	if t.bb, err = b.timeBusybox(src, stamp); err != nil {
		return t, err
	}
	err = b.timeMoltctl(src, name, stamp, ds, &t)
	return t, err
}

// timeHostCp times host cp -a: the physical baseline, into a fresh volume's
// directory on the engine's host (this bench runs beside a local engine), so
// that every contestant writes to the same place.
func timeHostCp(src, stamp string) (time.Duration, error) {
	cpVol := "copybench-cp-" + stamp
	if err := benchdata.Sh("docker", "volume", "create", cpVol); err != nil {
		return 0, err
	}
	mp, err := exec.Command("docker", "volume", "inspect", "-f", "{{.Mountpoint}}", cpVol).Output()
	if err != nil {
		return 0, fmt.Errorf("inspecting %s: %w", cpVol, err)
	}
	dst := filepath.Join(strings.TrimSpace(string(mp)), "copy")
	benchdata.Warm(src)
	tcp, err := benchdata.Timed(func() error { return benchdata.Sh("cp", "-a", src, dst) })
	benchdata.Sh("docker", "volume", "rm", "-f", cpVol)
	return tcp, err
}

// timeBusybox times the busybox recipe.
func (b *bench) timeBusybox(src, stamp string) (time.Duration, error) {
	bbVol := "copybench-bb-" + stamp
	if err := benchdata.Sh("docker", "volume", "create", bbVol); err != nil {
		return 0, err
	}
	benchdata.Warm(src)
	tbb, err := benchdata.Timed(func() error {
		return benchdata.Sh("docker", "run", "--rm", "--network", "none", "-v", src+":/from:ro", "-v", bbVol+":/to", b.busybox, "cp", "-a", "/from/.", "/to/")
	})
	benchdata.Sh("docker", "volume", "rm", "-f", bbVol)
	return tbb, err
}

// timeMoltctl times moltctl's full pass, then the delta after 1% of the files
// changed, into t.
func (b *bench) timeMoltctl(src, name, stamp string, ds benchdata.Set, t *timings) error {
	vol := "copybench-moltctl-" + stamp
	if _, err := volumes.Create(b.ctx, b.eng, volumes.CreateOptions{Name: vol, Project: "copybench", Key: name, Migration: stamp, Helper: b.hopts}); err != nil {
		return err
	}
	benchdata.Warm(src)
	var err error
	t.full, err = benchdata.Timed(func() error {
		t.res, err = volumes.Copy(b.ctx, b.eng, volumes.CopyOptions{Source: src, Volume: vol, Owner: "1000:1000", Helper: b.hopts})
		return err
	})
	if err != nil {
		benchdata.Sh("docker", "volume", "rm", "-f", vol)
		return err
	}
	if t.changed, err = benchdata.Change1pct(src, ds.Files); err != nil {
		return err
	}
	t.delta, err = benchdata.Timed(func() error {
		t.dres, err = volumes.Copy(b.ctx, b.eng, volumes.CopyOptions{Source: src, Volume: vol, Owner: "1000:1000", Pass: volumes.PassDelta, Helper: b.hopts})
		return err
	})
	benchdata.Sh("docker", "volume", "rm", "-f", vol)
	return err
}

// printSet prints the medians of data set label, with moltctl's details of
// the last round.
func printSet(label string, t timings) {
	if rounds > 1 {
		label += fmt.Sprintf(" (median of %d)", rounds)
	}
	fmt.Printf("%-36s %-28s %10.2f %10s\n", label, "host cp -a", t.cp.Seconds(), "1.00")
	fmt.Printf("%-36s %-28s %10.2f %9.2fx\n", "", "docker run busybox cp -a", t.bb.Seconds(), t.bb.Seconds()/t.cp.Seconds())
	fmt.Printf("%-36s %-28s %10.2f %9.2fx\n", "", "moltctl full pass", t.full.Seconds(), t.full.Seconds()/t.cp.Seconds())
	fmt.Printf("%-36s %-28s %10.2f %9.1f%% of full\n", "", fmt.Sprintf("moltctl delta (%d changed)", t.changed), t.delta.Seconds(), 100*t.delta.Seconds()/t.full.Seconds())
	fmt.Printf("%-36s %-28s %10s moltctl/busybox %.2fx, helper-side full %.2fs, %d files, %d bytes; delta copied %d bytes\n", "", "", "",
		t.full.Seconds()/t.bb.Seconds(), t.res.Duration.Seconds(), t.res.Files, t.res.Bytes, t.dres.Bytes)
}
