// Package dockertest gives tests a real Docker Engine, the real docker compose CLI and
// locally built test images. With CI=true a missing engine or compose CLI fails the
// test; elsewhere it skips it, saying why.
package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/engine"
)

// BusyboxImage is the tag of the shell test image: FROM scratch, a static busybox as
// /bin/sh and friends, and /etc/passwd, /etc/group with root and node (1000:1000).
const BusyboxImage = "moltctl-test/busybox:1"

// CI reports whether the tests run in CI (CI=true), where nothing may be skipped.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable fails the test when CI is set and skips it otherwise.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if CI() {
		tb.Fatalf("CI=true and "+format, args...)
	}
	tb.Skipf(format+" (run scripts/setup)", args...)
}

// Engine returns a client for the engine the environment selects, or fails/skips
// the test (see Unavailable) when none answers.
func Engine(tb testing.TB) *client.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := engine.Connect(ctx, engine.Options{})
	if err != nil {
		Unavailable(tb, "no Docker Engine: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Compose checks that the docker compose v2+ CLI is installed, or fails/skips the test.
func Compose(tb testing.TB) {
	tb.Helper()
	out, err := exec.Command("docker", "compose", "version", "--short").CombinedOutput()
	if err != nil {
		Unavailable(tb, "no docker compose CLI: %v: %s", err, bytes.TrimSpace(out))
	}
	if strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), "1.") {
		Unavailable(tb, "docker compose is v1 (%s), need v2+", bytes.TrimSpace(out))
	}
}

// Docker runs the docker CLI and returns its trimmed standard output; it fails the
// test when the command fails.
func Docker(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := Run("docker", args...)
	if err != nil {
		tb.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Run runs a command and returns its trimmed standard output; the error carries stderr.
func Run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &runError{err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return strings.TrimSpace(stdout.String()), nil
}

type runError struct {
	err    error
	stderr string
}

func (e *runError) Error() string { return e.err.Error() + ": " + e.stderr }
func (e *runError) Unwrap() error { return e.err }

var buildMu sync.Mutex

// Busybox makes sure BusyboxImage exists, building it from the host's static
// /bin/busybox when it does not, and returns its tag.
func Busybox(tb testing.TB) string {
	tb.Helper()
	Engine(tb)
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := Run("docker", "image", "inspect", BusyboxImage); err == nil {
		return BusyboxImage
	}
	dir := tb.TempDir()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		Unavailable(tb, "no static /bin/busybox to build %s: %v", BusyboxImage, err)
	}
	files := map[string]string{
		"busybox": string(bb),
		"passwd":  "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"group":   "root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n",
		"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\n" +
			"RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n" +
			"COPY passwd group /etc/\nRUN mkdir -p /tmp /home/node && chmod 1777 /tmp && chown 1000:1000 /home/node\n" +
			"ENV PATH=/bin\nCMD [\"sh\"]\n",
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if name == "busybox" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			tb.Fatal(err)
		}
	}
	if out, err := Run("docker", "build", "-q", "-t", BusyboxImage, dir); err != nil {
		tb.Fatalf("building %s: %v %s", BusyboxImage, err, out)
	}
	return BusyboxImage
}

// Name returns a unique lower-case name with the given prefix, for projects,
// volumes and containers that tests create.
func Name(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Project writes compose.yaml with content into a new temporary directory, and
// registers a cleanup that runs `docker compose down -v` on the project name.
// It returns the directory.
func Project(tb testing.TB, name, content string) string {
	tb.Helper()
	Compose(tb)
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		Run("docker", "compose", "-p", name, "--project-directory", dir, "-f", filepath.Join(dir, "compose.yaml"),
			"down", "-v", "--remove-orphans", "--timeout", "0")
	})
	return dir
}

// Root makes sure the test runs as root (tests make real mounts and chown): it fails
// the test when CI=true and skips it elsewhere.
func Root(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "not running as root")
	}
}
