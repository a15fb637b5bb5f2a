package statemigrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Child-process mode: the test binary re-executed with these variables set
// runs one Migrate and prints its outcomes as JSON.
const (
	envChild   = "MOLTCTL_STATEMIGRATE_CHILD"    // JSON Options
	envCrashAt = "MOLTCTL_STATEMIGRATE_CRASH_AT" // exit 42 at the n-th step
	envHold    = "MOLTCTL_STATEMIGRATE_HOLD"     // sleep this long once locked
	crashCode  = 42
)

func TestMain(m *testing.M) {
	if js := os.Getenv(envChild); js != "" {
		os.Exit(child(js))
	}
	os.Exit(m.Run())
}

func child(js string) int {
	var opts Options
	if err := json.Unmarshal([]byte(js), &opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	crashAt, _ := strconv.Atoi(os.Getenv(envCrashAt))
	hold, _ := time.ParseDuration(os.Getenv(envHold))
	n := 0
	stepHook = func(step string) {
		n++
		if n == crashAt {
			os.Exit(crashCode) // like kill -9: no deferred cleanup, the kernel drops the lock
		}
		if step == "locked" && hold > 0 {
			time.Sleep(hold)
		}
	}
	out, err := Migrate(context.Background(), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 2
	}
	return 0
}

// childCmd returns a command running Migrate(opts) in a child process.
func childCmd(tb testing.TB, opts Options, env ...string) *exec.Cmd {
	tb.Helper()
	js, err := json.Marshal(opts)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, envChild+"="+string(js))...)
	return cmd
}

// mount mounts (a bind mount when fstype is "", else a fresh fstype) on
// target and unmounts it in Cleanup.
func mount(tb testing.TB, source, target, fstype string) {
	tb.Helper()
	flags := uintptr(0)
	if fstype == "" {
		flags = unix.MS_BIND
	} else {
		source = fstype
	}
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		tb.Fatalf("mounting %s on %s: %v", source, target, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmounting %s: %v", target, err)
		}
	})
}

// state is a legacy directory's content: relative path → file content, or
// "->" + link target for a symlink; directories are implied.
type state map[string]string

var seed = state{
	"clawdbot.json":          `{"gateway":{"port":18789}}`,
	"sessions/a.jsonl":       "one\ntwo\n",
	"sessions/b.jsonl":       "three\n",
	"credentials/creds.json": `{"k":"v"}`,
	"current":                "->sessions/a.jsonl",
}

// migrated is seed after the moltbot preset's file rename.
func migrated(s state) state {
	out := state{}
	for k, v := range s {
		if k == "clawdbot.json" {
			k = "moltbot.json"
		}
		out[k] = v
	}
	return out
}

func write(tb testing.TB, dir string, s state) {
	tb.Helper()
	for rel, content := range s {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if len(content) > 2 && content[:2] == "->" {
			if err := os.Symlink(content[2:], p); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			tb.Fatal(err)
		}
	}
}

// read returns the state under dir (following dir itself if it is a link),
// leaving out moltctl's own marker.
func read(tb testing.TB, dir string) state {
	tb.Helper()
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		tb.Fatalf("reading %s: %v", dir, err)
	}
	s := state{}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case rel == "." || d.IsDir() || rel == copiedMarker:
		case d.Type()&(os.ModeNamedPipe|os.ModeSocket|os.ModeDevice) != 0:
			s[rel] = "(special)" // never opened: a fifo would block
		case d.Type()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s[rel] = "->" + l
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("reading %s: %v", dir, err)
	}
	return s
}

// appView returns the state the app would use: the target when it exists,
// else the first legacy directory that exists.
func appView(tb testing.TB, rules []Rule) (string, state) {
	tb.Helper()
	if _, err := os.Stat(rules[0].Target); err == nil {
		return rules[0].Target, read(tb, rules[0].Target)
	}
	for _, r := range rules {
		if _, err := os.Stat(r.Legacy); err == nil {
			return r.Legacy, read(tb, r.Legacy)
		}
	}
	return "", nil
}

func equal(a, b state) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func readlink(tb testing.TB, p string) string {
	tb.Helper()
	l, err := os.Readlink(p)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EINVAL) {
		return "" // absent, or not a link
	}
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func actions(out []Outcome) []string {
	var a []string
	for _, o := range out {
		a = append(a, o.Action)
	}
	return a
}

func eqStrings(a, b []string) bool {
	return bytes.Equal([]byte(fmt.Sprint(a)), []byte(fmt.Sprint(b)))
}
