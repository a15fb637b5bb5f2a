package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/statefile"
)

// Journal steps, in order. The journal names the last step that completed.
const (
	StepPlanned   = "planned"   // plan journaled, nothing changed
	StepCreated   = "created"   // the volumes exist
	StepCopied    = "copied"    // full pass done while the services ran
	StepStopping  = "stopping"  // the services' running containers are recorded, stop begins
	StepStopped   = "stopped"   // the affected services are stopped
	StepDelta     = "delta"     // delta pass done
	StepVerified  = "verified"  // volumes equal the sources
	StepApplied   = "applied"   // compose files rewritten (backups beside them)
	StepRemounted = "remounted" // every affected service runs on its volumes
	StepDone      = "done"      // volumes finished, helper removed: the migration stands
)

// fileEdit is one compose file change as journaled: the content before and
// after (the journal is 0600 in a 0700 directory).
type fileEdit struct {
	Path      string `json:"path"`
	OldSHA256 string `json:"old_sha256"`
	NewSHA256 string `json:"new_sha256"`
	Old       []byte `json:"old"`
	New       []byte `json:"new"`
}

// journal is the on-disk record of a migration (JournalPath).
type journal struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	statefile.Header
	Conversions []Conversion `json:"conversions"`
	Services    []string     `json:"services"`
	Edits       []fileEdit   `json:"edits"`
	// Volumes are the volumes this migration created (Create reported Created or Replaced).
	Volumes []string `json:"volumes,omitempty"`
	// Running are the affected services that had a running container before the stop.
	Running []string `json:"running,omitempty"`
	// Remounted are the services remounted onto their volumes so far; Current is
	// the one being remounted.
	Remounted []string `json:"remounted,omitempty"`
	Current   string   `json:"current,omitempty"`
	// Sources are the identities (device:inode) of the source directories the
	// full pass copied: a delta from another directory is refused, and an abort
	// keeps the volumes while a source is gone or replaced.
	Sources map[string]string `json:"sources,omitempty"`
	// Skipped are services without a container (docker compose up creates them).
	Skipped   []string  `json:"skipped,omitempty"`
	StartedAt time.Time `json:"started_at"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
}

// journalFile is project's migrate journal (crash points "migrate:<step>").
func journalFile(project string) statefile.Journal[journal, *journal] {
	return statefile.NewJournal[journal](project, "migrate")
}

// JournalPath returns the file the migrate journal of project lives in.
func JournalPath(project string) string { return journalFile(project).Path() }

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// save records step durably; its error wraps statefile.ErrJournal.
func (j *journal) save(step string) error { return journalFile(j.Project).Save(j, step) }

func (j *journal) remove() error { return journalFile(j.Project).Remove() }

// readJournal returns the project's journal, or nil when there is none.
func readJournal(project string) (*journal, error) { return journalFile(project).Load() }

// dropContent forgets the compose files' content once the migration is done
// (it may hold secrets): the hashes stay, and Rollback reads the content
// before the migration from the backups (loadContent).
func (j *journal) dropContent() {
	for i := range j.Edits {
		j.Edits[i].Old, j.Edits[i].New = nil, nil
	}
}

// loadContent fills the content dropContent dropped: the content before the
// migration from each file's backup, the rewrite from the file itself, each
// only when its hash is the journaled one. A file that holds neither any more
// gives an error wrapping compose.ErrChanged.
func (j *journal) loadContent() error {
	for i, e := range j.Edits {
		if e.Old != nil {
			continue
		}
		old, err := os.ReadFile(e.Path + compose.BackupSuffix)
		if err != nil || sum(old) != e.OldSHA256 {
			return fmt.Errorf("compose file %q: its backup %q no longer holds the content before the migration: %w",
				e.Path, e.Path+compose.BackupSuffix, compose.ErrChanged)
		}
		cur, err := os.ReadFile(e.Path)
		if err != nil {
			return fmt.Errorf("reading %q: %w", e.Path, err)
		}
		j.Edits[i].Old = old
		switch sum(cur) {
		case e.NewSHA256:
			j.Edits[i].New = cur
		case e.OldSHA256:
			j.Edits[i].New = nil // already restored: applyEdits skips it
		default:
			return fmt.Errorf("compose file %q %w (the migration's plan no longer applies)", e.Path, compose.ErrChanged)
		}
	}
	return nil
}
