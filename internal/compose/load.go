// Package compose loads compose projects exactly as the docker compose CLI does
// (Load, once per run: Project), drives the installed docker compose CLI where
// moltctl must let compose act itself (Project.CLI), finds the containers compose
// made (ServiceContainers), and locates, rewrites and applies the compose files'
// declarations (Locate, Rewrite, Apply).
package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Options select a compose project the way docker compose's global flags do.
// Empty fields fall back to compose's own defaults and environment variables
// (COMPOSE_FILE, COMPOSE_PROJECT_NAME, COMPOSE_PROFILES, .env in the project directory).
type Options struct {
	// Files are the -f/--file compose files, in order. Empty: COMPOSE_FILE, else
	// compose.yaml / docker-compose.yml found from the working directory upwards.
	Files []string
	// ProjectName is -p/--project-name. Empty: COMPOSE_PROJECT_NAME, the top-level
	// name: of the file, else the project directory's base name.
	ProjectName string
	// ProjectDirectory is --project-directory. Empty: the directory of the first file.
	ProjectDirectory string
	// EnvFiles are the --env-file files. Empty: .env in the project directory.
	EnvFiles []string
	// Profiles are the --profile values. Empty: COMPOSE_PROFILES.
	Profiles []string
	// CLIEnv is extra environment for the docker compose CLI (DOCKER_HOST=… to
	// reach the same engine as the caller); loading does not read it.
	CLIEnv []string
}

// ErrStdin: the compose file is standard input ("-"), which a command that
// loads the project again, or runs the docker compose CLI on it, can't read twice.
var ErrStdin = errors.New("a compose file from standard input can't be read again")

// CheckRereadable returns an error wrapping ErrStdin when a compose file is "-".
func (o Options) CheckRereadable() error {
	for _, f := range o.Files {
		if f == "-" {
			return ErrStdin
		}
	}
	return nil
}

// Project is a compose project loaded once, with the options that selected it
// and, found on first use, the docker compose CLI bound to it. Its fields and
// methods are *types.Project's (Name, Services, …). Build it with Load.
type Project struct {
	*types.Project
	// Options are what selected and loaded the project.
	Options Options

	found *found // shared with the projects Reload returns
}

// found is the docker compose CLI once found (without a project's flags).
type found struct {
	mu  sync.Mutex
	cli *CLI
}

// Load loads and normalises the project with compose-go the way docker compose v2+
// does (same option order, same environment precedence), with every service of
// every active profile. It returns an error when no compose file is found or the
// files don't validate; the message is compose-go's own.
func Load(ctx context.Context, opts Options) (*Project, error) {
	po, err := projectOptions(opts)
	if err != nil {
		return nil, err
	}
	project, err := po.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the compose project: %w", err)
	}
	if project.Name == "" {
		return nil, fmt.Errorf("loading the compose project: %w", ErrNoName)
	}
	return &Project{Project: project, Options: opts, found: &found{}}, nil
}

// ErrNoName: no project name came from the options, the environment, the
// files' name: or the project directory.
var ErrNoName = errors.New("project name can't be empty")

// Reload loads the project again with the same options (after its files
// changed) and returns the new value, which shares p's compose CLI: it is
// looked for once for both.
func (p *Project) Reload(ctx context.Context) (*Project, error) {
	if err := p.CheckRereadable(); err != nil {
		return nil, err
	}
	np, err := Load(ctx, p.Options)
	if err != nil {
		return nil, err
	}
	np.found = p.found
	return np, nil
}

// CheckRereadable returns an error wrapping ErrStdin when a compose file is
// standard input: the project can't be loaded again nor given to the compose CLI.
func (p *Project) CheckRereadable() error { return p.Options.CheckRereadable() }

// projectOptions mirrors docker compose's own construction of cli.ProjectOptions
// (pkg/compose/loader.go), minus the remote (git, OCI) loaders.
func projectOptions(opts Options) (*cli.ProjectOptions, error) {
	fns := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(opts.ProjectDirectory),
		cli.WithOsEnv,
	}
	if _, ok := os.LookupEnv("PWD"); !ok {
		if pwd, err := os.Getwd(); err == nil {
			fns = append(fns, cli.WithEnv([]string{"PWD=" + pwd}))
		}
	}
	fns = append(fns,
		cli.WithEnvFiles(opts.EnvFiles...),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithEnvFiles(opts.EnvFiles...),
		cli.WithDotEnv,
		cli.WithDefaultProfiles(opts.Profiles...),
		cli.WithName(opts.ProjectName),
	)
	po, err := cli.NewProjectOptions(opts.Files, fns...)
	if err != nil {
		return nil, fmt.Errorf("loading the compose project: %w", err)
	}
	return po, nil
}

// Args returns the global flags that make the docker compose CLI select the
// same project as p: -p, every -f, --project-directory, --env-file and
// --profile. Use them in front of a compose subcommand.
func (p *Project) Args() []string {
	args := []string{"--project-name", p.Name}
	for _, f := range p.ComposeFiles {
		args = append(args, "--file", f)
	}
	args = append(args, "--project-directory", p.WorkingDir)
	for _, e := range p.Options.EnvFiles {
		args = append(args, "--env-file", e)
	}
	profiles := p.Options.Profiles
	if len(profiles) == 0 {
		if env := os.Getenv("COMPOSE_PROFILES"); env != "" {
			profiles = strings.Split(env, ",")
		}
	}
	for _, pr := range profiles {
		if pr = strings.TrimSpace(pr); pr != "" {
			args = append(args, "--profile", pr)
		}
	}
	return args
}
