package engine

// ssh://[user@]host[:port] endpoints, as the docker CLI reaches them: each
// connection is `ssh ... -- docker system dial-stdio` on the host, so the
// engine's socket stays private to it and ssh's own configuration (keys,
// ~/.ssh/config, known hosts) applies.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
)

// sshHost is the placeholder host of the HTTP requests sent through ssh.
const sshHost = "http://docker.example.com"

// sshOpts returns the client options for an ssh:// endpoint, or nil for
// another one.
func sshOpts(host string) ([]client.Opt, error) {
	if !strings.HasPrefix(host, "ssh://") {
		return nil, nil
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("engine endpoint %q: %w", host, err)
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("engine endpoint %q: want ssh://[user@]host[:port]", host)
	}
	args := []string{"-o", "ConnectTimeout=30", "-T"}
	if u.User != nil && u.User.Username() != "" {
		args = append(args, "-l", u.User.Username())
	}
	if p := u.Port(); p != "" {
		args = append(args, "-p", p)
	}
	args = append(args, "--", u.Hostname(), "docker", "system", "dial-stdio")
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialCommand("ssh", args...)
	}
	return []client.Opt{client.WithHost(sshHost), client.WithDialContext(dial)}, nil
}

// cmdConn is a connection over a command's stdin and stdout.
type cmdConn struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	stderr *limitedWriter
	once   sync.Once
}

// dialCommand starts name with args (never bound to a request's context: the
// connection outlives the request that opened it).
func dialCommand(name string, args ...string) (net.Conn, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	c := &cmdConn{cmd: cmd, stderr: &limitedWriter{n: 4096}}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if c.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return c, nil
}

func (c *cmdConn) Read(p []byte) (int, error) {
	n, err := c.stdout.Read(p)
	if errors.Is(err, io.EOF) {
		if msg := c.stderr.String(); msg != "" {
			return n, fmt.Errorf("%w: %s", io.ErrUnexpectedEOF, msg)
		}
	}
	return n, err
}

func (c *cmdConn) Write(p []byte) (int, error) { return c.stdin.Write(p) }

// CloseWrite ends the command's input (a half-close, as for a hijacked attach).
func (c *cmdConn) CloseWrite() error { return c.stdin.Close() }

func (c *cmdConn) Close() error {
	c.once.Do(func() {
		c.stdin.Close()
		c.cmd.Process.Kill()
		c.cmd.Wait()
	})
	return nil
}

func (c *cmdConn) LocalAddr() net.Addr                { return cmdAddr{} }
func (c *cmdConn) RemoteAddr() net.Addr               { return cmdAddr{} }
func (c *cmdConn) SetDeadline(t time.Time) error      { return nil }
func (c *cmdConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *cmdConn) SetWriteDeadline(t time.Time) error { return nil }

type cmdAddr struct{}

func (cmdAddr) Network() string { return "cmd" }
func (cmdAddr) String() string  { return "cmd" }

// limitedWriter keeps the first n bytes written.
type limitedWriter struct {
	mu sync.Mutex
	b  strings.Builder
	n  int
}

func (w *limitedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(w.b.String())
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
