// Package statemigrate moves an app's legacy state directory to its new name
// (for moltbot: ~/.clawdbot → ~/.moltbot, or today's names → ~/.openclaw) in a
// way that survives bind mounts, filesystem boundaries, concurrent starts and
// crashes. It never prints; Migrate returns one Outcome per rule.
package statemigrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// FileRule renames one file inside the target directory; both are base names.
type FileRule struct{ Legacy, Target string }

// Rule migrates the directory Legacy to Target (both absolute) and then
// renames Files inside it.
type Rule struct {
	Legacy, Target string
	Files          []FileRule
}

// ErrUnknownPreset is returned by Preset for a name it does not know.
var ErrUnknownPreset = errors.New("unknown legacy preset")

// Preset returns the rules of a named preset under home, in the order the app
// looks for its legacy directories: "moltbot" (the default when name is "")
// maps ~/.clawdbot to ~/.moltbot; "openclaw" maps ~/.clawdbot, ~/.moldbot and
// ~/.moltbot to ~/.openclaw. It fails with ErrUnknownPreset for other names and
// when home is not absolute.
func Preset(name, home string) ([]Rule, error) {
	if !filepath.IsAbs(home) {
		return nil, fmt.Errorf("legacy preset %q: home %q is not an absolute path", name, home)
	}
	home = filepath.Clean(home)
	switch name {
	case "", "moltbot":
		return []Rule{{
			Legacy: filepath.Join(home, ".clawdbot"),
			Target: filepath.Join(home, ".moltbot"),
			Files:  []FileRule{{Legacy: "clawdbot.json", Target: "moltbot.json"}},
		}}, nil
	case "openclaw":
		files := []FileRule{
			{Legacy: "clawdbot.json", Target: "openclaw.json"},
			{Legacy: "moldbot.json", Target: "openclaw.json"},
			{Legacy: "moltbot.json", Target: "openclaw.json"},
		}
		var rules []Rule
		for _, l := range []string{".clawdbot", ".moldbot", ".moltbot"} {
			rules = append(rules, Rule{Legacy: filepath.Join(home, l), Target: filepath.Join(home, ".openclaw"), Files: files})
		}
		return rules, nil
	}
	return nil, fmt.Errorf("%q (want moltbot or openclaw): %w", name, ErrUnknownPreset)
}

// Options configures Migrate.
type Options struct {
	Rules   []Rule // applied in order
	LockDir string // where lock files live; "" puts a lock file beside each target
}

// Actions reported in Outcome.Action.
const (
	ActionRenamed      = "renamed"       // legacy renamed to target; legacy is now a link to target
	ActionLinked       = "linked"        // legacy is a symlink not pointing at target: left alone
	ActionCopied       = "copied"        // legacy on another filesystem: copied to target, kept
	ActionSkippedMount = "skipped-mount" // legacy is a mount point: not renamed; target links to it
	ActionConflict     = "conflict"      // both exist (or legacy is not a directory): nothing changed
	ActionDone         = "done"          // migrated before: nothing to do
	ActionAbsent       = "absent"        // no legacy directory: nothing to do
	ActionFailed       = "failed"        // a step failed (e.g. EACCES, EROFS): state left complete, the next run retries
)

// Outcome reports what Migrate did for one rule. Warning, when set, is one
// line meant for the user (it never holds file contents).
type Outcome struct {
	Rule    Rule
	Action  string // one of the Action constants
	Warning string
}

// Names Migrate uses beside the target (in its parent directory) and inside it.
const (
	copiedMarker = ".moltctl-copied-from" // inside a copied target: the legacy path
)

func intentPath(target string) string {
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".moltctl-moving")
}

func stagingPath(target string) string {
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".moltctl-staging")
}

// stepHook is called at every step boundary with the step's name; tests use
// it to simulate a crash there.
var stepHook = func(string) {}

// ErrInvalidRule is returned by Migrate for a rule whose paths are not
// absolute, are equal, or whose file names are not plain base names.
var ErrInvalidRule = errors.New("invalid migration rule")

func validate(r Rule) error {
	if !filepath.IsAbs(r.Legacy) || !filepath.IsAbs(r.Target) {
		return fmt.Errorf("%q → %q: paths must be absolute: %w", r.Legacy, r.Target, ErrInvalidRule)
	}
	if filepath.Clean(r.Legacy) == filepath.Clean(r.Target) || filepath.Clean(r.Target) == "/" || filepath.Clean(r.Legacy) == "/" {
		return fmt.Errorf("%q → %q: %w", r.Legacy, r.Target, ErrInvalidRule)
	}
	for _, f := range r.Files {
		for _, n := range []string{f.Legacy, f.Target} {
			if n == "" || n == "." || n == ".." || strings.ContainsRune(n, '/') {
				return fmt.Errorf("file name %q in %q → %q: %w", n, r.Legacy, r.Target, ErrInvalidRule)
			}
		}
	}
	return nil
}

// Migrate applies opts.Rules in order and returns one Outcome per rule. Each
// rule runs under an exclusive flock (see Options.LockDir), so of several
// processes migrating the same directories at once exactly one does the work
// and the others report ActionDone. Every step is crash safe: after a crash at
// any point the app finds either the complete old state or the complete new
// one, and the next Migrate finishes the job. Migrate fails with
// ErrInvalidRule (before changing anything) for a bad rule, and with ctx's
// error when ctx ends (checked before each rule and while waiting for a lock);
// outcomes of the rules done so far are returned with the error. Anything
// else that fails (a lock file that cannot be created, a permission, a
// read-only or full filesystem, a source changing under the copy) is not an
// error: its rule's Outcome is ActionFailed with the reason in Warning, since
// the state is left complete and the app can start.
func Migrate(ctx context.Context, opts Options) ([]Outcome, error) {
	for _, r := range opts.Rules {
		if err := validate(r); err != nil {
			return nil, err
		}
	}
	var out []Outcome
	for _, r := range opts.Rules {
		r.Legacy, r.Target = filepath.Clean(r.Legacy), filepath.Clean(r.Target)
		o, err := migrateRule(ctx, r, opts.LockDir, opts.Rules)
		if err != nil {
			return out, fmt.Errorf("migrating %q to %q: %w", r.Legacy, r.Target, err)
		}
		out = append(out, o)
	}
	return out, nil
}

func exists(path string) (os.FileInfo, bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return fi, true, nil
}

func migrateRule(ctx context.Context, r Rule, lockDir string, all []Rule) (Outcome, error) {
	m := &migration{r: r, o: Outcome{Rule: r}, all: all}
	if err := m.locked(ctx, lockDir); err != nil {
		if ctx.Err() != nil {
			return Outcome{}, err
		}
		// A failed step leaves what a crash there would: a complete state.
		// The app can still start; the warning says what went wrong.
		m.o.Action = ActionFailed
		m.warnings = append(m.warnings, fmt.Sprintf("could not migrate %q to %q: %v; nothing is half done, the next start retries%s", r.Legacy, r.Target, err, permissionHint(err, r.Legacy)))
	}
	m.o.Warning = strings.Join(m.warnings, "; ")
	return m.o, nil
}

// locked runs the migration under the lock, unless there is clearly nothing
// to do: no legacy directory and nothing half done (then no lock file is
// created either).
func (m *migration) locked(ctx context.Context, lockDir string) error {
	_, legacyOK, err := exists(m.r.Legacy)
	if err != nil {
		return err
	}
	_, intentOK, err := exists(intentPath(m.r.Target))
	if err != nil {
		return err
	}
	if !legacyOK && !intentOK {
		m.o.Action = ActionAbsent
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := acquire(ctx, lockPath(m.r.Target, lockDir))
	if err != nil {
		return err
	}
	defer l.release()
	stepHook("locked")
	return m.run()
}

type migration struct {
	r        Rule
	o        Outcome
	all      []Rule // every rule of the run, to say where a target came from
	warnings []string
}

// permissionHint says what to do when a step failed with EACCES or EPERM on
// a legacy directory another user owns (say root, from an image that ran the
// app as root).
func permissionHint(err error, legacy string) string {
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		return ""
	}
	var st unix.Stat_t
	if unix.Lstat(legacy, &st) != nil || int(st.Uid) == os.Geteuid() {
		return ""
	}
	return fmt.Sprintf(" once %q belongs to the app's user (it is owned by %d:%d; e.g. docker exec -u 0 CONTAINER chown -R %d:%d %q)", legacy, st.Uid, st.Gid, os.Geteuid(), os.Getegid(), legacy)
}

// conflict reports a legacy directory left alone because the target exists,
// saying what the target is: a link to nothing (which the app cannot use), or
// the former legacy directory of another rule.
func (m *migration) conflict() {
	r := m.r
	m.o.Action = ActionConflict
	if fi, err := os.Lstat(r.Target); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if _, err := os.Stat(r.Target); err != nil {
			dest, _ := os.Readlink(r.Target)
			m.warn("%q is a link to %q, which does not exist, so the app cannot use it; %q was left alone: remove the link and the next start moves %q there", r.Target, dest, r.Legacy, r.Legacy)
			return
		}
	}
	origin := m.copiedFrom(r.Target)
	for _, direct := range []bool{true, false} { // a link straight to the target first, then a chain
		for _, o := range m.all {
			if origin == "" && o.Target == r.Target && o.Legacy != r.Legacy && isLinkTo(o.Legacy, r.Target, direct) {
				origin = o.Legacy
			}
		}
	}
	if origin != "" {
		m.warn("both %q and %q exist; the app uses %q, which was migrated from %q; if %q holds the state you want, merge it by hand; nothing changed", r.Legacy, r.Target, r.Target, origin, r.Legacy)
		return
	}
	m.warn("both %q and %q exist; merge manually (the app uses %q), nothing changed", r.Legacy, r.Target, r.Target)
}

// isLinkTo reports whether link is a symlink resolving to target; direct:
// whose own text names target.
func isLinkTo(link, target string, direct bool) bool {
	dest, err := os.Readlink(link)
	if err != nil {
		return false
	}
	if direct {
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(link), dest)
		}
		return filepath.Clean(dest) == target
	}
	return sameFile(link, target)
}

func (m *migration) warn(format string, args ...any) {
	m.warnings = append(m.warnings, fmt.Sprintf(format, args...))
}

func (m *migration) mountWarning() {
	m.warn("%q is a mount point, so it was not renamed to %q (%q links to it instead); "+
		"to finish, run `moltctl migrate` on the host: it turns the bind mount into a named volume mounted at %q",
		m.r.Legacy, m.r.Target, m.r.Target, m.r.Target)
}

// run migrates the rule under its lock: it clears an interrupted copy, looks
// at what the legacy and target paths are, and renames, links a mount, copies
// across file systems, finishes an interrupted run or leaves a conflict.
func (m *migration) run() error {
	if err := m.removeInterruptedCopy(); err != nil {
		return err
	}
	s, err := m.look()
	if err != nil {
		return err
	}
	if done, err := m.legacyNotADirectory(s); done || err != nil {
		return err
	}
	mount, err := safefs.IsMountPoint(m.r.Legacy)
	if err != nil {
		return err
	}
	if s.targetOK {
		if done, err := m.targetExists(s, mount); done || err != nil {
			return err
		}
	}
	if mount {
		return m.linkMount()
	}
	return m.rename()
}

// paths is what run found at the rule's paths.
type paths struct {
	legacy, target     os.FileInfo
	legacyOK, targetOK bool
	ours               bool // the intent file names this rule's legacy directory
}

// removeInterruptedCopy removes a staging directory left by an interrupted
// copy: it is never in use, since the copy only becomes the target by a
// rename, which removes the staging name.
func (m *migration) removeInterruptedCopy() error {
	staging := stagingPath(m.r.Target)
	if _, ok, err := exists(staging); err != nil || !ok {
		return err
	}
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("removing the interrupted copy %q: %w", staging, err)
	}
	if err := safefs.SyncDir(filepath.Dir(m.r.Target)); err != nil {
		return err
	}
	stepHook("staging-removed")
	return nil
}

func (m *migration) look() (paths, error) {
	var s paths
	var err error
	if s.legacy, s.legacyOK, err = exists(m.r.Legacy); err != nil {
		return s, err
	}
	if s.target, s.targetOK, err = exists(m.r.Target); err != nil {
		return s, err
	}
	intent, err := readSmall(intentPath(m.r.Target))
	if err != nil {
		return s, fmt.Errorf("reading %q: %w", intentPath(m.r.Target), err)
	}
	s.ours = intent == m.r.Legacy
	return s, nil
}

// legacyNotADirectory settles the rules whose legacy path is missing, a
// symlink or not a directory (done is then true).
func (m *migration) legacyNotADirectory(s paths) (done bool, err error) {
	r := m.r
	switch {
	case !s.legacyOK:
		if s.ours && s.targetOK && s.target.IsDir() {
			// Crashed after the rename, before the compatibility link.
			m.o.Action = ActionRenamed
			return true, m.finishRename()
		}
		if s.ours {
			return true, m.dropIntent()
		}
		m.o.Action = ActionAbsent
		return true, nil
	case s.legacy.Mode()&os.ModeSymlink != 0:
		if s.targetOK && sameFile(r.Legacy, r.Target) {
			m.o.Action = ActionDone
			if s.ours { // crashed before the file renames or the intent's removal
				m.o.Action = ActionRenamed
				return true, m.finishRename()
			}
			return true, m.renameFiles(r.Target)
		}
		m.o.Action = ActionLinked
		return true, nil
	case !s.legacy.IsDir():
		m.o.Action = ActionConflict
		m.warn("%q is not a directory; left alone", r.Legacy)
		return true, nil
	}
	return false, nil
}

// targetExists settles a legacy directory whose target exists: our link to a
// mount (kept while mounted, else removed so the rename can happen), our
// finished copy, or a conflict (done is then true).
func (m *migration) targetExists(s paths, mount bool) (done bool, err error) {
	r := m.r
	switch {
	case s.target.Mode()&os.ModeSymlink != 0 && sameFile(r.Target, r.Legacy):
		if mount {
			m.o.Action = ActionSkippedMount
			m.mountWarning()
			return true, m.renameFiles(r.Legacy)
		}
		// The mount is gone: replace our link by the real rename. A crash
		// after the removal leaves the plain legacy directory, as before.
		if err := os.Remove(r.Target); err != nil {
			return true, fmt.Errorf("removing link %q: %w", r.Target, err)
		}
		if err := safefs.SyncDir(filepath.Dir(r.Target)); err != nil {
			return true, err
		}
		stepHook("mount-link-removed")
		return false, nil
	case s.target.IsDir() && m.copiedFrom(r.Target) == r.Legacy:
		m.o.Action = ActionDone
		return true, nil
	default:
		m.conflict()
		return true, nil
	}
}

// rename renames the plain legacy directory to the absent target under an
// intent file; across file systems it copies, for a busy mount it links.
func (m *migration) rename() error {
	r := m.r
	if err := m.writeIntent(); err != nil {
		return err
	}
	err := renameNoReplace(r.Legacy, r.Target)
	switch {
	case err == nil:
		if err := syncDirs(filepath.Dir(r.Legacy), filepath.Dir(r.Target)); err != nil {
			return err
		}
		stepHook("renamed")
		m.o.Action = ActionRenamed
		return m.finishRename()
	case errors.Is(err, unix.EBUSY):
		if err := m.dropIntent(); err != nil {
			return err
		}
		return m.linkMount()
	case errors.Is(err, unix.EXDEV):
		if err := m.dropIntent(); err != nil {
			return err
		}
		// EXDEV from a mount root whose detection failed must not become a
		// copy that orphans the mount: ask the mount table too.
		if mi, err := safefs.InMountTable(r.Legacy); err != nil {
			return err
		} else if mi {
			return m.linkMount()
		}
		return m.copy()
	case errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.ENOTDIR):
		if err := m.dropIntent(); err != nil {
			return err
		}
		m.conflict()
		return nil
	default:
		// Nothing moved: drop the intent, so that nothing is left half done
		// and the next start begins afresh.
		err = fmt.Errorf("renaming: %w", err) // the caller names both paths
		if derr := m.dropIntent(); derr != nil {
			return errors.Join(err, derr)
		}
		return err
	}
}

// onOverlay reports whether path is on an overlay filesystem (a container's
// root file system).
func onOverlay(path string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && fs.Type == unix.OVERLAYFS_SUPER_MAGIC
}

func (m *migration) copiedFrom(dir string) string {
	s, _ := readSmall(filepath.Join(dir, copiedMarker))
	return s
}

func (m *migration) writeIntent() error {
	p := intentPath(m.r.Target)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale %q: %w", p, err)
	}
	if err := writeFileSync(p, []byte(m.r.Legacy+"\n")); err != nil {
		return fmt.Errorf("writing %q: %w", p, err)
	}
	if err := safefs.SyncDir(filepath.Dir(p)); err != nil {
		return err
	}
	stepHook("intent-written")
	return nil
}

func (m *migration) dropIntent() error {
	p := intentPath(m.r.Target)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %q: %w", p, err)
	}
	if err := safefs.SyncDir(filepath.Dir(p)); err != nil {
		return err
	}
	stepHook("intent-removed")
	return nil
}

// finishRename leaves the compatibility link legacy → target, renames the
// files inside and drops the intent; each part is idempotent.
func (m *migration) finishRename() error {
	r := m.r
	rel, err := filepath.Rel(filepath.Dir(r.Legacy), r.Target)
	if err != nil {
		return err
	}
	if err := os.Symlink(rel, r.Legacy); err != nil && !(errors.Is(err, os.ErrExist) && sameFile(r.Legacy, r.Target)) {
		return fmt.Errorf("linking %q to %q: %w", r.Legacy, r.Target, err)
	}
	if err := safefs.SyncDir(filepath.Dir(r.Legacy)); err != nil {
		return err
	}
	stepHook("compat-linked")
	if err := m.renameFiles(r.Target); err != nil {
		return err
	}
	return m.dropIntent()
}

// linkMount handles a mounted legacy directory: leave it, and when the target
// is absent make the target a link to it so the app finds its state.
func (m *migration) linkMount() error {
	r := m.r
	m.o.Action = ActionSkippedMount
	m.mountWarning()
	// An intent left by a run that crashed before its rename met EBUSY.
	if intent, err := readSmall(intentPath(r.Target)); err == nil && intent == r.Legacy {
		if err := m.dropIntent(); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(filepath.Dir(r.Target), r.Legacy)
	if err != nil {
		return err
	}
	if err := os.Symlink(rel, r.Target); err != nil {
		if errors.Is(err, os.ErrExist) && sameFile(r.Target, r.Legacy) {
			return m.renameFiles(r.Legacy)
		}
		return fmt.Errorf("linking %q to %q: %w", r.Target, r.Legacy, err)
	}
	if err := safefs.SyncDir(filepath.Dir(r.Target)); err != nil {
		return err
	}
	stepHook("mount-linked")
	return m.renameFiles(r.Legacy)
}

// copy copies legacy into a staging directory beside the target, verifies
// it, marks it with the legacy path and renames it into place; legacy stays.
func (m *migration) copy() error {
	r := m.r
	staging := stagingPath(r.Target)
	if err := os.Mkdir(staging, 0o700); err != nil {
		return fmt.Errorf("creating %q: %w", staging, err)
	}
	stepHook("staging-created")
	mounts, err := copyTree(r.Legacy, staging)
	if err != nil {
		os.RemoveAll(staging)
		return fmt.Errorf("copying to %q: %w", staging, err)
	}
	for _, p := range mounts {
		m.warn("%q is a mount point inside %q: not copied to %q, its content stays where it is mounted", filepath.Join(r.Legacy, p), r.Legacy, r.Target)
	}
	stepHook("staging-copied")
	if err := verifyTree(r.Legacy, staging); err != nil {
		os.RemoveAll(staging)
		return err
	}
	stepHook("staging-verified")
	if err := writeFileSync(filepath.Join(staging, copiedMarker), []byte(r.Legacy+"\n")); err != nil {
		return fmt.Errorf("marking %q: %w", staging, err)
	}
	if err := m.renameFiles(staging); err != nil {
		return err
	}
	// The marker and renames touched the staging root's times; restore them.
	var lst unix.Stat_t
	if err := unix.Lstat(r.Legacy, &lst); err == nil {
		if err := restoreTimes(staging, &lst); err != nil {
			return err
		}
	}
	stepHook("staging-marked")
	if err := renameNoReplace(staging, r.Target); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			m.conflict()
			return os.RemoveAll(staging)
		}
		return fmt.Errorf("renaming %q into place: %w", staging, err)
	}
	if err := safefs.SyncDir(filepath.Dir(r.Target)); err != nil {
		return err
	}
	stepHook("copied")
	m.o.Action = ActionCopied
	if onOverlay(r.Legacy) {
		// overlayfs answers EXDEV for renaming a directory of a lower layer.
		m.warn("%q comes from the image (overlayfs cannot rename a directory of the image's layers): copied it to %q and kept it; remove it once the app runs fine", r.Legacy, r.Target)
		return nil
	}
	m.warn("%q is on another filesystem than %q: copied it there and kept it; remove it once the app runs fine", r.Legacy, r.Target)
	return nil
}

// renameFiles applies the rule's file renames inside dir, never replacing a
// file; when both names exist it warns and leaves both.
func (m *migration) renameFiles(dir string) error {
	changed := false
	for _, f := range m.r.Files {
		from, to := filepath.Join(dir, f.Legacy), filepath.Join(dir, f.Target)
		if _, ok, err := exists(from); err != nil {
			return err
		} else if !ok {
			continue
		}
		err := renameNoReplace(from, to)
		switch {
		case err == nil:
			changed = true
			stepHook("file-renamed")
		case errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTDIR):
			m.warn("both %q and %q exist in %q; merge manually, nothing changed", f.Legacy, f.Target, dir)
		default:
			return fmt.Errorf("renaming %q to %q: %w", from, f.Target, err)
		}
	}
	if changed {
		return safefs.SyncDir(dir)
	}
	return nil
}
