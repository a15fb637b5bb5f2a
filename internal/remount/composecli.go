package remount

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/compose"
)

// composeCLI is the installed docker compose v2+ CLI: the command to run, and the
// project's global flags.
type composeCLI struct {
	argv    []string // e.g. ["docker", "compose"] or ["docker-compose"]
	global  []string
	env     []string
	version string
}

// findCompose locates the docker compose CLI ("docker compose", else a
// "docker-compose" v2+ binary) and checks its version. It returns an error
// wrapping ErrCompose when none is installed or only v1 is.
func findCompose(ctx context.Context, p *types.Project, opts compose.Options, env []string) (*composeCLI, error) {
	var seen []string
	for _, argv := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		c := &composeCLI{argv: argv, env: env}
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
		c.global = compose.Args(p, opts)
		return c, nil
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("only docker compose v1 is installed (%s): %w; install the docker compose v2+ plugin", strings.Join(seen, ", "), ErrCompose)
	}
	return nil, fmt.Errorf("no docker compose CLI found (tried \"docker compose\" and \"docker-compose\"): %w", ErrCompose)
}

func (c *composeCLI) raw(ctx context.Context, args ...string) (string, error) {
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

// run runs a compose subcommand on the project.
func (c *composeCLI) run(ctx context.Context, args ...string) (string, error) {
	out, err := c.raw(ctx, append(append([]string{}, c.global...), args...)...)
	if err != nil {
		return out, fmt.Errorf("docker compose %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// createService makes compose create the service's container exactly as it wants
// it, without starting it, pulling, building or touching other services.
func (c *composeCLI) createService(ctx context.Context, service string) error {
	_, err := c.run(ctx, "up", "--no-start", "--no-deps", "--force-recreate", "--pull", "never", "--no-build", service)
	return err
}

// wouldRecreate asks compose (--dry-run up) which of the services' containers a
// plain `docker compose up -d` would recreate now, and returns their names.
func (c *composeCLI) wouldRecreate(ctx context.Context, services ...string) (map[string]bool, error) {
	args := append([]string{"--dry-run", "up", "-d", "--no-deps", "--pull", "never", "--no-build"}, services...)
	out, err := c.raw(ctx, append(append([]string{}, c.global...), args...)...)
	if err != nil {
		return nil, fmt.Errorf("docker compose --dry-run up: %w", err)
	}
	res := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// "DRY-RUN MODE -  Container p-web-1  Recreate"
		for i := 0; i+2 < len(f); i++ {
			if f[i] == "Container" && strings.HasPrefix(f[i+2], "Recreat") {
				res[f[i+1]] = true
			}
		}
	}
	return res, nil
}

// Compose is the docker compose v2+ CLI bound to a project's global flags.
type Compose struct{ c *composeCLI }

// FindCompose locates the docker compose CLI ("docker compose", else a
// "docker-compose" v2+ binary) for project p, with env added to its
// environment. Errors wrap ErrCompose when none is installed or only v1 is.
func FindCompose(ctx context.Context, p *types.Project, opts compose.Options, env []string) (*Compose, error) {
	c, err := findCompose(ctx, p, opts, env)
	if err != nil {
		return nil, err
	}
	return &Compose{c}, nil
}

// Version is the CLI's version, without a leading "v".
func (c *Compose) Version() string { return c.c.version }

// Run runs a compose subcommand on the project; the error ends with compose's
// last line on stderr.
func (c *Compose) Run(ctx context.Context, args ...string) error {
	_, err := c.c.run(ctx, args...)
	return err
}
