package remount

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

type mountT = mount.Mount

// snapshotRepo is the image repository of a service's snapshots.
func snapshotRepo(project, service string) string {
	return "moltctl-snapshot/" + strings.ToLower(project) + "-" + strings.ToLower(service)
}

func snapshotTag(project, service string, seq int) string {
	return fmt.Sprintf("%s:%d", snapshotRepo(project, service), seq)
}

// snapshots lists the service's snapshot images, newest (highest seq) first.
func snapshots(ctx context.Context, eng Engine, project, service string) ([]snapshotInfo, error) {
	f := client.Filters{}
	f.Add("label", LabelProject+"="+project, LabelService+"="+service)
	res, err := eng.ImageList(ctx, client.ImageListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing the snapshots of %s: %w", service, err)
	}
	var out []snapshotInfo
	for _, im := range res.Items {
		seq, _ := strconv.Atoi(im.Labels[LabelSeq])
		out = append(out, snapshotInfo{ID: im.ID, Tags: im.RepoTags, Seq: seq, Created: im.Created})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq > out[b].Seq })
	return out, nil
}

type snapshotInfo struct {
	ID      string
	Tags    []string
	Seq     int
	Created int64
}

func (r *run) nextSeq(ctx context.Context) (int, error) {
	ss, err := snapshots(ctx, r.eng, r.opts.Project.Name, r.opts.Service)
	if err != nil {
		return 0, err
	}
	if len(ss) == 0 {
		return 1, nil
	}
	return ss[0].Seq + 1, nil
}

// baseConfig is the base image's config as a container config: what commit gets,
// so that the snapshot's Cmd, Entrypoint, User… are the image's, not the container's.
func (r *run) baseConfig(ctx context.Context) (*container.Config, error) {
	base, baseID := r.j.BaseImage, r.j.BaseImageID
	if r.j.Rebase != nil {
		// The snapshot holds the layer on the old image: that is its lineage.
		// (rebaseLayer sets the new image's on the rebased one.)
		base, baseID = r.j.Rebase.OldImage, r.j.Rebase.OldImage
	}
	im, err := r.eng.ImageInspect(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("inspecting the base image %s: %w", base, err)
	}
	cfg := &container.Config{}
	if im.Config != nil {
		b, err := json.Marshal(im.Config)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, cfg); err != nil {
			return nil, fmt.Errorf("reading the config of %s: %w", r.j.BaseImage, err)
		}
	}
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	labels[LabelProject] = r.j.Project
	labels[LabelService] = r.j.Service
	labels[LabelSource] = r.j.OldName + " (" + r.j.OldID + ")"
	labels[LabelBaseImage] = base
	labels[LabelBaseImageID] = baseID
	labels[LabelParent] = r.j.Parent
	labels[LabelSeq] = strconv.Itoa(r.j.Seq)
	cfg.Labels = labels
	return cfg, nil
}

// snapshot commits (or with Flatten exports and imports) the stopped old
// container into the versioned snapshot tag and records its ID.
func (r *run) snapshot(ctx context.Context) error {
	cfg, err := r.baseConfig(ctx)
	if err != nil {
		return err
	}
	if r.j.Flatten {
		id, err := r.flatten(ctx, cfg)
		if err != nil {
			return err
		}
		r.j.SnapshotID = id
		r.recordSnapshot(ctx, cfg.Labels[LabelBaseImageID])
		return nil
	}
	var old container.InspectResponse
	if err := json.Unmarshal(r.j.Old, &old); err == nil && old.Config != nil {
		maskContainerConfig(cfg, old.Config)
	}
	res, err := commit(ctx, r.eng, r.j.OldID, client.ContainerCommitOptions{
		Reference: r.j.SnapshotTag, NoPause: true, Config: cfg,
		Comment: "moltctl remount snapshot of " + r.j.OldName,
	})
	if err != nil {
		return err
	}
	r.j.SnapshotID = res.ID
	r.recordSnapshot(ctx, cfg.Labels[LabelBaseImageID])
	return nil
}

// maskContainerConfig keeps the container's own env values and labels out of
// a commit: the engine adds to the committed config every env key and label of
// the container that the given config lacks (compose's environment: API keys,
// passwords), so each such key is set empty here instead. Compose gives every
// container it creates its env and labels again; the keys stay (see
// Result.LeftoverEnv), their values do not.
func maskContainerConfig(cfg, ctr *container.Config) {
	has := map[string]bool{}
	for _, e := range cfg.Env {
		k, _, _ := strings.Cut(e, "=")
		has[k] = true
	}
	for _, e := range ctr.Env {
		if k, _, _ := strings.Cut(e, "="); !has[k] {
			cfg.Env = append(cfg.Env, k+"=")
			has[k] = true
		}
	}
	for k := range ctr.Labels {
		if _, ok := cfg.Labels[k]; !ok {
			cfg.Labels[k] = ""
		}
	}
}

// flatten exports the container's filesystem and imports it as a one-layer image
// with cfg expressed as Dockerfile changes.
func (r *run) flatten(ctx context.Context, cfg *container.Config) (string, error) {
	rc, err := r.eng.ContainerExport(ctx, r.j.OldID, client.ContainerExportOptions{})
	if err != nil {
		return "", fmt.Errorf("exporting the filesystem: %w", err)
	}
	defer rc.Close()
	out, err := r.eng.ImageImport(ctx, client.ImageImportSource{Source: rc, SourceName: "-"}, r.j.SnapshotTag,
		client.ImageImportOptions{Changes: changes(cfg), Message: "moltctl remount --flatten of " + r.j.OldName})
	if err != nil {
		return "", fmt.Errorf("importing the filesystem: %w", err)
	}
	defer out.Close()
	body, err := io.ReadAll(out)
	if err != nil {
		return "", fmt.Errorf("importing the filesystem: %w", err)
	}
	var msg struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	for _, line := range strings.Split(string(body), "\n") {
		if json.Unmarshal([]byte(line), &msg) == nil && msg.Error != "" {
			return "", fmt.Errorf("importing the filesystem: %s", msg.Error)
		}
	}
	im, err := r.eng.ImageInspect(ctx, r.j.SnapshotTag)
	if err != nil {
		return "", fmt.Errorf("inspecting the flattened snapshot: %w", err)
	}
	return im.ID, nil
}

func changes(cfg *container.Config) []string {
	q := func(v []string) string { b, _ := json.Marshal(v); return string(b) }
	var ch []string
	for _, e := range cfg.Env {
		k, v, _ := strings.Cut(e, "=")
		ch = append(ch, "ENV "+k+"="+dockerfileQuote(v))
	}
	if len(cfg.Entrypoint) > 0 {
		ch = append(ch, "ENTRYPOINT "+q(cfg.Entrypoint))
	}
	if len(cfg.Cmd) > 0 {
		ch = append(ch, "CMD "+q(cfg.Cmd))
	}
	if cfg.User != "" {
		ch = append(ch, "USER "+cfg.User)
	}
	if cfg.WorkingDir != "" {
		ch = append(ch, "WORKDIR "+cfg.WorkingDir)
	}
	if cfg.StopSignal != "" {
		ch = append(ch, "STOPSIGNAL "+cfg.StopSignal)
	}
	for p := range cfg.ExposedPorts {
		ch = append(ch, "EXPOSE "+fmt.Sprint(p))
	}
	for v := range cfg.Volumes {
		ch = append(ch, "VOLUME "+q([]string{v}))
	}
	keys := make([]string, 0, len(cfg.Labels))
	for k := range cfg.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch = append(ch, "LABEL "+dockerfileQuote(k)+"="+dockerfileQuote(cfg.Labels[k]))
	}
	return ch
}

// dockerfileQuote quotes s for a Dockerfile ENV or LABEL instruction: double
// quotes, with backslash, double quote and $ (no variable expansion) escaped.
func dockerfileQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`)
	return `"` + r.Replace(s) + `"`
}

// leftovers names the env keys and labels the snapshot carries that neither the
// new container's config nor the base image sets (keys only).
func (r *run) leftovers(ctx context.Context) {
	_, running := r.cloneImage() // the rebased image after a rebase
	snap, err := r.eng.ImageInspect(ctx, running)
	if err != nil || snap.Config == nil {
		return
	}
	r.res.Layers = len(snap.RootFS.Layers)
	var want container.InspectResponse
	if json.Unmarshal(r.j.New, &want) != nil || want.Config == nil {
		return
	}
	base, _ := r.eng.ImageInspect(ctx, r.j.BaseImage)
	var baseEnv []string
	var baseLabels map[string]string
	if base.Config != nil {
		baseEnv, baseLabels = base.Config.Env, base.Config.Labels
	}
	r.res.LeftoverEnv, r.res.LeftoverLabels = bakedKeys(snap.Config.Env, snap.Config.Labels, want.Config.Env, want.Config.Labels, baseEnv, baseLabels)
}

// bakedKeys returns the env keys and label keys in the image that neither the
// container's intended config nor the base image has, sorted; moltctl's own
// snapshot labels are not counted.
func bakedKeys(imgEnv []string, imgLabels map[string]string, wantEnv []string, wantLabels map[string]string, baseEnv []string, baseLabels map[string]string) (env, labels []string) {
	has := map[string]bool{}
	for _, e := range append(append([]string{}, wantEnv...), baseEnv...) {
		k, _, _ := strings.Cut(e, "=")
		has[k] = true
	}
	for _, e := range imgEnv {
		k, _, _ := strings.Cut(e, "=")
		if !has[k] {
			env = append(env, k)
		}
	}
	for k := range imgLabels {
		if strings.HasPrefix(k, "io.moltctl.snapshot.") {
			continue
		}
		if _, ok := wantLabels[k]; ok {
			continue
		}
		if _, ok := baseLabels[k]; ok {
			continue
		}
		labels = append(labels, k)
	}
	sort.Strings(env)
	sort.Strings(labels)
	return env, labels
}

// removeSnapshot removes a snapshot by its tags: an older snapshot is the
// parent of the newer ones (each commit is on top of the previous), so the
// engine refuses to remove its ID ("image has dependent child images"), but
// untags it; its layers stay as long as a newer snapshot needs them. It reports
// whether every tag went.
func removeSnapshot(ctx context.Context, eng Engine, s snapshotInfo) bool {
	refs := s.Tags
	if len(refs) == 0 {
		refs = []string{s.ID}
	}
	ok := true
	for _, ref := range refs {
		if _, err := eng.ImageRemove(ctx, ref, client.ImageRemoveOptions{}); err != nil {
			ok = false
		}
	}
	return ok
}

// prune removes the service's snapshots beyond Keep, never the running one or
// its parent, and returns the tags removed.
func (r *run) prune(ctx context.Context) []string {
	ss, err := snapshots(ctx, r.eng, r.j.Project, r.j.Service)
	if err != nil {
		return nil
	}
	var removed []string
	kept := 0
	for _, s := range ss {
		inUse := s.ID == r.j.SnapshotID
		for _, t := range s.Tags {
			if t == r.j.Parent {
				inUse = true
			}
		}
		if inUse || kept < r.opts.Keep {
			kept++
			continue
		}
		if removeSnapshot(ctx, r.eng, s) {
			removed = append(removed, strings.Join(s.Tags, ","))
		}
	}
	return removed
}
