// Command copybench measures moltctl's volume copy (volumes.Copy, through the
// helper container) against host `cp -a` and the busybox recipe
// `docker run --rm -v SRC:/from -v VOL:/to busybox cp -a /from/. /to/`, side by
// side in one run on the same disk, and the delta pass after 1% of the files
// changed. It is run by bench/copy.sh, which documents the conditions.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moltctl/moltctl/internal/engine"
	"github.com/moltctl/moltctl/internal/volumes"
)

var rounds = 1

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

type dataset struct {
	name  string
	make  func(dir string) error
	files int
}

func main() {
	dir := flag.String("dir", "/var/tmp/moltctl-copybench", "work directory (on the disk docker's volumes live on)")
	helper := flag.String("helper", "", "static moltctl binary for the helper image")
	busybox := flag.String("busybox", "moltctl-test/busybox:1", "busybox image for the recipe")
	sets := flag.String("sets", "large,small", "data sets: large (1 GiB in 64 MiB files), small (100k files of 4 KiB)")
	flag.IntVar(&rounds, "rounds", 1, "rounds per data set; the median of each contestant is printed")
	flag.Parse()
	if err := run(*dir, *helper, *busybox, strings.Split(*sets, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "copybench:", err)
		os.Exit(1)
	}
}

var all = map[string]dataset{
	"large": {"1 GiB in 64 MiB files", func(d string) error {
		for i := 0; i < 16; i++ {
			if err := randFile(filepath.Join(d, fmt.Sprintf("blob%02d", i)), 64<<20); err != nil {
				return err
			}
		}
		return nil
	}, 16},
	"small": {"100k files of 4 KiB in nested dirs", func(d string) error {
		buf := make([]byte, 4096)
		for i := 0; i < 100; i++ {
			for j := 0; j < 10; j++ {
				sub := filepath.Join(d, fmt.Sprintf("d%03d", i), fmt.Sprintf("e%02d", j))
				if err := os.MkdirAll(sub, 0o755); err != nil {
					return err
				}
				for k := 0; k < 100; k++ {
					rand.Read(buf)
					if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", k)), buf, 0o644); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}, 100000},
}

func randFile(p string, size int) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n := 0; n < size; n += len(buf) {
		rand.Read(buf)
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// timed runs f after a sync (so earlier runs' dirty pages do not count) and
// returns its wall time.
func timed(f func() error) (time.Duration, error) {
	sh("sync")
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// warm reads every file of the tree so that each contestant starts from a warm page cache.
func warm(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil {
				_ = b
			}
		}
		return nil
	})
}

// change1pct rewrites 1% of the files (at least one) in place, same size.
func change1pct(dir string, total int) (int, error) {
	want := total / 100
	if want == 0 {
		want = 1
	}
	n, i := 0, 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || n >= want {
			return err
		}
		i++
		if i%100 != 1 && want > 1 {
			return nil
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, 4096)
		rand.Read(b)
		if _, err := f.WriteAt(b, 0); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
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
		ds, ok := all[name]
		if !ok {
			return fmt.Errorf("unknown data set %q", name)
		}
		src := filepath.Join(dir, "src-"+name)
		if _, err := os.Stat(filepath.Join(dir, name+".done")); err != nil {
			os.RemoveAll(src)
			if err := os.MkdirAll(src, 0o755); err != nil {
				return err
			}
			if err := ds.make(src); err != nil {
				return fmt.Errorf("making data set %s: %w", name, err)
			}
			os.WriteFile(filepath.Join(dir, name+".done"), nil, 0o644)
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
			if err := sh("docker", "volume", "create", cpVol); err != nil {
				return err
			}
			mp, err := exec.Command("docker", "volume", "inspect", "-f", "{{.Mountpoint}}", cpVol).Output()
			if err != nil {
				return fmt.Errorf("inspecting %s: %w", cpVol, err)
			}
			dst := filepath.Join(strings.TrimSpace(string(mp)), "copy")
			warm(src)
			tcp, err := timed(func() error { return sh("cp", "-a", src, dst) })
			sh("docker", "volume", "rm", "-f", cpVol)
			if err != nil {
				return err
			}
			// the busybox recipe
			bbVol := "copybench-bb-" + stamp
			if err := sh("docker", "volume", "create", bbVol); err != nil {
				return err
			}
			warm(src)
			tbb, err := timed(func() error {
				return sh("docker", "run", "--rm", "--network", "none", "-v", src+":/from:ro", "-v", bbVol+":/to", busybox, "cp", "-a", "/from/.", "/to/")
			})
			sh("docker", "volume", "rm", "-f", bbVol)
			if err != nil {
				return err
			}
			// moltctl: full pass, then the delta after 1% changed
			vol := "copybench-moltctl-" + stamp
			if _, err := volumes.Create(ctx, eng, volumes.CreateOptions{Name: vol, Project: "copybench", Key: name, Migration: stamp, Helper: hopts}); err != nil {
				return err
			}
			warm(src)
			tfull, err := timed(func() error {
				res, err = volumes.Copy(ctx, eng, volumes.CopyOptions{Source: src, Volume: vol, Owner: "1000:1000", Helper: hopts})
				return err
			})
			if err != nil {
				sh("docker", "volume", "rm", "-f", vol)
				return err
			}
			changed, err = change1pct(src, ds.files)
			if err != nil {
				return err
			}
			tdelta, err := timed(func() error {
				dres, err = volumes.Copy(ctx, eng, volumes.CopyOptions{Source: src, Volume: vol, Owner: "1000:1000", Pass: volumes.PassDelta, Helper: hopts})
				return err
			})
			sh("docker", "volume", "rm", "-f", vol)
			if err != nil {
				return err
			}
			cps, bbs, fulls, deltas = append(cps, tcp), append(bbs, tbb), append(fulls, tfull), append(deltas, tdelta)
		}
		tcp, tbb, tfull, tdelta := median(cps), median(bbs), median(fulls), median(deltas)
		label := ds.name
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
