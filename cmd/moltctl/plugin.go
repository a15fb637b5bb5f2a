package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The docker CLI plugin protocol (docker/cli's cli-plugins): a plugin is an
// executable docker-NAME in a cli-plugins directory (DOCKER_CONFIG/cli-plugins,
// ~/.docker/cli-plugins, /usr/local/lib/docker/cli-plugins, ...). The CLI asks
// it `docker-NAME docker-cli-plugin-metadata` for a JSON description, and runs
// `docker [GLOBAL FLAGS] NAME ARG...` as docker-NAME with all of its own
// arguments: the global flags, the plugin's name, then the plugin's arguments
// (`docker help NAME` as `help NAME`, shell completion as `__complete NAME
// ...`). The environment is passed through (DOCKER_HOST, DOCKER_CONTEXT,
// DOCKER_CONFIG) with DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND and
// DOCKER_CLI_PLUGIN_SOCKET added.
const (
	pluginName        = "moltctl"
	pluginMetadataArg = "docker-cli-plugin-metadata"
)

// pluginMetadata is the answer to docker-cli-plugin-metadata.
type pluginMetadata struct {
	SchemaVersion    string
	Vendor           string
	Version          string
	ShortDescription string
	URL              string
}

// isPlugin reports whether the program runs as the docker CLI plugin: it
// was started as docker-moltctl (the docker CLI starts plugins by their path).
func isPlugin(argv0 string) bool { return filepath.Base(argv0) == "docker-"+pluginName }

func newPluginMetadataCmd() *cobra.Command {
	return &cobra.Command{
		Use:    pluginMetadataArg,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(pluginMetadata{
				SchemaVersion:    "0.1.0",
				Vendor:           "moltctl",
				Version:          moltctlVersion(),
				ShortDescription: "Migrate, remount and bootstrap stateful Docker Compose deployments",
				URL:              "https://github.com/moltctl/moltctl",
			})
		},
	}
}

// executePlugin is execute for the docker CLI plugin: args are the docker
// CLI's, turned into moltctl's by pluginArgs.
func executePlugin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	args, err := pluginArgs(args, os.Setenv)
	if err != nil {
		fmt.Fprintf(stderr, "docker %s: %v\n", pluginName, err)
		return 1
	}
	ctx, cancel := pluginContext(ctx, os.Getenv(pluginSocketEnv))
	defer cancel(nil)
	return execute(ctx, args, stdout, stderr)
}

// pluginSocketEnv names the docker CLI's socket for its plugins. When the CLI
// gets SIGINT or SIGTERM and its output is not a terminal, it closes the
// socket's connections instead of forwarding the signal (on a terminal the
// signal reaches the plugin directly), and kills the plugin at the third.
const pluginSocketEnv = "DOCKER_CLI_PLUGIN_SOCKET"

// errCLIStopped is the cause of the plugin's context when the docker CLI
// closed the plugin socket.
var errCLIStopped = errors.New("the docker CLI was stopped (SIGINT or SIGTERM)")

// pluginContext returns ctx, also cancelled (cause errCLIStopped) when the
// docker CLI closes the plugin socket at addr ("" or an unreachable socket:
// ctx unchanged).
func pluginContext(ctx context.Context, addr string) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	if addr == "" {
		return ctx, cancel
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return ctx, cancel
	}
	go func() {
		defer conn.Close()
		io.Copy(io.Discard, conn) // returns at EOF: the CLI closed the socket
		cancel(errCLIStopped)
	}()
	return ctx, cancel
}

// pluginArgs turns the command line the docker CLI runs the plugin with into
// moltctl's: the docker CLI's global flags are parsed as the docker CLI
// defines them; -H and --context become moltctl's --host and --context,
// --config becomes DOCKER_CONFIG and the TLS flags DOCKER_CERT_PATH and
// DOCKER_TLS_VERIFY (set with setenv, so the engine client and the docker
// compose CLI moltctl runs read the same configuration); -D and -l only
// concern the docker CLI's own log and are dropped.
func pluginArgs(args []string, setenv func(key, value string) error) ([]string, error) {
	if len(args) > 0 && args[0] == pluginMetadataArg {
		return args, nil
	}
	fs := pflag.NewFlagSet("docker", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(false)
	config := fs.String("config", "", "")
	dockerContext := fs.StringP("context", "c", "", "")
	hosts := fs.StringArrayP("host", "H", nil, "")
	fs.BoolP("debug", "D", false, "")
	fs.StringP("log-level", "l", "", "")
	fs.Bool("tls", false, "")
	tlsVerify := fs.Bool("tlsverify", false, "")
	tlsFiles := map[string]*string{
		"tlscacert": fs.String("tlscacert", "", ""),
		"tlscert":   fs.String("tlscert", "", ""),
		"tlskey":    fs.String("tlskey", "", ""),
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("the docker CLI's flags: %w", err)
	}
	rest := fs.Args()
	switch {
	case len(rest) >= 2 && (rest[0] == "help" || rest[0] == cobra.ShellCompRequestCmd || rest[0] == cobra.ShellCompNoDescRequestCmd) && rest[1] == pluginName:
		// docker help moltctl ..., and the docker CLI's shell completion
		rest = append([]string{rest[0]}, rest[2:]...)
	case len(rest) >= 1 && rest[0] == pluginName:
		rest = rest[1:]
	default:
		return nil, fmt.Errorf("started as a docker CLI plugin without the docker CLI's command line (got %q): run it as docker %s COMMAND, or install the binary as %s to run it alone", args, pluginName, pluginName)
	}
	var out []string
	switch {
	case len(*hosts) > 1:
		return nil, fmt.Errorf("-H %q: give at most one engine endpoint", *hosts)
	case len(*hosts) == 1 && *dockerContext != "":
		return nil, errors.New("-H and --context: give one of them (the docker CLI refuses both too)")
	case len(*hosts) == 1:
		out = append(out, "--host="+(*hosts)[0])
	case *dockerContext != "":
		out = append(out, "--context="+*dockerContext)
	}
	env := map[string]string{}
	if *config != "" {
		env["DOCKER_CONFIG"] = *config
	}
	if fs.Changed("tls") || fs.Changed("tlsverify") {
		dir, err := pluginCertPath(fs, tlsFiles)
		if err != nil {
			return nil, err
		}
		env["DOCKER_CERT_PATH"] = dir
		if *tlsVerify {
			env["DOCKER_TLS_VERIFY"] = "1"
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if err := setenv(k, env[k]); err != nil {
			return nil, fmt.Errorf("setting %s: %w", k, err)
		}
	}
	return append(out, rest...), nil
}

// pluginCertPath is the directory of the docker CLI's TLS files: the engine
// client reads ca.pem, cert.pem and key.pem from one directory
// (DOCKER_CERT_PATH). Each flag's default is the docker CLI's: that file in
// DOCKER_CERT_PATH, else in DOCKER_CONFIG, else in ~/.docker (--config does
// not change them). Files that are not those three names in one directory
// are refused with one line.
func pluginCertPath(fs *pflag.FlagSet, files map[string]*string) (string, error) {
	def := os.Getenv("DOCKER_CERT_PATH")
	if def == "" {
		def = os.Getenv("DOCKER_CONFIG")
	}
	if def == "" {
		home, _ := os.UserHomeDir()
		def = filepath.Join(home, ".docker")
	}
	dir := ""
	for _, f := range []struct{ flag, base string }{{"tlscacert", "ca.pem"}, {"tlscert", "cert.pem"}, {"tlskey", "key.pem"}} {
		p := filepath.Join(def, f.base)
		if fs.Changed(f.flag) {
			p = filepath.Clean(*files[f.flag])
		}
		if dir == "" {
			dir = filepath.Dir(p)
		}
		if filepath.Base(p) != f.base || filepath.Dir(p) != dir {
			return "", fmt.Errorf("--%s %q: moltctl reads the TLS files as ca.pem, cert.pem and key.pem of one directory (DOCKER_CERT_PATH, default %q): give all three, with those names", f.flag, p, def)
		}
	}
	return dir, nil
}
