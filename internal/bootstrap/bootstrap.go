// Package bootstrap is the image entrypoint's logic: it makes the state
// directories exist and belong to the app's user, drops root completely,
// migrates legacy state and replaces itself with the app (exec), so the app
// keeps moltctl's PID, gets the signals and decides the exit code.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/perms"
)

// Defaults.
const (
	DefaultUser   = "node"
	DefaultLegacy = "moltbot"
	DefaultEtcDir = "/etc"
	// DefaultPath is CMD's PATH when the environment has none (docker's default).
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// DefaultDirs are the state directories of the moltbot gateway image.
var DefaultDirs = []string{"/var/lib/moltbot", "/home/node/clawd"}

// Errors Run returns (wrapped); see also perms.ErrNotWritable and ErrUnknownUser.
var (
	// ErrSetID: moltctl's own binary is setuid or setgid, or runs with real and
	// effective ids that differ; bootstrap refuses to run (as gosu does).
	ErrSetID = errors.New("moltctl must not be setuid or setgid")
	// ErrRootUser: the configured user is root; bootstrap never runs CMD as root.
	ErrRootUser = errors.New("refusing to run the command as root")
	// ErrNotFound: CMD is not an executable file on PATH.
	ErrNotFound = errors.New("command not found")
	// ErrNotExecutable: CMD exists but may not be executed by the user.
	ErrNotExecutable = errors.New("command not executable")
)

// Options configure Run. The zero value of each field means its default.
type Options struct {
	User    string   // "name", "uid", "name:group" or "uid:gid"; default DefaultUser
	Dirs    []string // absolute state directories; nil means DefaultDirs, empty means none
	Legacy  string   // statemigrate preset name, or "off"; default DefaultLegacy
	Home    string   // home the legacy rules live under; default the user's (HOME when not root)
	EtcDir  string   // where passwd and group are read; default DefaultEtcDir
	NoChown bool     // as root, create the directories but leave ownership alone
	// DryRun checks everything and reports (Progress) the ownership changes
	// that would be made, then returns nil: nothing is created or changed, no
	// privilege dropped, no migration run, CMD not started.
	DryRun  bool
	Command []string // CMD and its arguments; required
	Env     []string // CMD's environment before HOME, USER and LOGNAME; default os.Environ()
	// Progress, when set, receives what happened before the exec: one event
	// per directory fixed and per warning.
	Progress func(Event)
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventOwnership: Dir's ownership was checked (and fixed); Stats says how.
	EventOwnership EventKind = iota + 1
	// EventWarning: Message is a warning (the legacy migration's, for one).
	EventWarning
)

// Event is one step's result, for the command to print.
type Event struct {
	Kind    EventKind
	Dir     string
	Stats   perms.Stats
	Message string
}

// Run prepares the state directories and execs opts.Command; it returns only
// on failure, before CMD started.
//
// Started as root: each directory is created (missing parents root-owned, mode
// 0755) and its ownership fixed with perms.Fix, then the legacy migration's
// existing directories; a directory root may not reach (no CAP_DAC_OVERRIDE) is
// left to the user, who creates and checks it after the drop (a warning says
// so). Privileges are dropped (bounding set cleared where permitted, setgroups
// to the user's groups from the image's /etc/group, setgid, setuid,
// no-new-privs), HOME/USER/LOGNAME set from /etc/passwd. Started as another
// user: nothing is chowned; each directory is created if possible and must be
// writable (*perms.NotWritableError otherwise); a configured user other than
// the caller is a warning. Either way the legacy migration then runs with the
// user's credentials, never root's, and CMD is looked up on the user's PATH
// (default DefaultPath) and exec'd. Bad input (unknown user or preset, an id
// outside 0 <= id < 2^31 (ErrIDRange), CMD not on PATH, a relative or system
// directory (perms.ErrSystemDir), an untrusted link on the way
// (perms.ErrSymlink)) is refused before anything changes. When ctx ends
// before the exec, Run returns its error.
func Run(ctx context.Context, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	if err := checkNotSetID(); err != nil {
		return err
	}
	// Everything that can be checked is checked before anything changes.
	env, err := commandEnv(opts)
	if err != nil {
		return err
	}
	asRoot := os.Geteuid() == 0
	u, err := checkUser(&opts, env, asRoot)
	if err != nil {
		return err
	}
	legacy, err := checkLegacy(opts)
	if err != nil {
		return err
	}
	if opts.DryRun {
		return dryRun(ctx, opts, u)
	}
	if asRoot {
		env, err = prepareAndDrop(ctx, opts, u, legacy, env)
	} else {
		err = checkDirs(opts.Dirs)
	}
	if err != nil {
		return err
	}
	if err := migrateLegacy(ctx, opts, legacy); err != nil {
		return err
	}
	return execCommand(ctx, opts.Command, env)
}

// commandEnv is CMD's environment (PATH defaulting to DefaultPath), once CMD
// is found on its PATH.
func commandEnv(opts Options) ([]string, error) {
	env := opts.Env
	if getEnv(env, "PATH") == "" {
		env = setEnv(env, "PATH", DefaultPath)
	}
	if _, err := lookPath(opts.Command[0], getEnv(env, "PATH")); err != nil {
		return nil, err
	}
	return env, nil
}

// checkUser returns the user to become when started as root. Started as
// another user, it defaults opts.Home from env and warns when the configured
// user is not the caller; the user is nil.
func checkUser(opts *Options, env []string, asRoot bool) (*User, error) {
	if asRoot {
		return checkAsRoot(opts)
	}
	if opts.Home == "" {
		opts.Home = getEnv(env, "HOME")
	}
	if w := userMismatch(opts.User, opts.EtcDir); w != "" {
		opts.progress(Event{Kind: EventWarning, Message: w})
	}
	return nil, nil
}

// checkLegacy plans the legacy state migration (nil when it is off).
func checkLegacy(opts Options) (*legacyPlan, error) {
	if opts.Legacy == "off" {
		return nil, nil
	}
	if opts.Home == "" {
		return nil, errors.New("no home directory for the legacy state migration: set MOLTCTL_HOME, or MOLTCTL_LEGACY=off")
	}
	legacy, err := planLegacy(opts.Legacy, opts.Home)
	if err != nil {
		return nil, fmt.Errorf("legacy state migration: %w", err)
	}
	return legacy, nil
}

// prepareAndDrop prepares the directories as root, drops to u and checks, as
// u, the directories root could not reach; it returns CMD's environment for u.
func prepareAndDrop(ctx context.Context, opts Options, u *User, legacy *legacyPlan, env []string) ([]string, error) {
	userDirs, err := prepareAsRoot(ctx, opts, u, legacy)
	if err != nil {
		return nil, err
	}
	env, name, err := becomeUser(u, env)
	if err != nil {
		return nil, err
	}
	for _, dir := range userDirs {
		if err := checkDir(dir); err != nil {
			return nil, fmt.Errorf("checking state directory as %d:%d (root may not reach it without CAP_DAC_OVERRIDE): %w", u.UID, u.GID, err)
		}
		opts.progress(Event{Kind: EventWarning, Message: fmt.Sprintf("%q: root may not reach it without CAP_DAC_OVERRIDE; left to %s, who can write it", dir, name)})
	}
	return env, nil
}

// checkDirs checks, started as a user other than root, that each directory
// exists (created if possible) and is writable.
func checkDirs(dirs []string) error {
	for _, dir := range dirs {
		if err := checkDir(dir); err != nil {
			return fmt.Errorf("checking state directory: %w", err)
		}
	}
	return nil
}

// migrateLegacy runs the legacy state migration, if any. It runs with the
// user's credentials: no path operation as root in a directory the user
// controls, and what it creates is theirs.
func migrateLegacy(ctx context.Context, opts Options, legacy *legacyPlan) error {
	if legacy == nil {
		return nil
	}
	warnings, err := legacy.run(ctx)
	if err != nil {
		return fmt.Errorf("migrating legacy state: %w", err)
	}
	for _, w := range warnings {
		opts.progress(Event{Kind: EventWarning, Message: w})
	}
	return nil
}

// execCommand looks CMD up on env's PATH (as the user now) and execs it; it
// returns only on failure, or when ctx has ended.
func execCommand(ctx context.Context, command, env []string) error {
	path, err := lookPath(command[0], getEnv(env, "PATH"))
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = unix.Exec(path, command, env)
	return fmt.Errorf("executing %q: %w", path, err)
}

// becomeUser drops root for good (see drop) and returns CMD's environment
// with HOME, USER and LOGNAME of u, and u's name (its uid when it has none).
func becomeUser(u *User, env []string) ([]string, string, error) {
	// The bounding set and no-new-privs are per thread: do them on the
	// thread that will exec, and never let this goroutine leave it.
	runtime.LockOSThread()
	if err := drop(u); err != nil {
		return nil, "", fmt.Errorf("dropping privileges to %d:%d: %w", u.UID, u.GID, err)
	}
	name := u.Name
	if name == "" {
		name = fmt.Sprint(u.UID)
	}
	env = setEnv(env, "HOME", u.Home)
	env = setEnv(env, "USER", name)
	env = setEnv(env, "LOGNAME", name)
	return env, name, nil
}

// checkAsRoot resolves the user (never root) and checks, before anything
// changes, where every state directory really is (trusted links followed):
// a link on the way that is not trusted, or a system directory, is refused.
// EACCES (no CAP_DAC_READ_SEARCH, an ancestor the user owns) is left to
// prepareAsRoot, which hands such a directory to the user.
func checkAsRoot(opts *Options) (*User, error) {
	u, err := LookupUser(opts.User, opts.EtcDir)
	if err != nil {
		return nil, fmt.Errorf("looking up the user: %w", err)
	}
	if u.UID == 0 {
		return nil, fmt.Errorf("user %q: %w", opts.User, ErrRootUser)
	}
	if opts.Home == "" {
		opts.Home = u.Home
	}
	for _, dir := range opts.Dirs {
		if _, err := perms.Resolve(dir); err != nil && !errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	return u, nil
}

// prepareAsRoot creates the state directories and gives them to u, then the
// legacy migration's directories. It returns the directories root may not
// reach (EACCES without CAP_DAC_OVERRIDE), for the user to create and check
// after the drop.
func prepareAsRoot(ctx context.Context, opts Options, u *User, legacy *legacyPlan) (userDirs []string, err error) {
	for _, dir := range opts.Dirs {
		if err := perms.MkdirAll(dir); errors.Is(err, unix.EACCES) {
			userDirs = append(userDirs, dir)
			continue
		} else if err != nil {
			return nil, fmt.Errorf("preparing state directory: %w", err)
		}
		if opts.NoChown {
			continue
		}
		st, err := perms.Fix(ctx, dir, perms.Options{UID: u.UID, GID: u.GID})
		if errors.Is(err, unix.EACCES) {
			userDirs = append(userDirs, dir)
			continue
		}
		if err != nil {
			return nil, err
		}
		opts.progress(Event{Kind: EventOwnership, Dir: dir, Stats: st})
	}
	if legacy != nil && !opts.NoChown {
		if err := fixLegacy(ctx, opts, legacy, u); err != nil {
			return nil, err
		}
	}
	return userDirs, nil
}

// fixLegacy gives the legacy and target directories of the migration that
// exist (real directories, reached under perms' trust rule) to the user
// before the migration runs as the user: state an image that ran the app as
// root left root-owned could not be renamed otherwise. Anything that is not
// such a directory (absent, a link, a file, a system directory) is left to the
// migration, which reports it.
func fixLegacy(ctx context.Context, opts Options, legacy *legacyPlan, u *User) error {
	for _, dir := range legacy.dirs() {
		st, err := perms.Fix(ctx, dir, perms.Options{UID: u.UID, GID: u.GID})
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, perms.ErrSymlink), errors.Is(err, perms.ErrSystemDir):
			continue
		case err != nil:
			opts.progress(Event{Kind: EventWarning, Message: fmt.Sprintf("legacy state %q: %v", dir, err)})
			continue
		}
		if st.Changed > 0 || st.SkippedTotal > 0 {
			opts.progress(Event{Kind: EventOwnership, Dir: dir, Stats: st})
		}
	}
	return nil
}

// dryRun reports what Run would change in each existing directory.
func dryRun(ctx context.Context, opts Options, u *User) error {
	for _, dir := range opts.Dirs {
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			opts.progress(Event{Kind: EventWarning, Message: fmt.Sprintf("%q: missing, would be created", dir)})
			continue
		}
		if u == nil {
			if err := perms.CheckWritable(dir); err != nil {
				return fmt.Errorf("checking state directory: %w", err)
			}
			continue
		}
		if opts.NoChown {
			continue
		}
		st, err := perms.Fix(ctx, dir, perms.Options{UID: u.UID, GID: u.GID, DryRun: true})
		if err != nil {
			return err
		}
		opts.progress(Event{Kind: EventOwnership, Dir: dir, Stats: st})
	}
	return nil
}

func (o *Options) defaults() error {
	if len(o.Command) == 0 {
		return errors.New("no command given: usage: moltctl bootstrap [flags] -- CMD [ARG...]")
	}
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.Dirs == nil {
		o.Dirs = DefaultDirs
	}
	for _, d := range o.Dirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("state directory %q is not an absolute path", d)
		}
		if perms.SystemDir(filepath.Clean(d)) {
			return fmt.Errorf("state directory %q: %w", d, perms.ErrSystemDir)
		}
	}
	if o.Legacy == "" {
		o.Legacy = DefaultLegacy
	}
	if o.EtcDir == "" {
		o.EtcDir = DefaultEtcDir
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	return nil
}

func (o *Options) progress(e Event) {
	if o.Progress != nil {
		o.Progress(e)
	}
}

// userMismatch returns a warning when a non-root start runs as someone else
// than the configured user (which only root could switch to), else "".
func userMismatch(spec, etcDir string) string {
	u, err := LookupUser(spec, etcDir)
	if err == nil && u.UID != os.Geteuid() {
		return fmt.Sprintf("started as uid %d, not root: the user %q (uid %d) cannot be switched to; running CMD as uid %d", os.Geteuid(), spec, u.UID, os.Geteuid())
	}
	return ""
}

// checkNotSetID refuses a setuid/setgid moltctl binary (or one started with
// differing real and effective ids).
func checkNotSetID() error {
	if os.Getuid() != os.Geteuid() || os.Getgid() != os.Getegid() {
		return fmt.Errorf("real and effective ids differ: %w", ErrSetID)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding moltctl's own binary: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return fmt.Errorf("examining moltctl's own binary: %w", err)
	}
	if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return fmt.Errorf("%q has mode %04o: %w", exe, st.Mode&0o7777, ErrSetID)
	}
	return nil
}

// checkDir creates dir when it is missing and the caller may, then checks it is
// writable. A missing dir that cannot be made reports its nearest existing
// ancestor as not writable.
func checkDir(dir string) error {
	_, err := os.Lstat(dir)
	if errors.Is(err, os.ErrPermission) {
		// An ancestor may not be searched: name the first such one.
		for anc := filepath.Dir(dir); anc != "/"; anc = filepath.Dir(anc) {
			if _, err := os.Stat(anc); err == nil {
				if aerr := unix.Faccessat(unix.AT_FDCWD, anc, unix.X_OK, unix.AT_EACCESS); aerr != nil {
					var st unix.Stat_t
					unix.Stat(anc, &st)
					return &perms.NotWritableError{Dir: anc, UID: st.Uid, GID: st.Gid, Mode: st.Mode & 0o7777, Err: aerr}
				}
				break
			}
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		if err := perms.MkdirAll(dir); err != nil {
			anc := filepath.Dir(dir)
			for {
				if _, err := os.Stat(anc); err == nil || anc == "/" {
					break
				}
				anc = filepath.Dir(anc)
			}
			if werr := perms.CheckWritable(anc); werr != nil {
				return fmt.Errorf("%q is missing and cannot be created: %w", dir, werr)
			}
			return err
		}
	}
	return perms.CheckWritable(dir)
}

func getEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// setEnv replaces every key= entry of env with key=value (a copy).
func setEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// lookPath finds name as the current (already dropped) credentials see it: a
// name with a slash is used as is; else the first regular file on pathEnv that
// the effective ids may execute.
func lookPath(name, pathEnv string) (string, error) {
	check := func(p string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return ErrNotFound
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return ErrNotExecutable
		}
		if err := unix.Faccessat(unix.AT_FDCWD, p, unix.X_OK, unix.AT_EACCESS); err != nil {
			return ErrNotExecutable
		}
		return nil
	}
	if strings.Contains(name, "/") {
		if err := check(name); err != nil {
			return "", fmt.Errorf("%q: %w", name, err)
		}
		return name, nil
	}
	found := ErrNotFound
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue // an empty entry would mean the working directory: not for an entrypoint
		}
		p := filepath.Join(dir, name)
		err := check(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, ErrNotExecutable) {
			found = err
		}
	}
	return "", fmt.Errorf("%q (looked up on PATH): %w", name, found)
}
