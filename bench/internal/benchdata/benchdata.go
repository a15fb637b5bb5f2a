// Package benchdata holds what the benchmark commands under bench/ share: the
// data sets of the issue (1 GiB in 64 MiB files; 100k files of 4 KiB in nested
// directories), the 1% change made after a first pass, and timing helpers.
package benchdata

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Set is a data set: Make fills an empty directory with Files files.
type Set struct {
	Name  string
	Make  func(dir string) error
	Files int
}

// Sets are the data sets by flag name: large, small, and tiny (1,000 files, for a quick run).
var Sets = map[string]Set{
	"large": {"1 GiB in 64 MiB files", func(d string) error {
		for i := 0; i < 16; i++ {
			if err := randFile(filepath.Join(d, fmt.Sprintf("blob%02d", i)), 64<<20); err != nil {
				return err
			}
		}
		return nil
	}, 16},
	"small": {"100k files of 4 KiB in nested dirs", func(d string) error { return smallFiles(d, 100) }, 100000},
	"tiny":  {"1,000 files of 4 KiB in nested dirs", func(d string) error { return smallFiles(d, 1) }, 1000},
}

// smallFiles writes tops × 10 × 100 files of 4 KiB of random data.
func smallFiles(d string, tops int) error {
	buf := make([]byte, 4096)
	for i := 0; i < tops; i++ {
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
}

// Source returns the directory holding data set name under dir, making it the
// first time (a marker file says it is complete; later runs reuse it).
func Source(dir, name string) (string, Set, error) {
	ds, ok := Sets[name]
	if !ok {
		return "", ds, fmt.Errorf("unknown data set %q", name)
	}
	src := filepath.Join(dir, "src-"+name)
	if _, err := os.Stat(filepath.Join(dir, name+".done")); err != nil {
		os.RemoveAll(src)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", ds, err
		}
		if err := ds.Make(src); err != nil {
			return "", ds, fmt.Errorf("making data set %s: %w", name, err)
		}
		os.WriteFile(filepath.Join(dir, name+".done"), nil, 0o644)
	}
	return src, ds, nil
}

// Median returns the median of d.
func Median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
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

// Sh runs a command; the error carries its output.
func Sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Timed runs f after a sync (so earlier runs' dirty pages do not count) and
// returns its wall time.
func Timed(f func() error) (time.Duration, error) {
	Sh("sync")
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// Warm reads every file of the tree so that each contestant starts from a warm page cache.
func Warm(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			os.ReadFile(p)
		}
		return nil
	})
}

// Change1pct rewrites 1% of the files (at least one) in place, same size, and
// returns how many it changed.
func Change1pct(dir string, total int) (int, error) {
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
