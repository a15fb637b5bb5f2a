package remount

// Layer records: the engine's diff of a container lists what its writable layer
// changed against its image; a container that runs a remount snapshot has more
// of its own changes in the snapshot's layers, which no engine call lists. So
// every snapshot (and every rebased image) gets a record of what it changes
// against its base image — the parent's record merged with the diff of the
// committed container — in <StateDir>/<project>/layers/<image id>.json; a
// rebase of a container on a snapshot merges that record with the container's
// diff. Without a record (a snapshot made before records existed, a lost state
// directory) a rebase of such a container is refused.

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/statefile"
)

// layerRecord is what an image changes against its base image.
type layerRecord struct {
	Base    string                          `json:"base"` // the base image's ID
	Changes map[string]container.ChangeType `json:"changes"`
}

func layerRecordPath(project, imageID string) string {
	return filepath.Join(statefile.ProjectDir(project), "layers", strings.TrimPrefix(imageID, "sha256:")+".json")
}

func loadLayerRecord(project, imageID string) (*layerRecord, error) {
	var rec layerRecord
	ok, err := statefile.Load(layerRecordPath(project, imageID), &rec)
	if !ok || err != nil {
		return nil, err
	}
	return &rec, nil
}

// mergeChanges applies diff (against the image the container runs) to rec
// (what that image changes against its base), giving what the container
// changes against the base.
func mergeChanges(rec map[string]container.ChangeType, diff []container.FilesystemChange) map[string]container.ChangeType {
	out := map[string]container.ChangeType{}
	for p, k := range rec {
		out[p] = k
	}
	for _, ch := range diff {
		p, was, had := ch.Path, out[ch.Path], false
		_, had = out[ch.Path]
		switch ch.Kind {
		case container.ChangeAdd:
			if had && was == container.ChangeDelete {
				out[p] = container.ChangeModify // in the base, deleted, then made again
			} else {
				out[p] = container.ChangeAdd
			}
		case container.ChangeModify:
			if !(had && was == container.ChangeAdd) {
				out[p] = container.ChangeModify
			}
		case container.ChangeDelete:
			for q := range out {
				if strings.HasPrefix(q, p+"/") {
					delete(out, q)
				}
			}
			if had && was == container.ChangeAdd {
				delete(out, p) // added by an earlier layer: not in the base at all
			} else {
				out[p] = container.ChangeDelete
			}
		}
	}
	return out
}

func changeList(m map[string]container.ChangeType) []container.FilesystemChange {
	out := make([]container.FilesystemChange, 0, len(m))
	for p, k := range m {
		out = append(out, container.FilesystemChange{Path: p, Kind: k})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Path < out[b].Path })
	return out
}

// recordSnapshot records what the snapshot just committed changes against its
// base: the record of the image the old container ran (none when that is the
// base itself) merged with the container's diff. Best effort: without a record
// only a later rebase is refused.
func (r *run) recordSnapshot(ctx context.Context, base string) {
	eng, ok := r.eng.(rebaseEngine)
	if !ok || r.j.SnapshotID == "" {
		return
	}
	var old container.InspectResponse
	if json.Unmarshal(r.j.Old, &old) != nil {
		return
	}
	prev := map[string]container.ChangeType{}
	if old.Image != base {
		rec, err := loadLayerRecord(r.j.Project, old.Image)
		if err != nil || rec == nil || rec.Base != base {
			return
		}
		prev = rec.Changes
	}
	diff, err := eng.ContainerDiff(ctx, r.j.OldID, client.ContainerDiffOptions{})
	if err != nil {
		return
	}
	statefile.Save(layerRecordPath(r.j.Project, r.j.SnapshotID), &layerRecord{Base: base, Changes: mergeChanges(prev, diff.Changes)})
}
