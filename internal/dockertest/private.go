package dockertest

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PrivateEngine is a dockerd of a test's own, which the test may kill: its
// own data root, exec root (and containerd), socket, pid file and a bridge it
// creates, iptables and ip-masq off, live-restore on (see
// /work/shared/notes/engine29.md "Traps": never --bridge=none, never without
// live-restore, or a second daemon can delete the shared daemon's docker0).
type PrivateEngine struct {
	Dir, DataRoot, Socket string
	bridge                string
	config                string
	cmd                   *exec.Cmd
	done                  chan struct{}
}

// NewPrivateEngine starts a private dockerd and points DOCKER_HOST at it for
// the rest of the test (tb.Setenv: not in parallel tests). Its cleanup removes
// its containers, stops it and removes everything it made.
func NewPrivateEngine(t *testing.T) *PrivateEngine {
	t.Helper()
	Root(t)
	if _, err := exec.LookPath("dockerd"); err != nil {
		Unavailable(t, "no dockerd to start a private engine: %v", err)
	}
	dir, err := os.MkdirTemp("", "mtd-")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	e := &PrivateEngine{Dir: dir, DataRoot: filepath.Join(dir, "root"), Socket: filepath.Join(dir, "d.sock"),
		bridge: fmt.Sprintf("mtb%x", b), config: filepath.Join(dir, "daemon.json")}
	// Addresses away from docker0 (172.17/16) and the default pools (172.17–31, 192.168).
	bridgeNet := fmt.Sprintf("10.%d.%d.1/24", 100+int(b[0])%50, b[1])
	pool := fmt.Sprintf("10.%d.0.0/16", 150+int(b[2])%50)
	hadDocker0 := linkExists("docker0")
	t.Cleanup(func() { e.remove(t, hadDocker0) })
	for _, args := range [][]string{{"link", "add", e.bridge, "type", "bridge"}, {"addr", "add", bridgeNet, "dev", e.bridge}, {"link", "set", e.bridge, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	cfg := map[string]any{
		"bridge": e.bridge, "iptables": false, "ip-masq": false, "live-restore": true,
		"default-address-pools": []map[string]any{{"base": pool, "size": 24}},
		"data-root":             e.DataRoot, "exec-root": filepath.Join(dir, "exec"), "pidfile": filepath.Join(dir, "d.pid"),
		"hosts": []string{"unix://" + e.Socket},
	}
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(e.config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	e.Start(t)
	t.Setenv("DOCKER_HOST", "unix://"+e.Socket)
	return e
}

// Start starts the daemon (again, after Kill) and waits until it answers; a
// containerd that does not come up in time (a loaded machine) is retried.
func (e *PrivateEngine) Start(tb testing.TB) {
	tb.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		os.Remove(filepath.Join(e.Dir, "d.pid"))
		log, err := os.OpenFile(filepath.Join(e.Dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			tb.Fatal(err)
		}
		e.cmd = exec.Command("dockerd", "--config-file", e.config)
		e.cmd.Stdout, e.cmd.Stderr = log, log
		e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := e.cmd.Start(); err != nil {
			log.Close()
			tb.Fatalf("starting dockerd: %v", err)
		}
		e.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); log.Close(); close(done) }(e.cmd, e.done)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-e.done:
				deadline = time.Time{} // exited: try again
				continue
			default:
			}
			if c, err := net.Dial("unix", e.Socket); err == nil {
				c.Close()
				if out, err := exec.Command("docker", "-H", "unix://"+e.Socket, "info", "-f", "{{.ServerVersion}}").Output(); err == nil && len(out) > 0 {
					return
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		e.Kill(tb)
	}
	b, _ := os.ReadFile(filepath.Join(e.Dir, "dockerd.log"))
	tb.Fatalf("the private dockerd did not start; its log ends:\n%s", tail(string(b), 2000))
}

// Kill kills the daemon with SIGKILL (its containerd dies with it) and waits
// until it is gone: an engine death at that very moment.
func (e *PrivateEngine) Kill(tb testing.TB) {
	tb.Helper()
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	e.cmd.Process.Kill()
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		tb.Fatalf("dockerd %d did not die", e.cmd.Process.Pid)
	}
	// containerd of this engine, when it outlived the daemon (found by its own socket).
	for _, pid := range e.pids() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Crash kills the daemon and every container it runs with SIGKILL, as a
// host crash or an engine restart without live-restore leaves them: after
// Start the containers are exited.
func (e *PrivateEngine) Crash(tb testing.TB) {
	tb.Helper()
	out, err := exec.Command("docker", "-H", "unix://"+e.Socket, "ps", "-q").Output()
	if err != nil {
		tb.Fatalf("listing the private engine's containers: %v", err)
	}
	var pids []int
	for _, id := range strings.Fields(string(out)) {
		b, err := exec.Command("docker", "-H", "unix://"+e.Socket, "inspect", "-f", "{{.State.Pid}}", id).Output()
		var pid int
		if _, serr := fmt.Sscanf(string(b), "%d", &pid); err == nil && serr == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	e.Kill(tb)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// pids are the processes whose command line names this engine's directory.
func (e *PrivateEngine) pids() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), e.Dir+"/") && strings.Contains(string(b), "containerd") {
			out = append(out, pid)
		}
	}
	return out
}

// remove stops the daemon (its containers first: live-restore leaves them
// running otherwise), unmounts what it left, removes its directory and bridge,
// and checks that docker0 is still there.
func (e *PrivateEngine) remove(tb testing.TB, hadDocker0 bool) {
	if e.cmd != nil && e.cmd.ProcessState == nil {
		if out, err := exec.Command("docker", "-H", "unix://"+e.Socket, "ps", "-aq").Output(); err == nil {
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				exec.Command("docker", append([]string{"-H", "unix://" + e.Socket, "rm", "-f"}, ids...)...).Run()
			}
		}
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(30 * time.Second):
			e.cmd.Process.Kill()
			<-e.done
		}
	}
	for _, pid := range e.pids() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range mountsUnder(e.Dir) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	os.RemoveAll(e.Dir)
	exec.Command("ip", "link", "del", e.bridge).Run()
	if hadDocker0 && !linkExists("docker0") {
		tb.Errorf("docker0 vanished while the private engine ran")
	}
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			out = append(out, fields[1])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
