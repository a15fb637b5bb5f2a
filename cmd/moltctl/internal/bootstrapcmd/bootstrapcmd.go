// Package bootstrapcmd is the `moltctl bootstrap` command line, shared by
// moltctl and by the gateway image's entrypoint build (cmd/moltctl/entrypoint),
// which links nothing else: no compose, no engine client, and so none of their
// package initialisation on every container start.
package bootstrapcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/bootstrap"
	"github.com/moltctl/moltctl/internal/perms"
)

// ExitError makes the program exit with Code instead of 1.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// options are bootstrap's flags; each has an environment variable, which the
// flag overrides.
type options struct {
	user    string
	dirs    string
	legacy  string
	home    string
	etc     string
	noChown bool
	dryRun  bool
}

// envKeys maps flags to their environment variables.
var envKeys = map[string]string{
	"user":     "MOLTCTL_USER",
	"dirs":     "MOLTCTL_DIRS",
	"legacy":   "MOLTCTL_LEGACY",
	"home":     "MOLTCTL_HOME",
	"no-chown": "MOLTCTL_NO_CHOWN",
}

// New returns the bootstrap command.
func New() *cobra.Command {
	o := &options{}
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
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return o.fromEnv(cmd)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd.ErrOrStderr(), args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVar(&o.user, "user", bootstrap.DefaultUser, "user CMD runs as: name, uid, name:group or uid:gid, ids 0 to 2147483647; with :group that group alone (env MOLTCTL_USER)")
	f.StringVar(&o.dirs, "dirs", strings.Join(bootstrap.DefaultDirs, ":"), "state directories, colon-separated, absolute, not system directories (env MOLTCTL_DIRS; empty: none)")
	f.StringVar(&o.legacy, "legacy", bootstrap.DefaultLegacy, `legacy state migration preset: moltbot, openclaw, or "off" (env MOLTCTL_LEGACY)`)
	f.StringVar(&o.home, "home", "", "home directory the legacy presets work in (env MOLTCTL_HOME; default the user's home)")
	f.BoolVar(&o.noChown, "no-chown", false, "as root, create the directories but leave ownership alone (env MOLTCTL_NO_CHOWN=1)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check and print the ownership changes that would be made; change nothing, do not run CMD")
	f.StringVar(&o.etc, "etc", bootstrap.DefaultEtcDir, "directory holding the passwd and group files")
	f.MarkHidden("etc")
	return cmd
}

// fromEnv sets every flag not given on the command line from its variable.
func (o *options) fromEnv(cmd *cobra.Command) error {
	for name, key := range envKeys {
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
	return nil
}

// signalError is the cause of the run's context when a signal stopped it.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "stopped by " + unix.SignalName(e.sig) }

func (o *options) run(parent context.Context, stderr io.Writer, args []string) error {
	var dirs []string
	for _, d := range strings.Split(o.dirs, ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if dirs == nil {
		dirs = []string{}
	}
	// SIGTERM or SIGINT before CMD started: exit as a process killed by it
	// would (128+n), as CMD would have. Only this handler cancels the run, so
	// the cause is always the signal.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			cancel(signalError{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	err := bootstrap.Run(ctx, bootstrap.Options{
		User: o.user, Dirs: dirs, Legacy: o.legacy, Home: o.home, EtcDir: o.etc, NoChown: o.noChown, DryRun: o.dryRun,
		Command:  args,
		Progress: func(e bootstrap.Event) { report(stderr, e, o.dryRun) },
	})
	var sig signalError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.As(context.Cause(ctx), &sig):
		return &ExitError{Code: 128 + int(sig.sig), Err: fmt.Errorf("bootstrap: %v before CMD started; nothing is half done (ownership not yet fixed is fixed by the next start)", sig)}
	case errors.Is(err, perms.ErrNotWritable) && errors.Is(err, unix.EROFS):
		return fmt.Errorf("bootstrap: running as uid %d: %w; fix: the file system is read-only: mount a writable volume at that directory (compose: volumes:), or list only writable directories in MOLTCTL_DIRS", os.Geteuid(), err)
	case errors.Is(err, perms.ErrNotWritable):
		return fmt.Errorf("bootstrap: running as uid %d: %w; fix: start the container as root (bootstrap then fixes ownership and drops to %s), or run `moltctl migrate` on the host", os.Geteuid(), err, o.user)
	case errors.Is(err, perms.ErrSystemDir):
		return fmt.Errorf("bootstrap: %w; fix: list only the app's own state directories in MOLTCTL_DIRS (e.g. /var/lib/moltbot)", err)
	case errors.Is(err, perms.ErrSymlink):
		return fmt.Errorf("bootstrap: %w; fix: point MOLTCTL_DIRS at the real directory; only links root owns in directories only root can write are followed", err)
	case errors.Is(err, bootstrap.ErrNotFound):
		return &ExitError{Code: 127, Err: fmt.Errorf("bootstrap: %w", err)}
	case errors.Is(err, bootstrap.ErrNotExecutable):
		return &ExitError{Code: 126, Err: fmt.Errorf("bootstrap: %w", err)}
	}
	return fmt.Errorf("bootstrap: %w", err)
}

// report prints one event: a line per directory where something changed,
// and a line per reason entries were left alone, with what to do about it.
func report(w io.Writer, e bootstrap.Event, dryRun bool) {
	switch e.Kind {
	case bootstrap.EventWarning:
		fmt.Fprintf(w, "moltctl bootstrap: %s\n", e.Message)
	case bootstrap.EventOwnership:
		verb := "changed"
		if dryRun {
			verb = "would change"
		}
		if e.Stats.Changed > 0 || dryRun {
			fmt.Fprintf(w, "moltctl bootstrap: %s: %s the owner of %d of %s\n", Quote(e.Dir), verb, e.Stats.Changed, plural(e.Stats.Entries, "entry", "entries"))
		}
		reportSkips(w, e.Dir, e.Stats)
	}
}

func reportSkips(w io.Writer, dir string, st perms.Stats) {
	if st.SkippedTotal == 0 {
		return
	}
	count := map[perms.SkipReason]int{}
	first := map[perms.SkipReason]string{}
	var order []perms.SkipReason
	for _, s := range st.Skipped {
		if count[s.Reason] == 0 {
			order = append(order, s.Reason)
			first[s.Reason] = s.Path
		}
		count[s.Reason]++
	}
	for _, r := range order {
		what := plural(int64(count[r]), "entry", "entries")
		if int64(len(st.Skipped)) < st.SkippedTotal {
			what = "at least " + what
		}
		fmt.Fprintf(w, "moltctl bootstrap: %s: left %s alone (%s), e.g. %s%s\n", Quote(dir), what, r, Quote(first[r]), hint(r))
	}
}

func hint(r perms.SkipReason) string {
	switch r {
	case perms.SkipMount:
		return "; to have a mount's ownership fixed too, list it in MOLTCTL_DIRS"
	case perms.SkipHardlink:
		return "; chown it by hand if the app needs it (it has other names, maybe outside)"
	case perms.SkipChanged:
		return "; the next start fixes it"
	}
	return ""
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Quote quotes a path for a message (so no file name can forge a line),
// shortening one longer than 300 bytes in the middle.
func Quote(p string) string {
	if len(p) > 300 {
		return fmt.Sprintf("%q…%q (%d bytes)", p[:120], p[len(p)-120:], len(p))
	}
	return fmt.Sprintf("%q", p)
}
