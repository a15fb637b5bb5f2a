package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/bootstrap"
	"github.com/moltctl/moltctl/internal/perms"
)

// bootstrapOptions are bootstrap's flags; each has an environment variable,
// which the flag overrides.
type bootstrapOptions struct {
	user    string
	dirs    string
	legacy  string
	home    string
	etc     string
	noChown bool
	dryRun  bool
}

// bootstrapEnv maps flags to their environment variables.
var bootstrapEnv = map[string]string{
	"user":     "MOLTCTL_USER",
	"dirs":     "MOLTCTL_DIRS",
	"legacy":   "MOLTCTL_LEGACY",
	"home":     "MOLTCTL_HOME",
	"no-chown": "MOLTCTL_NO_CHOWN",
}

func newBootstrapCmd() *cobra.Command {
	o := &bootstrapOptions{}
	cmd := &cobra.Command{
		Use:   "bootstrap [flags] -- CMD [ARG...]",
		Short: "Image entrypoint: prepare state directories, drop root, exec CMD",
		Long: `bootstrap is an image's ENTRYPOINT. Started as root it creates the state directories,
gives them (and only the entries that need it) to the user, drops root completely and execs
CMD as that user, so CMD keeps the PID, gets the signals and sets the exit code. Started as
another user it changes no ownership, checks every state directory is writable and execs CMD.
In both cases it first migrates legacy state (--legacy) with the user's credentials.

Every flag has an environment variable (MOLTCTL_USER, MOLTCTL_DIRS, MOLTCTL_LEGACY,
MOLTCTL_HOME, MOLTCTL_NO_CHOWN); a flag given on the command line wins.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBootstrap(cmd, o, args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVar(&o.user, "user", bootstrap.DefaultUser, "user CMD runs as: name, uid, name:group or uid:gid (env MOLTCTL_USER)")
	f.StringVar(&o.dirs, "dirs", strings.Join(bootstrap.DefaultDirs, ":"), "state directories, colon-separated, absolute (env MOLTCTL_DIRS; empty: none)")
	f.StringVar(&o.legacy, "legacy", bootstrap.DefaultLegacy, `legacy state migration preset: moltbot, openclaw, or "off" (env MOLTCTL_LEGACY)`)
	f.StringVar(&o.home, "home", "", "home directory the legacy presets work in (env MOLTCTL_HOME; default the user's home)")
	f.BoolVar(&o.noChown, "no-chown", false, "as root, create the directories but leave ownership alone (env MOLTCTL_NO_CHOWN=1)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check and print the ownership changes that would be made; change nothing, do not run CMD")
	f.StringVar(&o.etc, "etc", bootstrap.DefaultEtcDir, "directory holding the passwd and group files")
	f.MarkHidden("etc")
	return cmd
}

func runBootstrap(cmd *cobra.Command, o *bootstrapOptions, args []string) error {
	for name, key := range bootstrapEnv {
		fl := cmd.Flags().Lookup(name)
		if fl.Changed {
			continue
		}
		if v, set := os.LookupEnv(key); set {
			if err := fl.Value.Set(v); err != nil {
				// The parse error would quote the value: name the key only.
				return fmt.Errorf("bootstrap: invalid %s: want a %s", key, fl.Value.Type())
			}
		}
	}
	var dirs []string
	for _, d := range strings.Split(o.dirs, ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if dirs == nil {
		dirs = []string{}
	}
	stderr := cmd.ErrOrStderr()
	err := bootstrap.Run(cmd.Context(), bootstrap.Options{
		User: o.user, Dirs: dirs, Legacy: o.legacy, Home: o.home, EtcDir: o.etc, NoChown: o.noChown, DryRun: o.dryRun,
		Command: args,
		Progress: func(e bootstrap.Event) {
			switch e.Kind {
			case bootstrap.EventWarning:
				fmt.Fprintf(stderr, "moltctl bootstrap: %s\n", e.Message)
			case bootstrap.EventOwnership:
				verb := "changed"
				if o.dryRun {
					verb = "would change"
				}
				if e.Stats.Changed > 0 || o.dryRun {
					fmt.Fprintf(stderr, "moltctl bootstrap: %s: %s the owner of %d of %d entries\n", e.Dir, verb, e.Stats.Changed, e.Stats.Entries)
				}
				if e.Stats.SkippedTotal > 0 {
					s := e.Stats.Skipped[0]
					fmt.Fprintf(stderr, "moltctl bootstrap: %s: left %d entries alone, e.g. %s (%s)\n", e.Dir, e.Stats.SkippedTotal, s.Path, s.Reason)
				}
			}
		},
	})
	switch {
	case errors.Is(err, perms.ErrNotWritable):
		return fmt.Errorf("bootstrap: running as uid %d: %w; fix: start the container as root (bootstrap then fixes ownership and drops to %s), or run `moltctl migrate` on the host", os.Geteuid(), err, o.user)
	case errors.Is(err, bootstrap.ErrNotFound):
		return &exitCodeError{code: 127, err: fmt.Errorf("bootstrap: %w", err)}
	case errors.Is(err, bootstrap.ErrNotExecutable):
		return &exitCodeError{code: 126, err: fmt.Errorf("bootstrap: %w", err)}
	case err != nil:
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}
