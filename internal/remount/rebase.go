package remount

// Rebase: carry a container's writable layer onto a new image of its service.
// The cost follows the layer, not the image: the layer's paths come from the
// engine's container diff, each is read from the container with a per-path
// archive (tar keeps ownership, modes and xattrs as PAX records), and the old and
// new images are compared only at those paths, through two containers created
// (never started) from them. The changes are applied to a third container
// created from the new image — copied in with one archive, deletions made by the
// image's own rm — which is committed as the rebased image. No overlay2 path is
// read, so it works on any image store.

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/statefile"
)

// Conflict policies (Options.RebaseConflicts): which side wins at a path the
// layer changed and the new image changed too, compared with the old image.
const (
	// ConflictsImage (the default): the new image's version stays. The new
	// image's files are consistent with each other (an old library or config
	// under a new program can break it in ways that are hard to see), and the
	// layer's version is not lost: it stays in the snapshot of the previous
	// container, which is kept.
	ConflictsImage = "image"
	// ConflictsLayer: the layer's version (or its deletion) is applied over
	// the new image's.
	ConflictsLayer = "layer"
)

// rebasePrefix starts the names of the temporary containers a rebase creates
// (not a label: a commit would carry it into the rebased image's config, and
// from there into the service's container).
func rebasePrefix(project, service string) string {
	return "moltctl-rebase-" + strings.ToLower(project) + "-" + strings.ToLower(service) + "-"
}

// ErrRebaseSnapshot: the container runs a remount snapshot without a layer
// record (layers.go): what its earlier layers changed is not known.
var ErrRebaseSnapshot = errors.New("rebase of a container that runs a remount snapshot without a layer record is not supported")

// RebaseResult says what a rebase carries and its conflicts.
type RebaseResult struct {
	OldImage  string     `json:"old_image"`
	NewImage  string     `json:"new_image"`
	Image     string     `json:"image,omitempty"` // the rebased image's tag
	Policy    string     `json:"policy"`
	Added     int        `json:"added"`
	Changed   int        `json:"changed"`
	Deleted   int        `json:"deleted"`
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

// Conflict is a path the layer changed that the new image changed too.
type Conflict struct {
	Path   string `json:"path"`
	Layer  string `json:"layer"`  // added, changed, deleted
	Winner string `json:"winner"` // image or layer
}

// rebaseState is the journal's record of a rebase.
type rebaseState struct {
	OldImage string `json:"old_image"`          // ID of the image the layer sits on (the snapshot's base)
	Snapshot string `json:"snapshot,omitempty"` // the remount snapshot the container runs, if any
	NewImage string `json:"new_image"`          // ID of the service's image now
	Policy   string `json:"policy"`
	Tag      string `json:"tag"`
	ID       string `json:"id,omitempty"` // the rebased image, once committed
}

// rebaseEngine is what a rebase needs beyond Engine; *client.Client has it.
type rebaseEngine interface {
	Engine
	ContainerDiff(ctx context.Context, id string, options client.ContainerDiffOptions) (client.ContainerDiffResult, error)
	CopyFromContainer(ctx context.Context, id string, options client.CopyFromContainerOptions) (client.CopyFromContainerResult, error)
	CopyToContainer(ctx context.Context, id string, options client.CopyToContainerOptions) (client.CopyToContainerResult, error)
	ContainerWait(ctx context.Context, id string, options client.ContainerWaitOptions) client.ContainerWaitResult
}

// cloneImage is the image the clone is created on: the rebased one, else the snapshot.
func (r *run) cloneImage() (tag, id string) {
	if r.j.Rebase != nil && r.j.Rebase.ID != "" {
		return r.j.Rebase.Tag, r.j.Rebase.ID
	}
	return r.j.SnapshotTag, r.j.SnapshotID
}

// preflightRebase checks a rebase of container c (created from oldImage) onto
// the service's image and lists its conflicts, changing nothing.
func (r *run) preflightRebase(ctx context.Context, c container.InspectResponse, lineage string) error {
	snapshot := ""
	if lineage != c.Image {
		// A remount snapshot: its own changes come from its layer record.
		rec, err := loadLayerRecord(r.j.Project, c.Image)
		if err != nil {
			return err
		}
		if lineage == "" || rec == nil || rec.Base != lineage {
			return fmt.Errorf("container %s: %w (no record of what its earlier remounts changed): recreate it with docker compose up (the writable layer is lost)",
				strings.TrimPrefix(c.Name, "/"), ErrRebaseSnapshot)
		}
		snapshot = c.Image
	}
	pol := r.opts.RebaseConflicts
	if pol == "" {
		pol = ConflictsImage
	}
	if pol != ConflictsImage && pol != ConflictsLayer {
		return fmt.Errorf("conflict policy %q: want %q or %q", pol, ConflictsImage, ConflictsLayer)
	}
	if _, ok := r.eng.(rebaseEngine); !ok {
		return fmt.Errorf("rebase: %w: the engine client can't diff or copy", ErrUnsupported)
	}
	r.j.Rebase = &rebaseState{OldImage: lineage, Snapshot: snapshot, NewImage: r.j.BaseImageID, Policy: pol, Tag: snapshotTag(r.j.Project, r.j.Service, r.j.Seq+1)}
	pl, err := r.planRebase(ctx, r.j.OldID)
	if err != nil {
		return fmt.Errorf("planning the rebase of %s: %w", r.j.OldName, err)
	}
	r.res.Rebase = pl.result
	r.res.Plan = append(r.res.Plan[:2:2],
		fmt.Sprintf("rebase the layer onto %s (%.19s): %d added, %d changed, %d deleted; %d conflicts, the %s wins",
			r.j.BaseImage, r.j.BaseImageID, pl.result.Added, pl.result.Changed, pl.result.Deleted, len(pl.result.Conflicts), pol),
		fmt.Sprintf("commit it as %s", r.j.Rebase.Tag))
	for _, cf := range pl.result.Conflicts {
		r.res.Plan = append(r.res.Plan, fmt.Sprintf("conflict %q: the layer %s it, the new image changed it: the %s wins", cf.Path, cf.Layer, cf.Winner))
	}
	r.res.Plan = append(r.res.Plan, fmt.Sprintf("docker compose up --no-start --no-deps --force-recreate %s", r.j.Service),
		fmt.Sprintf("clone compose's container onto %s as %s, start it, wait up to %s", r.j.Rebase.Tag, r.j.OldName, r.opts.WaitTimeout))
	return nil
}

// rebaseOp is one change to apply: copy path (whole, or its own header only),
// or delete it.
type rebaseOp struct {
	path       string
	headerOnly bool
	delete     bool
}

type rebasePlan struct {
	ops     []rebaseOp
	result  *RebaseResult
	changes []container.FilesystemChange // against the old image
}

// planRebase lists what the layer of container id changes and compares the
// old and new images at those paths.
func (r *run) planRebase(ctx context.Context, id string) (*rebasePlan, error) {
	eng := r.eng.(rebaseEngine)
	changes, err := r.rebaseChanges(ctx, eng, id)
	if err != nil {
		return nil, err
	}
	p := r.newRebasePlanner(ctx, eng, id, changes)
	defer p.removeTemps()
	for _, ch := range changes {
		if err := p.plan(ch); err != nil {
			return nil, err
		}
	}
	return p.pl, nil
}

// rebaseChanges lists what the writable layer of container id changes, sorted
// by path: its diff, merged with the snapshot's layer record when the layer
// was restored from one.
func (r *run) rebaseChanges(ctx context.Context, eng rebaseEngine, id string) ([]container.FilesystemChange, error) {
	rs := r.j.Rebase
	diff, err := eng.ContainerDiff(ctx, id, client.ContainerDiffOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the writable layer: %w", err)
	}
	changes := diff.Changes
	if rs.Snapshot != "" {
		rec, err := loadLayerRecord(r.j.Project, rs.Snapshot)
		if err != nil || rec == nil {
			return nil, fmt.Errorf("reading the layer record of %.19s: %w", rs.Snapshot, errors.Join(err, ErrRebaseSnapshot))
		}
		changes = changeList(mergeChanges(rec.Changes, diff.Changes))
	}
	sort.Slice(changes, func(a, b int) bool { return changes[a].Path < changes[b].Path })
	return changes, nil
}

// rebasePlanner builds a rebasePlan one layer change at a time.
type rebasePlanner struct {
	r    *run
	ctx  context.Context
	eng  rebaseEngine
	id   string // the container whose layer is rebased
	rs   *rebaseState
	tmps map[string]string // image -> container made to read its entries
	pl   *rebasePlan
	done []string // paths whose subtree is handled
}

func (r *run) newRebasePlanner(ctx context.Context, eng rebaseEngine, id string, changes []container.FilesystemChange) *rebasePlanner {
	// The images' entries are looked up through containers made on first need,
	// and kept: images don't change, so after the stop only the layer is read again.
	if r.imageEntries == nil {
		r.imageEntries = map[string]*fsEntry{}
	}
	rs := r.j.Rebase
	return &rebasePlanner{r: r, ctx: ctx, eng: eng, id: id, rs: rs, tmps: map[string]string{},
		pl: &rebasePlan{changes: changes, result: &RebaseResult{OldImage: rs.OldImage, NewImage: rs.NewImage, Policy: rs.Policy, Image: rs.Tag}}}
}

// removeTemps removes the containers made to read the images.
func (p *rebasePlanner) removeTemps() {
	for _, id := range p.tmps {
		p.r.removeContainer(context.WithoutCancel(p.ctx), id)
	}
}

// imageEntry is path's entry in image (nil when it has none), read through a
// container of the image made on first need.
func (p *rebasePlanner) imageEntry(image, path string) (*fsEntry, error) {
	key := image + "\x00" + path
	if e, ok := p.r.imageEntries[key]; ok {
		return e, nil
	}
	if p.tmps[image] == "" {
		id, err := p.r.tempContainer(p.ctx, image, nil)
		if err != nil {
			return nil, err
		}
		p.tmps[image] = id
	}
	e, err := entry(p.ctx, p.eng, p.tmps[image], path)
	if err == nil {
		p.r.imageEntries[key] = e
	}
	return e, err
}

// layerEntry is path's entry in the container (nil when it has none).
func (p *rebasePlanner) layerEntry(path string) (*fsEntry, error) {
	return entry(p.ctx, p.eng, p.id, path)
}

// under reports whether path is in a subtree already handled.
func (p *rebasePlanner) under(path string) bool {
	for _, d := range p.done {
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// handled marks path's subtree as handled.
func (p *rebasePlanner) handled(path string) { p.done = append(p.done, path) }

// conflict records that the layer and the new image both changed path, and
// reports whether the layer's version wins.
func (p *rebasePlanner) conflict(path, what string) bool {
	p.pl.result.Conflicts = append(p.pl.result.Conflicts, Conflict{Path: path, Layer: what, Winner: p.rs.Policy})
	return p.rs.Policy == ConflictsLayer
}

func (p *rebasePlanner) op(o rebaseOp) { p.pl.ops = append(p.pl.ops, o) }

// plan adds the ops for one layer change.
func (p *rebasePlanner) plan(ch container.FilesystemChange) error {
	if p.under(ch.Path) {
		return nil
	}
	switch ch.Kind {
	case container.ChangeAdd:
		return p.planAdd(ch.Path)
	case container.ChangeModify:
		return p.planModify(ch.Path)
	case container.ChangeDelete:
		return p.planDelete(ch.Path)
	}
	return nil
}

// planAdd copies a path the layer added, unless the new image has the same
// (or, on a conflict, its version wins); directories both add are handled
// entry by entry.
func (p *rebasePlanner) planAdd(path string) error {
	p.pl.result.Added++
	nw, err := p.imageEntry(p.rs.NewImage, path)
	if err != nil {
		return err
	}
	if nw == nil {
		p.op(rebaseOp{path: path})
		p.handled(path)
		return nil
	}
	ly, err := p.layerEntry(path)
	if err != nil {
		return err
	}
	if ly == nil {
		return nil // gone meanwhile
	}
	if ly.dir() && nw.dir() {
		// Both add the directory: its entries are handled one by one.
		if !ly.same(nw) && p.conflict(path, "added") {
			p.op(rebaseOp{path: path, headerOnly: true})
		}
		return nil
	}
	if !ly.same(nw) && p.conflict(path, "added") {
		p.op(rebaseOp{path: path})
	}
	p.handled(path)
	return nil
}

// planModify copies a path the layer changed (a directory's header only),
// unless the new image changed it too and its version wins.
func (p *rebasePlanner) planModify(path string) error {
	p.pl.result.Changed++
	ly, err := p.layerEntry(path)
	if err != nil {
		return err
	}
	old, err := p.imageEntry(p.rs.OldImage, path)
	if err != nil {
		return err
	}
	nw, err := p.imageEntry(p.rs.NewImage, path)
	if err != nil {
		return err
	}
	if ly == nil {
		return nil
	}
	if ly.dir() && old != nil && old.dir() && ly.sameHeader(old) {
		return nil // copied up for an entry below it: handled with those
	}
	if old.same(nw) || p.conflict(path, "changed") {
		p.op(rebaseOp{path: path, headerOnly: ly.dir()})
	}
	if !ly.dir() {
		p.handled(path)
	}
	return nil
}

// planDelete deletes a path the layer deleted from the new image, unless the
// new image changed it and its version wins.
func (p *rebasePlanner) planDelete(path string) error {
	p.pl.result.Deleted++
	p.handled(path)
	old, err := p.imageEntry(p.rs.OldImage, path)
	if err != nil {
		return err
	}
	nw, err := p.imageEntry(p.rs.NewImage, path)
	if err != nil {
		return err
	}
	if nw == nil {
		return nil // the new image does not have it either
	}
	if old.same(nw) || p.conflict(path, "deleted") {
		p.op(rebaseOp{path: path, delete: true})
	}
	return nil
}

// tempContainer creates (never starts) a container of image for the rebase;
// with rm set, starting it deletes those paths with the image's rm. What it
// overrides is chosen so that a commit of it leaks nothing that matters into
// the image's config: the commit takes the container's entrypoint when the
// image has none, and its cmd when the image has neither (the clone always sets
// compose's cmd).
func (r *run) tempContainer(ctx context.Context, image string, rm []string) (string, error) {
	im, err := r.eng.ImageInspect(ctx, image)
	if err != nil {
		return "", fmt.Errorf("inspecting image %.19s: %w", image, err)
	}
	cfg := &container.Config{Image: image, User: "0:0"}
	hasEntry := im.Config != nil && len(im.Config.Entrypoint) > 0
	switch {
	case len(rm) > 0 && hasEntry:
		cfg.Entrypoint, cfg.Cmd = []string{"rm", "-rf", "--"}, rm
	case len(rm) > 0:
		cfg.Cmd = append([]string{"rm", "-rf", "--"}, rm...)
	case !hasEntry && (im.Config == nil || len(im.Config.Cmd) == 0):
		cfg.Cmd = []string{"/moltctl-rebase-never-started"}
	}
	b := make([]byte, 4)
	rand.Read(b)
	res, err := r.eng.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, Name: rebasePrefix(r.j.Project, r.j.Service) + hex.EncodeToString(b),
		HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		return "", fmt.Errorf("creating a container of %.19s: %w", image, err)
	}
	return res.ID, nil
}

// fsEntry is a path's tar header and, for a regular file, its content's hash.
type fsEntry struct {
	hdr  *tar.Header
	hash string
}

func (e *fsEntry) dir() bool { return e != nil && e.hdr.Typeflag == tar.TypeDir }

func (e *fsEntry) sameHeader(o *fsEntry) bool {
	if e == nil || o == nil {
		return e == o
	}
	a, b := e.hdr, o.hdr
	if a.Typeflag != b.Typeflag || a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Linkname != b.Linkname {
		return false
	}
	return xattrKeys(a) == xattrKeys(b)
}

// same: same type, mode, owner, link target, xattrs and content (not mtime).
func (e *fsEntry) same(o *fsEntry) bool {
	return e.sameHeader(o) && (e == nil || e.hash == o.hash)
}

func xattrKeys(h *tar.Header) string {
	var kv []string
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			kv = append(kv, k+"="+v)
		}
	}
	sort.Strings(kv)
	return strings.Join(kv, "\x00")
}

// entry reads path's own entry in container id; nil when it does not exist.
func entry(ctx context.Context, eng rebaseEngine, id, p string) (*fsEntry, error) {
	res, err := eng.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: p})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %q: %w", p, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", p, err)
	}
	e := &fsEntry{hdr: hdr}
	if hdr.Typeflag == tar.TypeReg {
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil {
			return nil, fmt.Errorf("reading %q: %w", p, err)
		}
		e.hash = hex.EncodeToString(h.Sum(nil))
	}
	return e, nil
}

// rebaseLayer builds the rebased image from the stopped old container: the plan
// again (the layer may have changed since the preflight), the copies and
// deletions on a container of the new image, its commit.
func (r *run) rebaseLayer(ctx context.Context) error {
	eng := r.eng.(rebaseEngine)
	rs := r.j.Rebase
	r.cleanRebase(ctx)
	if im, err := r.eng.ImageInspect(ctx, rs.Tag); err == nil {
		// Left by a crash after the commit, before the journal write.
		if im.Config != nil && im.Config.Labels[LabelParent] == r.j.SnapshotTag {
			rs.ID = im.ID
			return nil
		}
		return fmt.Errorf("image %s exists and was not made by this rebase", rs.Tag)
	}
	pl, err := r.planRebase(ctx, r.j.OldID)
	if err != nil {
		return err
	}
	r.res.Rebase = pl.result
	var rm []string
	for _, op := range pl.ops {
		if op.delete {
			rm = append(rm, op.path)
		}
	}
	tmp, err := r.tempContainer(ctx, rs.NewImage, rm)
	if err != nil {
		return err
	}
	defer r.removeContainer(context.WithoutCancel(ctx), tmp)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.layerArchive(ctx, eng, pl.ops, pw)) }()
	_, err = eng.CopyToContainer(ctx, tmp, client.CopyToContainerOptions{DestinationPath: "/", Content: pr})
	pr.CloseWithError(errors.New("copy ended"))
	if err != nil {
		return fmt.Errorf("copying the layer's paths onto the new image: %w", err)
	}
	if len(rm) > 0 {
		if err := r.runRemove(ctx, eng, tmp); err != nil {
			return err
		}
	}
	r.j.Rebase = nil // baseConfig of the service's (new) image
	cfg, err := r.baseConfig(ctx)
	r.j.Rebase = rs
	if err != nil {
		return err
	}
	cfg.Labels[LabelParent] = r.j.SnapshotTag
	cfg.Labels[LabelSeq] = strconv.Itoa(r.j.Seq + 1)
	res, err := commit(ctx, r.eng, tmp, client.ContainerCommitOptions{Reference: rs.Tag, NoPause: true, Config: cfg,
		Comment: "moltctl rebase of " + r.j.OldName + "'s writable layer"})
	if err != nil {
		return fmt.Errorf("committing the rebased layer: %w", err)
	}
	rs.ID = res.ID
	// The rebased image's record: the layer's changes, less the paths where
	// the new image won.
	rec := map[string]container.ChangeType{}
	for _, ch := range pl.changes {
		rec[ch.Path] = ch.Kind
	}
	for _, cf := range pl.result.Conflicts {
		if cf.Winner == ConflictsImage {
			delete(rec, cf.Path)
		}
	}
	statefile.Save(layerRecordPath(r.j.Project, rs.ID), &layerRecord{Base: rs.NewImage, Changes: rec})
	return nil
}

// runRemove starts the temporary container whose entrypoint deletes the paths.
func (r *run) runRemove(ctx context.Context, eng rebaseEngine, id string) error {
	if _, err := eng.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("deleting the layer's deleted paths with the new image's rm: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	w := eng.ContainerWait(wctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case res := <-w.Result:
		if res.StatusCode != 0 {
			return fmt.Errorf("deleting the layer's deleted paths: rm exited with code %d", res.StatusCode)
		}
	case err := <-w.Error:
		return fmt.Errorf("deleting the layer's deleted paths: %w", err)
	}
	return nil
}

// layerArchive writes one tar of the ops' paths, read from the old container,
// with names from the root.
func (r *run) layerArchive(ctx context.Context, eng rebaseEngine, ops []rebaseOp, w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, op := range ops {
		if op.delete {
			continue
		}
		if err := copyPath(ctx, eng, r.j.OldID, op, tw); err != nil {
			return err
		}
	}
	return tw.Close()
}

func copyPath(ctx context.Context, eng rebaseEngine, id string, op rebaseOp, tw *tar.Writer) error {
	res, err := eng.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: op.path})
	if err != nil {
		return fmt.Errorf("reading %q from the layer: %w", op.path, err)
	}
	defer res.Content.Close()
	parent := strings.TrimPrefix(path.Dir(op.path), "/")
	rename := func(n string) string {
		if parent == "" {
			return n
		}
		return parent + "/" + n
	}
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %q from the layer: %w", op.path, err)
		}
		hdr.Name = rename(hdr.Name)
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = rename(hdr.Linkname)
		}
		hdr.Format = tar.FormatUnknown
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archiving %q: %w", op.path, err)
		}
		if op.headerOnly {
			return nil
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("archiving %q: %w", op.path, err)
		}
	}
}

// cleanRebase removes temporary containers an interrupted rebase of the service left.
func (r *run) cleanRebase(ctx context.Context) {
	prefix := rebasePrefix(r.j.Project, r.j.Service)
	f := client.Filters{}
	f.Add("name", "^/"+prefix)
	res, err := r.eng.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		if c.Labels["com.docker.compose.project"] != "" || !slices.ContainsFunc(c.Names, func(n string) bool { return strings.HasPrefix(n, "/"+prefix) }) {
			continue // never a service's container
		}
		r.removeContainer(ctx, c.ID)
	}
}

// planRebases fills res.Rebases with the dry-run remount of every container
// Up would rebase: what it carries and its conflicts.
func (res *UpResult) planRebases(ctx context.Context, eng UpEngine, opts UpOptions) error {
	if !opts.Rebase {
		return nil
	}
	seen := map[string]bool{}
	for _, pl := range res.Plan {
		if pl.Action != UpRebase || seen[pl.Service] {
			continue
		}
		seen[pl.Service] = true
		r, err := Run(ctx, eng, Options{Project: opts.Project, Service: pl.Service,
			Keep: opts.Keep, WaitTimeout: opts.WaitTimeout, Locked: true, DryRun: true, Rebase: true, RebaseConflicts: opts.RebaseConflicts})
		if err != nil {
			return fmt.Errorf("planning the rebase of %s: %w", pl.Service, err)
		}
		res.Rebases = append(res.Rebases, r)
	}
	return nil
}
