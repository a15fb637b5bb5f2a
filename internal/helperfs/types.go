package helperfs

import (
	"errors"
	"time"
)

// StateDir is the hidden directory at the root of a volume being filled that
// keeps the first pass's manifest for the delta pass and the list of what the
// delta touched for verification. The finish operation removes it.
const StateDir = ".moltctl-migrate"

// Errors the helper reports by kind (Line.Kind), for errors.Is on both sides.
var (
	// ErrMismatch: verification found the volume different from the source.
	ErrMismatch = errors.New("the volume differs from the source")
	// ErrNoSpace: the volume's file system cannot hold the source.
	ErrNoSpace = errors.New("not enough space in the volume")
	// ErrNoInodes: the volume's file system has no inodes left for the files
	// (it may have bytes to spare). It wraps ErrNoSpace.
	ErrNoInodes error = noInodes{}
	// ErrNoFirstPass: a delta pass was asked for a volume without a completed full pass.
	ErrNoFirstPass = errors.New("no completed full pass in the volume")
	// ErrRefused: a copy-back refused before changing anything (the target is
	// not a directory or is a mount point, its parent is not writable or can't
	// exchange directories atomically, a name it needs is taken, the volume
	// holds unfinished copy state; the engine side adds: the volume does not
	// exist, a running container uses the volume or the target).
	ErrRefused = errors.New("copy-back refused, nothing changed")
)

type noInodes struct{}

func (noInodes) Error() string { return "not enough inodes in the volume" }
func (noInodes) Unwrap() error { return ErrNoSpace }

// Pass is a copy pass.
type Pass string

const (
	// PassFull empties the volume (but for StateDir) and copies everything.
	PassFull Pass = "full"
	// PassDelta copies what changed since the previous pass's manifest.
	PassDelta Pass = "delta"
)

// Progress reports a running copy. Totals are known for the full pass only (0 otherwise).
type Progress struct {
	Pass       Pass  `json:"pass"`
	Bytes      int64 `json:"bytes"`
	TotalBytes int64 `json:"total_bytes,omitempty"`
	Files      int64 `json:"files"`
	TotalFiles int64 `json:"total_files,omitempty"`
}

// CopyResult is what a pass did.
type CopyResult struct {
	Pass     Pass          `json:"pass"`
	Bytes    int64         `json:"bytes"`    // data bytes copied (holes excluded)
	Files    int64         `json:"files"`    // entries created
	Duration time.Duration `json:"duration"` // inside the helper
	// Delta pass only: source paths added, changed (content, metadata or type) and removed.
	Added   []string `json:"added,omitempty"`
	Changed []string `json:"changed,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Warnings: entries not copied (other mounts, device nodes where mknod is refused,
	// sockets) and entries that vanished during the copy.
	Warnings []string `json:"warnings,omitempty"`
}

// VerifyReport is what Verify compared.
type VerifyReport struct {
	Entries     int           `json:"entries"`               // source entries compared
	Hashed      int           `json:"hashed"`                // regular files whose content hashes were compared
	Differences []string      `json:"differences,omitempty"` // empty when the volume matches
	Warnings    []string      `json:"warnings,omitempty"`
	Duration    time.Duration `json:"duration"`
}

// Space is the room on a file system, as statfs(2) reports it to an
// unprivileged writer.
type Space struct {
	Free       int64 `json:"free"`        // bytes available
	Total      int64 `json:"total"`       // bytes in all
	FreeInodes int64 `json:"free_inodes"` // inodes available (0 on file systems without a limit)
}
