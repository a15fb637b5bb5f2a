package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
)

func TestPluginArgs(t *testing.T) {
	t.Setenv("DOCKER_CERT_PATH", "")
	t.Setenv("DOCKER_CONFIG", "/home/u/.docker")
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantEnv []string // set with setenv, in order
		wantErr string
	}{
		{"metadata", []string{"docker-cli-plugin-metadata"}, []string{"docker-cli-plugin-metadata"}, nil, ""},
		{"plain", []string{"moltctl", "migrate", "--dry-run"}, []string{"migrate", "--dry-run"}, nil, ""},
		{"no command", []string{"moltctl"}, []string{}, nil, ""},
		{"host", []string{"-H", "tcp://h:2376", "moltctl", "status", "-H", "x"}, []string{"--host=tcp://h:2376", "status", "-H", "x"}, nil, ""},
		{"host joined", []string{"--host=unix:///s.sock", "moltctl", "status"}, []string{"--host=unix:///s.sock", "status"}, nil, ""},
		{"context", []string{"-c", "remote", "moltctl", "remount", "app"}, []string{"--context=remote", "remount", "app"}, nil, ""},
		{"config, debug and log level dropped", []string{"--config", "/cfg", "-D", "-l", "warn", "moltctl", "version"}, []string{"version"}, []string{"DOCKER_CONFIG=/cfg"}, ""},
		{"help", []string{"help", "moltctl", "migrate"}, []string{"help", "migrate"}, nil, ""},
		{"completion", []string{"__complete", "moltctl", "mig"}, []string{"__complete", "mig"}, nil, ""},
		{"plugin flags stay the plugin's", []string{"moltctl", "migrate", "--", "-H"}, []string{"migrate", "--", "-H"}, nil, ""},
		{"tlsverify with files", []string{"--tlsverify", "--tlscacert", "/certs/ca.pem", "--tlscert", "/certs/cert.pem", "--tlskey=/certs/key.pem", "-H", "tcp://h:2376", "moltctl", "status"},
			[]string{"--host=tcp://h:2376", "status"}, []string{"DOCKER_CERT_PATH=/certs", "DOCKER_TLS_VERIFY=1"}, ""},
		{"tlsverify, default files", []string{"--tlsverify", "moltctl", "status"}, []string{"status"}, []string{"DOCKER_CERT_PATH=/home/u/.docker", "DOCKER_TLS_VERIFY=1"}, ""},
		{"tls, --config leaves the default files", []string{"--tls", "--config", "/cfg", "moltctl", "status"}, []string{"status"}, []string{"DOCKER_CERT_PATH=/home/u/.docker", "DOCKER_CONFIG=/cfg"}, ""},
		{"tls files in two directories", []string{"--tlsverify", "--tlscacert", "/ca/ca.pem", "--tlscert", "/certs/cert.pem", "--tlskey", "/certs/key.pem", "moltctl", "status"}, nil, nil, `--tlscert "/certs/cert.pem": moltctl reads the TLS files as ca.pem, cert.pem and key.pem of one directory`},
		{"tls file named otherwise", []string{"--tlsverify", "--tlscacert", "/c/my-ca.pem", "moltctl", "status"}, nil, nil, `--tlscacert "/c/my-ca.pem"`},
		{"two hosts", []string{"-H", "unix:///a", "-H", "unix:///b", "moltctl", "status"}, nil, nil, "give at most one engine endpoint"},
		{"host and context", []string{"-H", "unix:///a", "-c", "x", "moltctl", "status"}, nil, nil, "give one of them"},
		{"unknown docker flag", []string{"--bogus", "moltctl", "status"}, nil, nil, "the docker CLI's flags: unknown flag: --bogus"},
		{"run by hand", []string{"migrate", "--dry-run"}, nil, nil, `run it as docker moltctl COMMAND`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var env []string
			got, err := pluginArgs(tc.args, func(k, v string) error { env = append(env, k+"="+v); return nil })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				if len(env) > 0 {
					t.Errorf("environment set: got %q, want nothing on an error", env)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if !slices.Equal(env, tc.wantEnv) {
				t.Errorf("environment set: got %q, want %q", env, tc.wantEnv)
			}
		})
	}
}

// TestDockerCLIPlugin installs this test binary (TestMain runs moltctl when it
// is called docker-moltctl) into a temporary docker config's cli-plugins
// directory and runs it through the real docker CLI: the metadata the CLI
// lists, global flags, contexts and --config reaching moltctl's engine lookup.
func TestDockerCLIPlugin(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		dockertest.Unavailable(t, "no docker CLI: %v", err)
	}
	cfg := t.TempDir()
	if err := os.Mkdir(filepath.Join(cfg, "cli-plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(cfg, "cli-plugins", "docker-moltctl")
	if err := os.WriteFile(plugin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	// A second configuration, for --config: the plugin, and a current context
	// the first one does not have.
	cfg2 := t.TempDir()
	if err := os.Mkdir(filepath.Join(cfg2, "cli-plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg2, "cli-plugins", "docker-moltctl"), self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--config", cfg, "context", "create", "h13ctx", "--docker", "host=unix:///nonexistent-h13-context.sock"},
		{"--config", cfg2, "context", "create", "h13current", "--docker", "host=unix:///nonexistent-h13-current.sock"},
		{"--config", cfg2, "context", "use", "h13current"},
	} {
		dockertest.Docker(t, args...)
	}
	project := t.TempDir()
	compose := "name: " + dockertest.Name("moltctl-plugin-") + "\nservices:\n  app:\n    image: " + dockertest.BusyboxImage + "\n    volumes: [data:/data]\nvolumes:\n  data: {}\n"
	if err := os.WriteFile(filepath.Join(project, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	// docker runs the docker CLI in the project with DOCKER_CONFIG=cfg;
	// DOCKER_HOST and DOCKER_CONTEXT are kept only with keepHost.
	docker := func(t *testing.T, keepHost bool, env []string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command("docker", args...)
		cmd.Dir = project
		for _, e := range os.Environ() {
			k, _, _ := strings.Cut(e, "=")
			if k == "DOCKER_CONFIG" || (!keepHost && (k == "DOCKER_HOST" || k == "DOCKER_CONTEXT")) {
				continue
			}
			cmd.Env = append(cmd.Env, e)
		}
		cmd.Env = append(cmd.Env, "DOCKER_CONFIG="+cfg)
		cmd.Env = append(cmd.Env, env...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("docker %q: %v", args, err)
		}
		return o.String(), e.String(), code
	}

	t.Run("metadata", func(t *testing.T) {
		out, err := exec.Command(plugin, "docker-cli-plugin-metadata").Output()
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]string
		if err := json.Unmarshal(out, &md); err != nil {
			t.Fatalf("metadata %q: %v", out, err)
		}
		for k, want := range map[string]string{"SchemaVersion": "0.1.0", "Vendor": "moltctl", "URL": "https://github.com/moltctl/moltctl"} {
			if md[k] != want {
				t.Errorf("metadata %s: got %q, want %q", k, md[k], want)
			}
		}
		if md["Version"] == "" || md["ShortDescription"] == "" {
			t.Errorf("metadata %q: want a Version and a ShortDescription", out)
		}
		// The docker CLI lists only plugins whose metadata it accepts.
		stdout, stderr, code := docker(t, false, nil, "--help")
		if code != 0 || !strings.Contains(stdout, "moltctl*") || !strings.Contains(stdout, md["ShortDescription"]) {
			t.Errorf("docker --help: got exit code %d, stdout %q, stderr %q; want moltctl listed as a plugin", code, stdout, stderr)
		}
	})

	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"version", nil, []string{"moltctl", "version"}, 0, "moltctl ", ""},
		{"help", nil, []string{"help", "moltctl"}, 0, "remount", ""},
		{"subcommand help", nil, []string{"moltctl", "migrate", "--help"}, 0, "--dry-run", ""},
		{"completion", nil, []string{"__complete", "moltctl", "mig"}, 0, "migrate\t", ""},
		{"host flag", nil, []string{"-H", "unix:///nonexistent-h13-host.sock", "moltctl", "status"}, 1, "", "unix:///nonexistent-h13-host.sock"},
		{"context flag", nil, []string{"--context", "h13ctx", "moltctl", "status"}, 1, "", "unix:///nonexistent-h13-context.sock"},
		{"DOCKER_CONTEXT", []string{"DOCKER_CONTEXT=h13ctx"}, []string{"moltctl", "status"}, 1, "", "unix:///nonexistent-h13-context.sock"},
		{"DOCKER_HOST", []string{"DOCKER_HOST=unix:///nonexistent-h13-env.sock"}, []string{"moltctl", "status"}, 1, "", "unix:///nonexistent-h13-env.sock"},
		{"config flag", nil, []string{"--config", cfg2, "-D", "-l", "error", "moltctl", "status"}, 1, "", "unix:///nonexistent-h13-current.sock"},
		{"tlsverify flag", nil, []string{"--tlsverify", "-H", "tcp://127.0.0.1:9", "moltctl", "status"}, 1, "", "DOCKER_CERT_PATH=" + cfg},
		{"unknown command", nil, []string{"moltctl", "nope"}, 1, "", `moltctl: unknown command "nope"`},
		{"bad flag under --dry-run", nil, []string{"moltctl", "migrate", "--dry-run", "--verify", "bogus"}, 1, "", `--verify "bogus": want delta or full`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := docker(t, false, tc.env, tc.args...)
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantOut) || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("docker %q: got exit code %d, stdout %q, stderr %q; want %d, stdout with %q, stderr with %q",
					tc.args, code, stdout, stderr, tc.wantCode, tc.wantOut, tc.wantErr)
			}
			if tc.wantCode != 0 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q: want one line", stderr)
			}
		})
	}
	// SIGTERM to the docker CLI (not a terminal): the CLI closes the plugin
	// socket and moltctl stops, here while it waits for an engine that accepts
	// the connection and never answers.
	t.Run("SIGTERM to the docker CLI", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "silent.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		cmd := exec.Command("docker", "-H", "unix://"+sock, "moltctl", "status")
		cmd.Dir, cmd.Env = project, append(os.Environ(), "DOCKER_CONFIG="+cfg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(stderr.String(), errCLIStopped.Error()) {
				t.Errorf("got %v, stderr %q; want a failure saying %q", err, stderr.String(), errCLIStopped)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Signal(syscall.SIGTERM) // at the third, the docker CLI kills the plugin
			cmd.Process.Signal(syscall.SIGTERM)
			<-done
			t.Errorf("docker moltctl still ran 10 s after the docker CLI got SIGTERM; stderr %q", stderr.String())
		}
	})
	// The TLS flags reach the engine client: a TLS proxy in front of the
	// engine that requires a client certificate signed by its CA.
	t.Run("TLS engine", func(t *testing.T) {
		eng := dockertest.Engine(t)
		dockertest.Busybox(t)
		engineSock, ok := strings.CutPrefix(eng.DaemonHost(), "unix://")
		if !ok {
			t.Fatalf("engine at %s: want a unix socket to put the TLS proxy in front of", eng.DaemonHost())
		}
		certs := t.TempDir()
		addr := tlsProxy(t, certs, engineSock)
		stdout, stderr, code := docker(t, false, nil, "--tlsverify", "--tlscacert", filepath.Join(certs, "ca.pem"), "--tlscert", filepath.Join(certs, "cert.pem"),
			"--tlskey", filepath.Join(certs, "key.pem"), "-H", "tcp://"+addr, "moltctl", "migrate", "--dry-run")
		if code != 0 || !strings.Contains(stdout, "Nothing to convert.") {
			t.Errorf("docker --tlsverify ... moltctl migrate --dry-run: got exit code %d, stdout %q, stderr %q; want 0 and the plan", code, stdout, stderr)
		}
		// Without the client certificate the proxy refuses: the flags were what made it work.
		_, stderr, code = docker(t, false, nil, "-H", "tcp://"+addr, "moltctl", "status")
		if code != 1 || !strings.Contains(stderr, "connecting to the Docker Engine at tcp://"+addr) {
			t.Errorf("without the TLS flags: got exit code %d, stderr %q; want 1 and the engine at %s unreachable", code, stderr, addr)
		}
	})
	t.Run("engine", func(t *testing.T) {
		dockertest.Engine(t)
		dockertest.Busybox(t)
		stdout, stderr, code := docker(t, true, nil, "moltctl", "migrate", "--dry-run")
		if code != 0 || !strings.Contains(stdout, "Nothing to convert.") {
			t.Errorf("docker moltctl migrate --dry-run: got exit code %d, stdout %q, stderr %q; want 0 and the plan", code, stdout, stderr)
		}
	})
}

// tlsProxy writes ca.pem, cert.pem and key.pem (a client certificate) into dir
// and serves TLS on a local port, requiring a client certificate of that CA,
// each connection passed on to the unix socket target. It returns the address.
func tlsProxy(tb testing.TB, dir, target string) string {
	tb.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moltctl test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	serverCert, serverKey := issue(2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := issue(3, x509.ExtKeyUsageClientAuth)
	for name, b := range map[string][]byte{"ca.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), "cert.pem": clientCert, "key.pem": clientKey} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() != nil {
					return // no client certificate, or not TLS
				}
				e, err := net.Dial("unix", target)
				if err != nil {
					return
				}
				defer e.Close()
				go func() { io.Copy(e, c); e.Close() }()
				io.Copy(c, e)
			}()
		}
	}()
	return l.Addr().String()
}
