package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/volumes"
)

// TestRemoteEngine plans and migrates a project whose bind sources the
// client can't see: moltctl runs in a mount namespace of its own with a
// tmpfs over the project's data directory, and reaches the engine over TCP
// on loopback (through a proxy that counts the bytes both ways) and over SSH
// to localhost (a private sshd). The plan must convert the same directories
// with the same owners, sizes and exclusions as on the engine's host, the
// bytes crossing the connection must not grow with the data, and a real
// migration through TCP must convert and verify.
func TestRemoteEngine(t *testing.T) {
	dockertest.Root(t)
	dockertest.Compose(t)
	eng := dockertest.Engine(t)
	image := dockertest.Busybox(t)
	for _, tool := range []string{"unshare", "ssh", "ssh-keygen", "/usr/sbin/sshd"} {
		if _, err := exec.LookPath(tool); err != nil {
			dockertest.Unavailable(t, "%s is needed (scripts/setup installs it): %v", tool, err)
		}
	}
	bin := staticMoltctl(t)
	// The helper image is there before the counted runs, so they neither
	// import nor remove it: what crosses is the API's, not the image's.
	ctx := context.Background()
	if _, err := volumes.EnsureHelper(ctx, eng, volumes.HelperOptions{Binary: bin}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { volumes.RemoveHelper(context.Background(), eng, volumes.HelperOptions{Binary: bin}) })

	name := dockertest.Name("remote")
	dir := dockertest.Project(t, name, fmt.Sprintf(`services:
  app:
    image: %[1]s
    command: ["sleep", "3600"]
    volumes:
      - ./data/state:/state
      - ./data/state/workspace:/state/workspace
      - ./data/cache:/cache
  later:
    image: %[1]s
    profiles: [later]
    volumes:
      - ./data/missing:/missing
`, image))
	t.Cleanup(func() {
		for _, v := range []string{"state", "workspace", "cache"} {
			dockertest.Run("docker", "volume", "rm", "-f", name+"_"+v)
		}
	})
	data := filepath.Join(dir, "data")
	for _, d := range []string{"state/workspace", "cache"} {
		must(t, os.MkdirAll(filepath.Join(data, d), 0o755))
	}
	must(t, os.Chown(filepath.Join(data, "state"), 1234, 1234))
	must(t, os.WriteFile(filepath.Join(data, "state", "small"), bytes.Repeat([]byte("s"), 1<<20), 0o644))
	must(t, os.WriteFile(filepath.Join(data, "state", "workspace", "notes"), []byte("notes\n"), 0o644))
	compose := []string{"-p", name, "-f", filepath.Join(dir, "compose.yaml")}
	planArgs := append(append([]string{}, compose...), "migrate", "--dry-run", "--json")

	start := time.Now()
	local := planOf(t, runMoltctl(t, bin, nil, "", planArgs...))
	t.Logf("dry-run on the engine's host (unix socket): %v", time.Since(start))
	if len(local.Conversions) != 3 {
		t.Fatalf("got local plan %+v, want state, workspace and cache converted", local)
	}

	proxy := newCountingProxy(t)
	tcp := []string{"DOCKER_HOST=tcp://" + proxy.addr}
	sshEnv := sshToLocalhost(t)

	// The client can't see the sources: through either connection the plan is the same.
	start = time.Now()
	remote := planOf(t, runMoltctl(t, bin, tcp, data, planArgs...))
	t.Logf("dry-run through TCP, sources hidden: %v", time.Since(start))
	sameConversions(t, "tcp", remote, local)
	start = time.Now()
	viaSSH := planOf(t, runMoltctl(t, bin, sshEnv, data, planArgs...))
	t.Logf("dry-run through SSH, sources hidden: %v", time.Since(start))
	sameConversions(t, "ssh", viaSSH, local)

	// The bytes crossing the connection do not grow with the data.
	proxy.reset()
	planOf(t, runMoltctl(t, bin, tcp, data, planArgs...))
	small := proxy.total()
	must(t, os.WriteFile(filepath.Join(data, "state", "large"), bytes.Repeat([]byte("l"), 63<<20), 0o644))
	proxy.reset()
	large := planOf(t, runMoltctl(t, bin, tcp, data, planArgs...))
	big := proxy.total()
	t.Logf("dry-run through the proxy: %d bytes with 1 MiB of data, %d bytes with 64 MiB", small, big)
	if large.Bytes < 64<<20 {
		t.Errorf("got %d bytes planned, want the 64 MiB measured", large.Bytes)
	}
	if d := big - small; d > 4<<10 || d < -4<<10 || small > 256<<10 {
		t.Errorf("got %d bytes crossing with 1 MiB of data and %d with 64 MiB, want under 256 KiB each, within 4 KiB of each other", small, big)
	}
	must(t, os.Remove(filepath.Join(data, "state", "large")))

	// A real migration through TCP, the sources hidden from the client.
	dockertest.Docker(t, append(append([]string{"compose"}, compose...), "up", "-d")...)
	proxy.reset()
	out := runMoltctl(t, bin, append(tcp, "MOLTCTL_STATE_DIR="+t.TempDir()), data,
		append(append([]string{}, compose...), "migrate", "--yes", "--json", "--wait-timeout", "5s")...)
	t.Logf("migrate --yes through the proxy: %d bytes", proxy.total())
	var rep struct {
		Volumes []struct{ Name, Source, Owner string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Volumes) != 3 {
		t.Fatalf("got report %s (%v), want three volumes", out, err)
	}
	got := dockertest.Docker(t, "run", "--rm", "-v", name+"_state:/v", image, "sh", "-c",
		"stat -c %u:%g /v; wc -c </v/small; ls /v/workspace | wc -l")
	if f := strings.Fields(got); len(f) != 3 || f[0] != "1234:1234" || f[1] != "1048576" || f[2] != "0" {
		t.Errorf("got volume state %q, want owned 1234:1234, the 1 MiB file, workspace left empty", got)
	}
	if got := dockertest.Docker(t, "run", "--rm", "-v", name+"_workspace:/v", image, "cat", "/v/notes"); got != "notes" {
		t.Errorf("got workspace notes %q, want notes", got)
	}
}

// plan is the part of `migrate --dry-run --json` compared here.
type plan struct {
	Conversions []struct {
		Volume, Source, Owner string
		OwnerFrom             string `json:"owner_from"`
		Bytes, Files          int64
		Empty                 bool
		Exclude               []string
	}
	Kept         []struct{ Source, Reason string }
	Bytes        int64
	SourcesLocal bool `json:"sources_local"`
}

func planOf(tb testing.TB, out string) *plan {
	tb.Helper()
	var p plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		tb.Fatalf("got plan %q: %v", out, err)
	}
	return &p
}

func sameConversions(tb testing.TB, via string, got, want *plan) {
	tb.Helper()
	g, _ := json.Marshal(got.Conversions)
	w, _ := json.Marshal(want.Conversions)
	if !bytes.Equal(g, w) || got.SourcesLocal {
		tb.Errorf("%s: got conversions %s (sources local: %v), want %s as planned on the engine's host", via, g, got.SourcesLocal, w)
	}
	if len(got.Kept) != 1 || got.Kept[0].Reason != "missing source" {
		tb.Errorf("%s: got kept %+v, want the missing source only", via, got.Kept)
	}
}

// runMoltctl runs bin with env added; with hide set, in a mount namespace of
// its own where a tmpfs hides that directory.
func runMoltctl(tb testing.TB, bin string, env []string, hide string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	if hide != "" {
		cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs -o size=1m none "$1" && [ -z "$(ls -A "$1")" ] && shift && exec "$@"`, "sh", hide, bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("moltctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// staticMoltctl builds moltctl (static, a version of its own so that its
// helper image is this test's alone).
func staticMoltctl(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "moltctl")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=remote-test-"+dockertest.Name("v"), "-o", p, "./cmd/moltctl")
	cmd.Dir = repoRoot(tb)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building moltctl: %v\n%s", err, out)
	}
	return p
}

// countingProxy forwards TCP connections on loopback to the engine's unix
// socket and counts the bytes both ways.
type countingProxy struct {
	addr  string
	bytes atomic.Int64
}

func newCountingProxy(tb testing.TB) *countingProxy {
	tb.Helper()
	sock := "/var/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		sock = h
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(tb, err)
	p := &countingProxy{addr: l.Addr().String()}
	var wg sync.WaitGroup
	tb.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("unix", sock)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				pipe := func(dst, src net.Conn) {
					n, _ := io.Copy(dst, src)
					p.bytes.Add(n)
					if cw, ok := dst.(interface{ CloseWrite() error }); ok {
						cw.CloseWrite()
					}
					done <- struct{}{}
				}
				go pipe(u, c)
				go pipe(c, u)
				<-done
				<-done
			}()
		}
	}()
	return p
}

func (p *countingProxy) reset() { p.bytes.Store(0) }

// total waits for the connections the last command left to close (the
// client's idle keep-alive ones close with the process) and returns the count.
func (p *countingProxy) total() int64 {
	time.Sleep(200 * time.Millisecond)
	return p.bytes.Load()
}

// sshToLocalhost starts a private sshd on a loopback port (its own host
// key, root's key authorised in a temporary directory) and returns the
// environment that makes moltctl and the docker CLI reach the engine
// through it: DOCKER_HOST=ssh://root@127.0.0.1:PORT and an ssh on PATH
// that reads this test's ssh configuration.
func sshToLocalhost(tb testing.TB) []string {
	tb.Helper()
	dir := tb.TempDir()
	os.Chmod(dir, 0o700)
	keygen := func(path string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
			tb.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	keygen(filepath.Join(dir, "host_key"))
	keygen(filepath.Join(dir, "id"))
	pub, err := os.ReadFile(filepath.Join(dir, "id.pub"))
	must(tb, err)
	must(tb, os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(tb, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	host := "unix:///var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		host = h
	}
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/host_key
PidFile %[2]s/sshd.pid
AuthorizedKeysFile %[2]s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv DOCKER_HOST=%s
`, port, dir, host)
	must(tb, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(conf), 0o600))
	must(tb, os.MkdirAll("/run/sshd", 0o755)) // sshd's privilege separation directory
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var log bytes.Buffer
	sshd.Stderr = &log
	must(tb, sshd.Start())
	tb.Cleanup(func() {
		sshd.Process.Kill()
		sshd.Wait()
		if tb.Failed() {
			tb.Logf("sshd log:\n%s", log.String())
		}
	})
	client := fmt.Sprintf(`Host 127.0.0.1
  IdentityFile %[1]s/id
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
`, dir)
	must(tb, os.WriteFile(filepath.Join(dir, "ssh_config"), []byte(client), 0o600))
	binDir := filepath.Join(dir, "bin")
	must(tb, os.Mkdir(binDir, 0o755))
	ssh, err := exec.LookPath("ssh")
	must(tb, err)
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s -F %s/ssh_config \"$@\"\n", ssh, dir)
	must(tb, os.WriteFile(filepath.Join(binDir, "ssh"), []byte(wrapper), 0o755))
	env := []string{"DOCKER_HOST=" + fmt.Sprintf("ssh://root@127.0.0.1:%d", port), "PATH=" + binDir + ":" + os.Getenv("PATH")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sshd did not listen: %v\n%s", err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return env
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
