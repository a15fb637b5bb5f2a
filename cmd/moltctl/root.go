package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/engine"
)

// globalOptions are the flags every command shares, named as docker and docker compose name them.
type globalOptions struct {
	compose compose.Options
	engine  engine.Options
}

// connect loads the compose project the global flags select and connects to the
// engine they select. The caller closes the client.
func (g *globalOptions) connect(ctx context.Context) (*compose.Project, *client.Client, error) {
	project, err := g.project(ctx)
	if err != nil {
		return nil, nil, err
	}
	eng, err := engine.Connect(ctx, g.engine)
	if err != nil {
		return nil, nil, err
	}
	return project, eng, nil
}

// project loads, once per command, the compose project the global flags
// select; its docker compose CLI reaches the same engine as moltctl
// (DOCKER_HOST and DOCKER_CONTEXT from -H and --context).
func (g *globalOptions) project(ctx context.Context) (*compose.Project, error) {
	opts := g.compose
	opts.CLIEnv = nil
	if g.engine.Host != "" {
		opts.CLIEnv = append(opts.CLIEnv, "DOCKER_HOST="+g.engine.Host)
	}
	if g.engine.Context != "" {
		opts.CLIEnv = append(opts.CLIEnv, "DOCKER_CONTEXT="+g.engine.Context)
	}
	return compose.Load(ctx, opts)
}

// exitCodeError makes execute exit with code instead of 1.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "moltctl",
		Short: "Make Docker Compose deployments of stateful apps safe to migrate and reconfigure",
		Long: `moltctl moves bind-mounted state into named volumes owned by the right user (migrate),
gives a compose service new mounts, env and networks while keeping its container's
writable layer (remount), and is the entrypoint that makes first start safe (bootstrap).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringArrayVarP(&g.compose.Files, "file", "f", nil, "compose configuration files (default: COMPOSE_FILE, else compose.yaml/docker-compose.yml)")
	f.StringVarP(&g.compose.ProjectName, "project-name", "p", "", "project name (default: COMPOSE_PROJECT_NAME, else name: or the directory)")
	f.StringVar(&g.compose.ProjectDirectory, "project-directory", "", "alternate working directory (default: the first file's directory)")
	f.StringArrayVar(&g.compose.EnvFiles, "env-file", nil, "alternate environment files (default: .env)")
	f.StringArrayVar(&g.compose.Profiles, "profile", nil, "profiles to enable (default: COMPOSE_PROFILES)")
	f.StringVarP(&g.engine.Host, "host", "H", "", "Docker Engine endpoint (default: DOCKER_HOST, else the context's)")
	f.StringVarP(&g.engine.Context, "context", "c", "", "docker CLI context to use (default: DOCKER_CONTEXT, else the current context)")

	root.AddCommand(
		newVersionCmd(),
		newMigrateCmd(g),
		newRemountCmd(g),
		newStatusCmd(g),
		newUpCmd(g),
		newSnapshotCmd(g),
		newBootstrapCmd(),
		newCopyHelperCmd(),
		newPluginMetadataCmd(),
	)
	return root
}

// execute runs the command line args with ctx, output on stdout and errors
// as one line on stderr, and returns the process exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "moltctl: %v\n", composeAdvice(err))
		var ec *exitCodeError
		if errors.As(err, &ec) {
			return ec.code
		}
		return 1
	}
	return 0
}
