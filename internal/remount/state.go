package remount

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/statefile"
)

// StateDir returns the directory moltctl keeps its per-project state in:
// $MOLTCTL_STATE_DIR, else $XDG_STATE_HOME/moltctl, else ~/.local/state/moltctl.
func StateDir() string {
	if d := os.Getenv("MOLTCTL_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "moltctl")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".local", "state", "moltctl")
}

func projectDir(project string) string { return filepath.Join(StateDir(), project) }

// JournalPath returns the file the remount journal of project lives in.
func JournalPath(project string) string {
	return filepath.Join(projectDir(project), "remount.json")
}

// Lock takes the project's lock (an flock on <StateDir>/<project>/lock) without
// waiting, and returns the function that releases it. It returns an error wrapping
// ErrLocked when another process holds it. A caller that holds the lock across
// several remounts (moltctl migrate) passes Options.Locked.
func Lock(project string) (unlock func(), err error) {
	dir := projectDir(project)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock of project %s: %w", project, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("project %s: %w", project, ErrLocked)
		}
		return nil, fmt.Errorf("locking project %s: %w", project, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// Steps of a remount, in order, as recorded in the journal.
const (
	stepBegun      = "begun"       // old container inspected, nothing changed yet
	stepStopped    = "stopped"     // old container stopped
	stepCommitted  = "committed"   // snapshot image exists
	stepComposing  = "composing"   // docker compose up --no-start runs (it replaces the old container)
	stepComposed   = "composed"    // compose's new container exists, its inspect is journaled
	stepNewRemoved = "new-removed" // compose's container removed (its volumes kept)
	stepCreated    = "created"     // the clone on the snapshot exists under the final name
	stepStarted    = "started"     // the clone was started
)

// journal is the on-disk record of one remount in progress.
type journal struct {
	Version int       `json:"version"`
	Project string    `json:"project"`
	Service string    `json:"service"`
	Step    string    `json:"step"`
	Started time.Time `json:"started"`
	Flatten bool      `json:"flatten,omitempty"`
	// KeepConfig: the container is recreated with its own config (Rejoin), not compose's.
	KeepConfig bool `json:"keep_config,omitempty"`
	// Replica is the name of the replica remounted, of a scaled service; New
	// is then compose's template for it, made at the start.
	Replica string `json:"replica,omitempty"`
	OldID   string `json:"old_id"`
	OldName string `json:"old_name"`
	Running bool   `json:"running"`
	// Old is the old container's inspect: enough to recreate it on the snapshot.
	Old json.RawMessage `json:"old"`
	// BaseImage is the service's image reference (the snapshot's base).
	BaseImage   string `json:"base_image"`
	BaseImageID string `json:"base_image_id"`
	Parent      string `json:"parent,omitempty"`
	SnapshotTag string `json:"snapshot_tag"`
	SnapshotID  string `json:"snapshot_id,omitempty"`
	Seq         int    `json:"seq"`
	// New is compose's container's inspect, the template of the clone.
	New     json.RawMessage `json:"new,omitempty"`
	CloneID string          `json:"clone_id,omitempty"`
	// StoppedAt is when the service stopped serving (for the downtime figure).
	StoppedAt time.Time `json:"stopped_at,omitempty"`
	// Rebase: the layer is carried onto the service's new image (rebase.go).
	Rebase *rebaseState `json:"rebase,omitempty"`
}

// crashHook is the environment variable naming a step after whose journal write
// the process SIGKILLs itself; tests use it to simulate a crash.
const crashHook = "MOLTCTL_REMOUNT_CRASH_AFTER"

func (j *journal) save(step string) error {
	j.Step = step
	if err := statefile.Save(JournalPath(j.Project), j); err != nil {
		return fmt.Errorf("writing the journal: %w", err)
	}
	statefile.CrashAfter(crashHook, step)
	return nil
}

func (j *journal) remove() error {
	if err := statefile.Remove(JournalPath(j.Project)); err != nil {
		return fmt.Errorf("removing the journal: %w", err)
	}
	return nil
}

// readJournal returns the project's journal, or nil when there is none.
func readJournal(project string) (*journal, error) {
	var j journal
	if ok, err := statefile.Load(JournalPath(project), &j); !ok || err != nil {
		if err != nil {
			return nil, fmt.Errorf("reading the journal: %w", err)
		}
		return nil, nil
	}
	return &j, nil
}
