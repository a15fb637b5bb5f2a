package remount

import (
	"encoding/json"
	"time"

	"github.com/moltctl/moltctl/internal/statefile"
)

// journalFile is project's remount journal (crash points "remount:<step>").
func journalFile(project string) statefile.Journal[journal, *journal] {
	return statefile.NewJournal[journal](project, "remount")
}

// JournalPath returns the file the remount journal of project lives in.
func JournalPath(project string) string { return journalFile(project).Path() }

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
	Version int    `json:"version"`
	Project string `json:"project"`
	Service string `json:"service"`
	statefile.Header
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

func (j *journal) save(step string) error { return journalFile(j.Project).Save(j, step) }

func (j *journal) remove() error { return journalFile(j.Project).Remove() }

// readJournal returns the project's journal, or nil when there is none.
func readJournal(project string) (*journal, error) { return journalFile(project).Load() }
