package main

import (
	"bytes"
	"errors"
	"github.com/moltctl/moltctl/internal/dockertest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// captureStderr runs f with os.Stderr sent to a pipe and returns what was written.
func captureStderr(tb testing.TB, f func()) string {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(r)
		done <- b.String()
	}()
	f()
	os.Stderr = old
	w.Close()
	return <-done
}

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
		{"env", []string{"bootstrap", "--dry-run", "--", "true"}, 0, fromEnv + ": missing, would be created"},
		{"flag wins", []string{"bootstrap", "--dry-run", "--dirs", fromFlag, "--", "true"}, 0, fromFlag + ": missing, would be created"},
		{"command not found", []string{"bootstrap", "--", "no-such-command-here"}, 127, "moltctl: bootstrap: no-such-command-here (looked up on PATH): command not found"},
		{"unknown preset", []string{"bootstrap", "--legacy", "clawdbot", "--", "true"}, 1, "unknown legacy preset"},
		{"bad env value", []string{"bootstrap", "--", "true"}, 1, "invalid MOLTCTL_NO_CHOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bad env value" {
				t.Setenv("MOLTCTL_NO_CHOWN", "maybe")
			}
			var code int
			out := captureStderr(t, func() { code = execute(tc.args) })
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

// TestBootstrapChild is the child of TestBootstrapNotWritableMessage: it runs
// moltctl's command line from MOLTCTL_TEST_BOOTSTRAP_ARGS.
func TestBootstrapChild(t *testing.T) {
	args := os.Getenv("MOLTCTL_TEST_BOOTSTRAP_ARGS")
	if args == "" {
		return // only a child of TestBootstrapNotWritableMessage does something
	}
	os.Exit(execute(strings.Split(args, "\x1f")))
}

func TestBootstrapNotWritableMessage(t *testing.T) {
	dockertest.Root(t)
	bin, err := os.MkdirTemp("", "moltctl-bootstrap-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(bin, "moltctl.test")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(bin, 0o755)
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o755)
	dir := filepath.Join(base, "state")
	os.Mkdir(dir, 0o755)

	cmd := exec.Command(exe, "-test.run=^TestBootstrapChild$")
	cmd.Env = append(os.Environ(), "MOLTCTL_TEST_BOOTSTRAP_ARGS="+strings.Join([]string{"bootstrap", "--dirs", dir, "--legacy", "off", "--", "sh", "-c", "echo ran"}, "\x1f"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
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
	for _, want := range []string{"running as uid 1000", dir + " (owner 0:0, mode 0755) is not writable", "start the container as root", "moltctl migrate"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("message %q: want it to contain %q", lines[0], want)
		}
	}
}
