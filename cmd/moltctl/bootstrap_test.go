package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/moltctl/moltctl/internal/dockertest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBootstrapFlagsWinOverEnvAndBadInput(t *testing.T) {
	dockertest.Root(t)
	base := t.TempDir()
	fromEnv, fromFlag := filepath.Join(base, "env"), filepath.Join(base, "flag")
	t.Setenv("MOLTCTL_DIRS", fromEnv)
	t.Setenv("MOLTCTL_LEGACY", "off")
	t.Setenv("MOLTCTL_USER", "1000:1000")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"env", []string{"bootstrap", "--dry-run", "--", "true"}, 0, strconv.Quote(fromEnv) + ": missing, would be created"},
		{"flag wins", []string{"bootstrap", "--dry-run", "--dirs", fromFlag, "--", "true"}, 0, strconv.Quote(fromFlag) + ": missing, would be created"},
		{"command not found", []string{"bootstrap", "--", "no-such-command-here"}, 127, `moltctl: bootstrap: "no-such-command-here" (looked up on PATH): command not found`},
		// A dry run: the host's real /usr must stay safe from code without the refusal.
		{"system dir", []string{"bootstrap", "--dry-run", "--dirs", "/home/node/../../usr", "--", "true"}, 1, `moltctl: bootstrap: state directory "/home/node/../../usr": refusing a system directory; fix: list only`},
		{"uid out of range", []string{"bootstrap", "--user", "4294967296", "--dirs", fromFlag, "--", "true"}, 1, "uid 4294967296 out of range (0 to 2147483647)"},
		{"gid out of range", []string{"bootstrap", "--user", "1000:4294967296", "--dirs", fromFlag, "--", "true"}, 1, "gid 4294967296 out of range (0 to 2147483647)"},
		{"unknown preset", []string{"bootstrap", "--legacy", "clawdbot", "--", "true"}, 1, "unknown legacy preset"},
		{"bad env value", []string{"bootstrap", "--", "true"}, 1, "invalid MOLTCTL_NO_CHOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bad env value" {
				t.Setenv("MOLTCTL_NO_CHOWN", "maybe")
			}
			var stdout, stderr bytes.Buffer
			code := execute(context.Background(), tc.args, &stdout, &stderr)
			out := stderr.String()
			if code != tc.wantCode || !strings.Contains(out, tc.want) {
				t.Errorf("got exit code %d, stderr %q; want %d and %q", code, out, tc.wantCode, tc.want)
			}
			if strings.Contains(out, "maybe") {
				t.Errorf("stderr %q shows an environment value", out)
			}
			for _, d := range []string{fromEnv, fromFlag} {
				if _, err := os.Stat(d); err == nil {
					t.Errorf("%s created: got a change, want none", d)
				}
			}
		})
	}
}

// TestMain runs moltctl's command line instead of the tests when the process
// is a child a test started: from MOLTCTL_TEST_BOOTSTRAP_ARGS
// (TestBootstrapNotWritableMessage, TestBootstrapSIGTERMExits143), or as the
// docker CLI plugin when installed as docker-moltctl (TestDockerCLIPlugin).
func TestMain(m *testing.M) {
	if args := os.Getenv("MOLTCTL_TEST_BOOTSTRAP_ARGS"); args != "" {
		os.Exit(runMain(append([]string{"moltctl"}, strings.Split(args, "\x1f")...)))
	}
	if isPlugin(os.Args[0]) {
		os.Exit(runMain(os.Args))
	}
	os.Exit(m.Run())
}

// worldReadableTest copies this test binary into a directory any user may
// enter and returns it with a fresh, world-searchable temporary directory:
// bootstrap's child drops to uid 1000 and must still run and reach both.
func worldReadableTest(tb testing.TB) (exe, base string) {
	tb.Helper()
	bin, err := os.MkdirTemp("", "moltctl-bootstrap-test")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(bin) })
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		tb.Fatal(err)
	}
	exe = filepath.Join(bin, "moltctl.test")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		tb.Fatal(err)
	}
	os.Chmod(bin, 0o755)
	base = tb.TempDir()
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o755)
	return exe, base
}

func TestBootstrapNotWritableMessage(t *testing.T) {
	dockertest.Root(t)
	exe, base := worldReadableTest(t)
	dir := filepath.Join(base, "state")
	os.Mkdir(dir, 0o755)

	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "MOLTCTL_TEST_BOOTSTRAP_ARGS="+strings.Join([]string{"bootstrap", "--dirs", dir, "--legacy", "off", "--", "sh", "-c", "echo ran"}, "\x1f"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("got %v, want exit code 1; stderr %q", err, stderr.String())
	}
	if strings.Contains(stdout.String(), "ran") {
		t.Error("the command ran")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("stderr: got %d lines %q, want one", len(lines), lines)
	}
	for _, want := range []string{"running as uid 1000", strconv.Quote(dir) + " (owner 0:0, mode 0755) is not writable", "start the container as root", "moltctl migrate"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("message %q: want it to contain %q", lines[0], want)
		}
	}
}

// TestBootstrapSIGTERMExits143 stops bootstrap with SIGTERM before CMD starts
// (here while the legacy migration waits for its lock, which the test holds):
// exit 143 as for a process killed by SIGTERM, one line, CMD not run.
func TestBootstrapSIGTERMExits143(t *testing.T) {
	dockertest.Root(t)
	exe, base := worldReadableTest(t)
	home := filepath.Join(base, "home")
	os.MkdirAll(filepath.Join(home, ".clawdbot"), 0o755)
	os.Chown(home, 1000, 1000)
	os.Chown(filepath.Join(home, ".clawdbot"), 1000, 1000)
	lock, err := os.OpenFile(filepath.Join(home, "..moltbot.moltctl-lock"), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "MOLTCTL_TEST_BOOTSTRAP_ARGS="+strings.Join([]string{"bootstrap", "--user", "1000:1000",
		"--dirs", filepath.Join(base, "state"), "--home", home, "--legacy", "moltbot", "--", "sh", "-c", "echo ran"}, "\x1f"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the drop (the migration runs as the user), then for the lock wait.
	for i := 0; i < 500; i++ {
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if strings.Contains(string(status), "\nUid:\t1000\t") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("got %v, want exit code 143; stderr %q, stdout %q", err, stderr.String(), stdout.String())
	}
	if strings.Contains(stdout.String(), "ran") {
		t.Error("the command ran")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "moltctl: bootstrap: stopped by SIGTERM before CMD started") {
		t.Errorf("stderr: got %q, want it to end with one line saying it was stopped by SIGTERM", lines)
	}
}
