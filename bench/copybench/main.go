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
	hopts := volumes.HelperOptions{Binary: helper}
	if _, err := volumes.EnsureHelper(ctx, eng, hopts); err != nil {
		return err
	}
	defer volumes.RemoveHelper(context.Background(), eng, hopts)
	fmt.Printf("%-36s %-28s %10s %10s\n", "data set", "copy", "seconds", "ratio")
	for _, name := range sets {
		src, ds, err := benchdata.Source(dir, name)
		if err != nil {
			return err
		}
		var cps, bbs, fulls, deltas []time.Duration
		var res, dres *volumes.CopyResult
		changed := 0
		for round := 0; round < rounds; round++ {
			stamp := fmt.Sprintf("%d", time.Now().UnixNano())
			// host cp -a: the physical baseline, into a fresh volume's directory on
			// the engine's host (this bench runs beside a local engine), so that
			// every contestant writes to the same place
			cpVol := "copybench-cp-" + stamp
			if err := benchdata.Sh("docker", "volume", "create", cpVol); err != nil {
				return err
			}
			mp, err := exec.Command("docker", "volume", "inspect", "-f", "{{.Mountpoint}}", cpVol).Output()
			if err != nil {
				return fmt.Errorf("inspecting %s: %w", cpVol, err)
			}
			dst := filepath.Join(strings.TrimSpace(string(mp)), "copy")
			benchdata.Warm(src)
			tcp, err := benchdata.Timed(func() error { return benchdata.Sh("cp", "-a", src, dst) })
			benchdata.Sh("docker", "volume", "rm", "-f", cpVol)
			if err != nil {
				return err
			}
			// the busybox recipe
			bbVol := "copybench-bb-" + stamp
			if err := benchdata.Sh("docker", "volume", "create", bbVol); err != nil {
				return err
			}
			benchdata.Warm(src)
			tbb, err := benchdata.Timed(func() error {
				return benchdata.Sh("docker", "run", "--rm", "--network", "none", "-v", src+":/from:ro", "-v", bbVol+":/to", busybox, "cp", "-a", "/from/.", "/to/")
			})
			benchdata.Sh("docker", "volume", "rm", "-f", bbVol)
			if err != nil {
				return err
			}
			// moltctl: full pass, then the delta after 1% changed
			vol := "copybench-moltctl-" + stamp
			if _, err := volumes.Create(ctx, eng, volumes.CreateOptions{Name: vol, Project: "copybench", Key: name, Migration: stamp, Helper: hopts}); err != nil {
				return err
			}
			benchdata.Warm(src)
			tfull, err := benchdata.Timed(func() error {
				res, err = volumes.Copy(ctx, eng, volumes.CopyOptions{Source: src, Volume: vol, Owner: "1000:1000", Helper: hopts})
				return err
			})
			if err != nil {
				benchdata.Sh("docker", "volume", "rm", "-f", vol)
				return err
			}
			changed, err = benchdata.Change1pct(src, ds.Files)
			if err != nil {
				return err
			}
			tdelta, err := benchdata.Timed(func() error {
				dres, err = volumes.Copy(ctx, eng, volumes.CopyOptions{Source: src, Volume: vol, Owner: "1000:1000", Pass: volumes.PassDelta, Helper: hopts})
				return err
			})
			benchdata.Sh("docker", "volume", "rm", "-f", vol)
			if err != nil {
				return err
			}
			cps, bbs, fulls, deltas = append(cps, tcp), append(bbs, tbb), append(fulls, tfull), append(deltas, tdelta)
		}
		tcp, tbb, tfull, tdelta := benchdata.Median(cps), benchdata.Median(bbs), benchdata.Median(fulls), benchdata.Median(deltas)
		label := ds.Name
		if rounds > 1 {
			label += fmt.Sprintf(" (median of %d)", rounds)
		}
		fmt.Printf("%-36s %-28s %10.2f %10s\n", label, "host cp -a", tcp.Seconds(), "1.00")
		fmt.Printf("%-36s %-28s %10.2f %9.2fx\n", "", "docker run busybox cp -a", tbb.Seconds(), tbb.Seconds()/tcp.Seconds())
		fmt.Printf("%-36s %-28s %10.2f %9.2fx\n", "", "moltctl full pass", tfull.Seconds(), tfull.Seconds()/tcp.Seconds())
		fmt.Printf("%-36s %-28s %10.2f %9.1f%% of full\n", "", fmt.Sprintf("moltctl delta (%d changed)", changed), tdelta.Seconds(), 100*tdelta.Seconds()/tfull.Seconds())
		fmt.Printf("%-36s %-28s %10s moltctl/busybox %.2fx, helper-side full %.2fs, %d files, %d bytes; delta copied %d bytes\n", "", "", "",
			tfull.Seconds()/tbb.Seconds(), res.Duration.Seconds(), res.Files, res.Bytes, dres.Bytes)
	}
	return nil
}
