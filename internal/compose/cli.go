package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// ErrNoCLI: no usable docker compose v2+ CLI is installed (none, or only v1).
var ErrNoCLI = errors.New("docker compose v2+ is required")

// CLI is the installed docker compose v2+ CLI bound to one project's global
// flags (Project.Args) and environment (Options.CLIEnv).
type CLI struct {
	argv    []string // e.g. ["docker", "compose"] or ["docker-compose"]
	global  []string
	env     []string
	version string
}

// CLI returns the docker compose CLI for the project ("docker compose", else a
// "docker-compose" v2+ binary), found on the first call and kept. Errors wrap
// ErrNoCLI when none is installed or only v1 is, ErrStdin when a compose file
// is standard input (the CLI would read it again).
func (p *Project) CLI(ctx context.Context) (*CLI, error) {
	if err := p.CheckRereadable(); err != nil {
		return nil, err
	}
	if p.found == nil {
		return nil, errors.New("the compose project was not loaded (compose.Load)")
	}
	p.found.mu.Lock()
	defer p.found.mu.Unlock()
	if p.found.cli == nil {
		c, err := findCLI(ctx, p.Options.CLIEnv)
		if err != nil {
			return nil, err
		}
		p.found.cli = c
	}
	c := *p.found.cli
	c.global = p.Args()
	return &c, nil
}

// findCLI locates the docker compose CLI and checks its version.
func findCLI(ctx context.Context, env []string) (*CLI, error) {
	var seen []string
	for _, argv := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		c := &CLI{argv: argv, env: env}
		out, err := c.raw(ctx, "version", "--short")
		if err != nil {
			continue
		}
		v := strings.TrimPrefix(strings.TrimSpace(out), "v")
		major, _, _ := strings.Cut(v, ".")
		if n, err := strconv.Atoi(major); err == nil && n < 2 {
			seen = append(seen, strings.Join(argv, " ")+" "+v)
			continue
		}
		c.version = v
		return c, nil
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("only docker compose v1 is installed (%s): %w", strings.Join(seen, ", "), ErrNoCLI)
	}
	return nil, fmt.Errorf("no docker compose CLI found (tried \"docker compose\" and \"docker-compose\"): %w", ErrNoCLI)
}

// Version is the CLI's version, without a leading "v".
func (c *CLI) Version() string { return c.version }

func (c *CLI) raw(ctx context.Context, args ...string) (string, error) {
	all := append(append([]string{}, c.argv[1:]...), args...)
	cmd := exec.CommandContext(ctx, c.argv[0], all...)
	cmd.Env = append(os.Environ(), c.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
		if msg == "" {
			return stdout.String(), err
		}
		return stdout.String(), fmt.Errorf("%w: %s", err, msg)
	}
	return stdout.String() + stderr.String(), nil
}

// Run runs a compose subcommand on the project and returns its output; the
// error names the subcommand and ends with compose's last line on stderr.
func (c *CLI) Run(ctx context.Context, args ...string) (string, error) {
	out, err := c.raw(ctx, append(append([]string{}, c.global...), args...)...)
	if err != nil {
		return out, fmt.Errorf("docker compose %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// Create makes compose create the service's container exactly as it wants it,
// without starting it, pulling, building or touching other services.
func (c *CLI) Create(ctx context.Context, service string) error {
	_, err := c.Run(ctx, "up", "--no-start", "--no-deps", "--force-recreate", "--pull", "never", "--no-build", service)
	return err
}

// DryRunUp runs `docker compose --dry-run up -d` (never pulling or building)
// for the services (empty: all) and returns, per container name, the verbs
// compose printed for it (Recreate, Creating, Starting, Running…). noDeps
// leaves out what the services depend on.
func (c *CLI) DryRunUp(ctx context.Context, noDeps bool, services ...string) (map[string]map[string]bool, error) {
	args := []string{"--dry-run", "up", "-d"}
	if noDeps {
		args = append(args, "--no-deps")
	}
	args = append(append(args, "--pull", "never", "--no-build"), services...)
	out, err := c.raw(ctx, append(append([]string{}, c.global...), args...)...)
	if err != nil {
		return nil, fmt.Errorf("docker compose --dry-run up: %w", err)
	}
	res := map[string]map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// "DRY-RUN MODE -  Container p-web-1  Recreate"
		for i := 0; i+2 < len(f); i++ {
			if f[i] == "Container" {
				if res[f[i+1]] == nil {
					res[f[i+1]] = map[string]bool{}
				}
				res[f[i+1]][f[i+2]] = true
			}
		}
	}
	return res, nil
}

// WouldRecreate asks compose (DryRunUp, without dependencies) which of the
// services' containers a plain `docker compose up -d` would recreate now, and
// returns their names.
func (c *CLI) WouldRecreate(ctx context.Context, services ...string) (map[string]bool, error) {
	verbs, err := c.DryRunUp(ctx, true, services...)
	if err != nil {
		return nil, err
	}
	res := map[string]bool{}
	for name, vs := range verbs {
		for v := range vs {
			if strings.HasPrefix(v, "Recreat") {
				res[name] = true
			}
		}
	}
	return res, nil
}
