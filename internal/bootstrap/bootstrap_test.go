package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moltctl/moltctl/internal/dockertest"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/perms"
	"github.com/moltctl/moltctl/internal/statemigrate"
)

// wireOptions carries Options to the child process.
type wireOptions struct {
	User    string
	Dirs    []string
	Legacy  string
	Home    string
	EtcDir  string
	NoChown bool
	Command []string
	DryRun  bool
}

// The tests run bootstrap in a child process (this test binary, re-executed),
// because Run ends in exec.
const childEnv = "MOLTCTL_BOOTSTRAP_TEST_OPTIONS"

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	if js := os.Getenv(childEnv); js != "" {
		var w wireOptions
		if err := json.Unmarshal([]byte(js), &w); err != nil {
			fmt.Fprintln(os.Stderr, "child: decoding options:", err)
			os.Exit(2)
		}
		o := Options{User: w.User, Dirs: w.Dirs, Legacy: w.Legacy, Home: w.Home, EtcDir: w.EtcDir, NoChown: w.NoChown, Command: w.Command, DryRun: w.DryRun}
		o.Env = nil
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, childEnv+"=") {
				o.Env = append(o.Env, kv)
			}
		}
		o.Progress = func(e Event) {
			switch e.Kind {
			case EventOwnership:
				fmt.Fprintf(os.Stderr, "fixed %s changed=%d\n", e.Dir, e.Stats.Changed)
			case EventWarning:
				fmt.Fprintf(os.Stderr, "warning: %s\n", e.Message)
			}
		}
		err := Run(context.Background(), o)
		for _, s := range []error{statemigrate.ErrUnknownPreset, ErrSetID, ErrRootUser, ErrNotFound, ErrNotExecutable, ErrUnknownUser, perms.ErrNotWritable,
			ErrIDRange, perms.ErrSystemDir, perms.ErrSymlink} {
			if errors.Is(err, s) {
				fmt.Fprintf(os.Stderr, "sentinel: %v\n", s)
			}
		}
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(3)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testBinary returns a copy of this test binary in a directory every user may
// enter, so that a child started as uid 1000 can run it; mode is its mode.
func testBinary(tb testing.TB, name string, mode uint32) string {
	tb.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "bootstrap-test-bin")
		if binErr == nil {
			binErr = os.Chmod(binDir, 0o755)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err != nil {
		self, err := os.ReadFile("/proc/self/exe")
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, self, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := unix.Chmod(p, mode); err != nil {
		tb.Fatal(err)
	}
	return p
}

// etcDir writes passwd and group files for node (1000:1000, also in "extra"
// 2000 and "audio" 29) and root (in "wheel" 10, whose group must not survive
// the drop).
func etcDir(tb testing.TB) string {
	tb.Helper()
	d := tb.TempDir()
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\n# comment\nnode:x:1000:1000:Node:/home/nodehome:/bin/sh\nbroken:line\napp:x:1001:1001::/srv/app:/bin/sh\n",
		"group":  "root:x:0:\nwheel:x:10:root\nnode:x:1000:\nextra:x:2000:other,node\naudio:x:29:node\napp:x:1001:\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(d, n), []byte(c), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return d
}

// child returns the command that runs Run(o) in a new process, as cred when
// not nil.
func child(tb testing.TB, bin string, o Options, cred *syscall.Credential) *exec.Cmd {
	tb.Helper()
	js, err := json.Marshal(wireOptions{o.User, o.Dirs, o.Legacy, o.Home, o.EtcDir, o.NoChown, o.Command, o.DryRun})
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), childEnv+"="+string(js), "HOME=/root", "USER=root", "LOGNAME=root")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd
}

func runChild(tb testing.TB, cmd *exec.Cmd) (stdout, stderr string, code int) {
	tb.Helper()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		tb.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func owner(tb testing.TB, p string) string {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

const report = `echo pid=$$; echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); ` +
	`echo home=$HOME; echo user=$USER; echo logname=$LOGNAME; ` +
	`grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' /proc/$$/status | tr -d ' \t' | sed 's/:/=/'`

func parseReport(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestRunAsRootDropsCompletely(t *testing.T) {
	dockertest.Root(t)
	base := t.TempDir()
	existing := filepath.Join(base, "existing")
	os.MkdirAll(filepath.Join(existing, "sub"), 0o755)
	os.WriteFile(filepath.Join(existing, "sub", "f"), nil, 0o644)
	missing := filepath.Join(base, "a", "missing")
	o := Options{User: "node", Dirs: []string{existing, missing}, Legacy: "off", EtcDir: etcDir(t),
		Command: []string{"sh", "-c", report}}
	cmd := child(t, testBinary(t, "bootstrap.test", 0o755), o, nil)
	out, errOut, code := runChild(t, cmd)
	if code != 0 {
		t.Fatalf("exit code: got %d, want 0; stderr: %s", code, errOut)
	}
	got := parseReport(out)
	groups := strings.Fields(got["groups"])
	sort.Strings(groups) // the kernel sorts them
	got["groups"] = strings.Join(groups, " ")
	want := map[string]string{
		"pid": strconv.Itoa(cmd.Process.Pid),                   // exec replaced the child: same PID
		"uid": "1000", "gid": "1000", "groups": "1000 2000 29", // wheel (10, root's) must be gone
		"home": "/home/nodehome", "user": "node", "logname": "node",
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapAmb": "0000000000000000",
		"CapBnd": "0000000000000000", "NoNewPrivs": "1",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
	for _, p := range []string{existing, filepath.Join(existing, "sub", "f"), missing} {
		if got := owner(t, p); got != "1000:1000" {
			t.Errorf("owner of %s: got %s, want 1000:1000", p, got)
		}
	}
	if got := owner(t, filepath.Join(base, "a")); got != "0:0" {
		t.Errorf("owner of a created parent: got %s, want 0:0", got)
	}
}

func TestExitCodeAndSignalsAreTheApps(t *testing.T) {
	dockertest.Root(t)
	bin := testBinary(t, "bootstrap.test", 0o755)
	dir := t.TempDir()
	t.Run("exit code", func(t *testing.T) {
		o := Options{User: "node", Dirs: []string{dir}, Legacy: "off", EtcDir: etcDir(t), Command: []string{"sh", "-c", "exit 7"}}
		if _, errOut, code := runChild(t, child(t, bin, o, nil)); code != 7 {
			t.Errorf("got exit code %d, want 7; stderr: %s", code, errOut)
		}
	})
	for _, tc := range []struct {
		name, script string
		wantCode     int // -1: killed by SIGTERM
	}{
		{"default action", "echo ready; exec sleep 60", -1},
		{"app's handler", `trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done`, 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{User: "node", Dirs: []string{dir}, Legacy: "off", EtcDir: etcDir(t), Command: []string{"sh", "-c", tc.script}}
			cmd := child(t, bin, o, nil)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("got %q, want ready", line)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			go io.Copy(io.Discard, stdout)
			cmd.Wait()
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if tc.wantCode < 0 {
				if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
					t.Errorf("got %v, want killed by SIGTERM", cmd.ProcessState)
				}
			} else if ws.ExitStatus() != tc.wantCode {
				t.Errorf("got %v, want exit status %d", cmd.ProcessState, tc.wantCode)
			}
		})
	}
}

func TestRunAsNonRoot(t *testing.T) {
	dockertest.Root(t) // to make the directories and start the child as uid 1000
	bin := testBinary(t, "bootstrap.test", 0o755)
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o755) // t.TempDir's parent is 0700
	os.Chmod(base, 0o755)
	rootOwned := filepath.Join(base, "root-owned")
	os.Mkdir(rootOwned, 0o755)
	mine := filepath.Join(base, "mine")
	os.Mkdir(mine, 0o755)
	os.WriteFile(filepath.Join(mine, "root-file"), nil, 0o644)
	os.Chown(mine, 1000, 1000)
	cred := &syscall.Credential{Uid: 1000, Gid: 1000}

	t.Run("not writable", func(t *testing.T) {
		o := Options{Dirs: []string{mine, rootOwned}, Legacy: "off", EtcDir: etcDir(t), Command: []string{"sh", "-c", "echo ran"}}
		out, errOut, code := runChild(t, child(t, bin, o, cred))
		if code == 0 || strings.Contains(out, "ran") {
			t.Fatalf("got exit code %d and stdout %q, want a failure before the command", code, out)
		}
		for _, want := range []string{"sentinel: " + perms.ErrNotWritable.Error(), strconv.Quote(rootOwned) + " (owner 0:0, mode 0755) is not writable"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr: got %q, want it to contain %q", errOut, want)
			}
		}
	})
	t.Run("missing under a root-owned dir", func(t *testing.T) {
		o := Options{Dirs: []string{filepath.Join(rootOwned, "x", "y")}, Legacy: "off", EtcDir: etcDir(t), Command: []string{"true"}}
		_, errOut, code := runChild(t, child(t, bin, o, cred))
		if want := strconv.Quote(filepath.Join(rootOwned, "x", "y")) + " is missing and cannot be created: " + strconv.Quote(rootOwned) + " (owner 0:0"; code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("got exit code %d, stderr %q; want a failure naming %q", code, errOut, want)
		}
	})
	t.Run("writable", func(t *testing.T) {
		o := Options{Dirs: []string{mine}, Legacy: "off", EtcDir: etcDir(t), Command: []string{"sh", "-c", "id -u"}}
		out, errOut, code := runChild(t, child(t, bin, o, cred))
		if code != 0 || strings.TrimSpace(out) != "1000" {
			t.Fatalf("got exit code %d, stdout %q, stderr %q; want 0 and 1000", code, out, errOut)
		}
		if got := owner(t, filepath.Join(mine, "root-file")); got != "0:0" {
			t.Errorf("owner of a root file after a non-root start: got %s, want 0:0 (no chown)", got)
		}
	})
}

func TestRefusals(t *testing.T) {
	dockertest.Root(t)
	dir := t.TempDir()
	escape := escapeShape(t)
	for _, tc := range []struct {
		name, binMode string
		o             Options
		want          error
	}{
		{"setuid binary", "4755", Options{User: "node"}, ErrSetID},
		{"setgid binary", "2755", Options{User: "node"}, ErrSetID},
		{"root user", "0755", Options{User: "root"}, ErrRootUser},
		{"uid 0", "0755", Options{User: "0:1000"}, ErrRootUser},
		{"unknown user", "0755", Options{User: "nobody-here"}, ErrUnknownUser},
		{"command not found", "0755", Options{User: "node", Command: []string{"no-such-command-here"}}, ErrNotFound},
		{"command not executable", "0755", Options{User: "node", Command: []string{"/etc/passwd"}}, ErrNotExecutable},
		{"unknown preset", "0755", Options{User: "node", Legacy: "clawdbot"}, statemigrate.ErrUnknownPreset},
		// Issue 12: each refused before the first directory is made.
		{"uid out of range", "0755", Options{User: "4294967296"}, ErrIDRange},
		{"gid out of range", "0755", Options{User: "node:4294967296"}, ErrIDRange},
		// The host's real /etc and /usr: dry runs, so that code without the
		// refusal (say an older commit under test) cannot change them.
		{"system dir", "0755", Options{User: "node", Dirs: []string{"/etc"}, DryRun: true}, perms.ErrSystemDir},
		{"system dir through ..", "0755", Options{User: "node", Dirs: []string{"/home/node/../../usr"}, DryRun: true}, perms.ErrSystemDir},
		{"untrusted link behind a trusted one", "0755", Options{User: "node", Dirs: []string{filepath.Join(escape, "srv", "moltbot", "lib")}}, perms.ErrSymlink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode, _ := strconv.ParseUint(tc.binMode, 8, 32)
			bin := testBinary(t, "bootstrap-"+tc.binMode+".test", uint32(mode))
			o := tc.o
			state := filepath.Join(dir, "state")
			o.Dirs, o.EtcDir = append([]string{state}, tc.o.Dirs...), etcDir(t)
			if o.Legacy == "" {
				o.Legacy = "off"
			}
			if o.Command == nil {
				o.Command = []string{"sh", "-c", "echo ran"}
			}
			out, errOut, code := runChild(t, child(t, bin, o, nil))
			if code == 0 || strings.Contains(out, "ran") {
				t.Fatalf("got exit code %d, stdout %q; want a refusal", code, out)
			}
			if want := "sentinel: " + tc.want.Error(); !strings.Contains(errOut, want) {
				t.Errorf("stderr: got %q, want %q", errOut, want)
			}
			if _, err := os.Stat(state); err == nil {
				t.Errorf("%s was created: a refusal must change nothing", state)
			}
			if got := owner(t, filepath.Join(escape, "usr", "lib")); got != "0:0" {
				t.Errorf("owner of the escape's usr/lib: got %s, want 0:0", got)
			}
		})
	}
}

// escapeShape builds the shape of issue 12 under a root-only base: the image's
// root-owned link srv/moltbot -> home/node/.moltbot, and the app, which owns
// home/node, replaced .moltbot with a link to usr.
func escapeShape(tb testing.TB) string {
	tb.Helper()
	base := tb.TempDir()
	for _, d := range []string{"usr/lib", "srv", "home/node"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	os.Chown(filepath.Join(base, "home", "node"), 1000, 1000)
	for link, target := range map[string]string{"srv/moltbot": "home/node/.moltbot", "home/node/.moltbot": "usr"} {
		if err := os.Symlink(filepath.Join(base, target), filepath.Join(base, link)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Lchown(filepath.Join(base, "home", "node", ".moltbot"), 1000, 1000); err != nil {
		tb.Fatal(err)
	}
	return base
}

func TestTwoBootstrapsAtOnce(t *testing.T) {
	dockertest.Root(t)
	bin := testBinary(t, "bootstrap.test", 0o755)
	dir := t.TempDir()
	for i := range 50 {
		d := filepath.Join(dir, fmt.Sprint(i))
		os.Mkdir(d, 0o755)
		for j := range 40 {
			os.WriteFile(filepath.Join(d, fmt.Sprint(j)), nil, 0o644)
		}
	}
	var cmds []*exec.Cmd
	var outs [2]bytes.Buffer
	for i := range 2 {
		o := Options{User: "node", Dirs: []string{dir}, Legacy: "off", EtcDir: etcDir(t), Command: []string{"true"}}
		c := child(t, bin, o, nil)
		c.Stderr = &outs[i]
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("bootstrap %d: %v: %s", i, err, outs[i].String())
		}
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Sys().(*syscall.Stat_t).Uid != 1000 {
			t.Errorf("owner of %s: got uid %d, want 1000", p, fi.Sys().(*syscall.Stat_t).Uid)
		}
		return nil
	})
}

func TestDryRunChangesNothing(t *testing.T) {
	dockertest.Root(t)
	base := t.TempDir()
	dir := filepath.Join(base, "state")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	missing := filepath.Join(base, "missing")
	var events []Event
	err := Run(context.Background(), Options{User: "node", Dirs: []string{dir, missing}, EtcDir: etcDir(t),
		Command: []string{"true"}, DryRun: true, Progress: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := owner(t, dir); got != "0:0" {
		t.Errorf("owner after a dry run: got %s, want 0:0", got)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("%s created by a dry run", missing)
	}
	if len(events) != 2 || events[0].Stats.Changed != 2 || events[1].Kind != EventWarning {
		t.Errorf("events: got %+v, want 2 changes in %s and a warning for %s", events, dir, missing)
	}
	if os.Geteuid() != 0 {
		t.Errorf("a dry run dropped privileges")
	}
}
