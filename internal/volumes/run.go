package volumes

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/helperfs"
)

// HelperImageRepo is the repository of the helper image; its tag is the first
// 16 hex digits of the binary's sha256, so a changed binary gets a new image.
const HelperImageRepo = "moltctl-helper"

// helperCaps are the only capabilities the helper keeps: read everything in the
// source, create and chown in the volume, set modes, file capabilities and
// device nodes.
var helperCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETFCAP"}

// helperBinary resolves and checks the helper binary.
func helperBinary(o HelperOptions) (string, error) {
	p := o.Binary
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding moltctl's own binary for the helper image: %w", err)
		}
		p = exe
	}
	p, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("helper binary: %w", err)
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("helper binary %s: not a linux executable: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("helper binary %s: %w: build moltctl with CGO_ENABLED=0", p, ErrNotStatic)
		}
	}
	return p, nil
}

// EnsureHelper makes sure the helper image for the binary exists, importing
// the binary as a one-layer image when it does not, and returns its reference.
// Copy, Verify, Create and Finish call it; the image is kept for the next call
// and removed by RemoveHelper.
func EnsureHelper(ctx context.Context, eng Engine, o HelperOptions) (string, error) {
	ref, p, err := helperRef(o)
	if err != nil {
		return "", err
	}
	if _, err := eng.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !isNotFound(err) {
		return "", fmt.Errorf("inspecting the helper image %s: %w", ref, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading the helper binary: %w", err)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	hdr := &tar.Header{Name: "moltctl", Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return "", err
	}
	tw.Write(data)
	tw.Close()
	rc, err := eng.ImageImport(ctx, client.ImageImportSource{Source: &b, SourceName: "-"}, ref,
		client.ImageImportOptions{Message: "moltctl copy helper", Changes: []string{
			`ENTRYPOINT ["/moltctl", "copy-helper"]`, "LABEL " + LabelHelper + "=image"}})
	if err != nil {
		return "", fmt.Errorf("importing the helper image %s: %w", ref, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("importing the helper image %s: %w", ref, err)
		}
		if msg.Error != "" {
			return "", fmt.Errorf("importing the helper image %s: %s", ref, msg.Error)
		}
	}
	return ref, nil
}

// RemoveHelper removes the helper image of the binary, if present and unused.
// Call it when a migration is done; Copy and Verify import it again when
// needed. An image a container still uses (another moltctl run of the same
// binary, on another project) is left for that run: no error.
func RemoveHelper(ctx context.Context, eng Engine, o HelperOptions) error {
	ref, _, err := helperRef(o)
	if err != nil {
		return err
	}
	if _, err := eng.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !isNotFound(err) && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("removing the helper image %s: %w", ref, err)
	}
	return nil
}

// helperRef checks the helper binary and returns the image reference for it
// and its path. The hash is remembered per path, size and mtime.
func helperRef(o HelperOptions) (string, string, error) {
	p, err := helperBinary(o)
	if err != nil {
		return "", "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", "", fmt.Errorf("reading the helper binary: %w", err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", p, fi.Size(), fi.ModTime().UnixNano())
	refMu.Lock()
	defer refMu.Unlock()
	if ref, ok := refCache[key]; ok {
		return ref, p, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", "", fmt.Errorf("reading the helper binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", fmt.Errorf("reading the helper binary: %w", err)
	}
	ref := HelperImageRepo + ":" + hex.EncodeToString(h.Sum(nil)[:8])
	refCache[key] = ref
	return ref, p, nil
}

var (
	refMu    sync.Mutex
	refCache = map[string]string{}
)

// isNotFound reports an engine "not found" answer.
func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// helperRun is one run of the helper container.
type helperRun struct {
	req      helperfs.Request
	source   string // host directory bound read-only at /from ("" for none)
	volume   string // volume mounted at /to
	readOnly bool   // mount the volume read-only
	progress func(Progress)
	helper   HelperOptions
	// mounts, when set, replace the mounts made of source and volume (CopyBack
	// binds the target's parent); volume still names the helper for cleanup.
	mounts []mount.Mount
}

// runHelperContainer runs the helper and returns its result line: it removes
// a helper an interrupted run left on the volume, creates and starts the
// container, relays its progress lines and reads its result. The container
// is removed whatever happens, with a context of its own.
func runHelperContainer(ctx context.Context, eng Engine, r helperRun) (*helperfs.Line, error) {
	ref, err := EnsureHelper(ctx, eng, r.helper)
	if err != nil {
		return nil, err
	}
	if err := removeLeftHelpers(ctx, eng, r.volume); err != nil {
		return nil, err
	}
	id, err := createHelper(ctx, eng, ref, r)
	if err != nil {
		return nil, err
	}
	defer removeHelperContainer(eng, id)
	att, err := eng.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, fmt.Errorf("attaching to the helper container: %w", err)
	}
	defer att.Close()
	wait := eng.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	if _, err := eng.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("starting the helper container: %w", err)
	}
	result, stderr := readHelperLines(att.Reader, r.progress)
	code, err := waitHelper(ctx, wait)
	if err != nil {
		return nil, err
	}
	return helperResult(result, code, stderr)
}

// helperMounts are the helper's mounts: the volume at /to and the source, if
// any, read-only at /from; or r.mounts when set.
func helperMounts(r helperRun) []mount.Mount {
	if r.mounts != nil {
		return r.mounts
	}
	mounts := []mount.Mount{{Type: mount.TypeVolume, Source: r.volume, Target: helperfs.To, ReadOnly: r.readOnly,
		VolumeOptions: &mount.VolumeOptions{NoCopy: true}}}
	if r.source != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: r.source, Target: helperfs.From, ReadOnly: true})
	}
	return mounts
}

// removeLeftHelpers removes the helper containers a moltctl killed with -9
// left on the volume: they must not write beside this one.
func removeLeftHelpers(ctx context.Context, eng Engine, volume string) error {
	left, err := eng.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", LabelHelperVolume+"="+volume)})
	if err != nil {
		return fmt.Errorf("listing helper containers: %w", err)
	}
	for _, c := range left.Items {
		if _, err := eng.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return fmt.Errorf("removing the helper container left by an interrupted run: %w", err)
		}
	}
	return nil
}

// createHelper creates the helper container for r from the image ref.
func createHelper(ctx context.Context, eng Engine, ref string, r helperRun) (string, error) {
	arg, err := json.Marshal(r.req)
	if err != nil {
		return "", fmt.Errorf("encoding the helper request: %w", err)
	}
	created, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       "moltctl-helper-" + randHex(),
		Config:     helperConfig(ref, []string{string(arg)}, map[string]string{LabelHelper: r.req.Op, LabelHelperVolume: r.volume}),
		HostConfig: helperHostConfig(helperMounts(r)),
	})
	if err != nil {
		return "", fmt.Errorf("creating the helper container: %w", err)
	}
	return created.ID, nil
}

// helperConfig is the helper container's config: moltctl copy-helper ARGS as root.
func helperConfig(ref string, args []string, labels map[string]string) *container.Config {
	return &container.Config{
		Image: ref, Entrypoint: []string{"/moltctl", "copy-helper"}, Cmd: args,
		User: "0:0", WorkingDir: "/", AttachStdout: true, AttachStderr: true, Labels: labels,
	}
}

// helperHostConfig confines the helper: no network, a read-only root, only
// helperCaps, no new privileges; AutoRemove, so that the engine removes it
// even when moltctl is killed before its deferred remove.
func helperHostConfig(mounts []mount.Mount) *container.HostConfig {
	return &container.HostConfig{
		Mounts: mounts, NetworkMode: "none", ReadonlyRootfs: true, AutoRemove: true,
		CapDrop: []string{"ALL"}, CapAdd: helperCaps, SecurityOpt: []string{"no-new-privileges"},
	}
}

// removeHelperContainer removes the helper and waits until it is gone: with
// AutoRemove the engine may still be removing it, and the volume can't be
// removed (abort) while it exists.
func removeHelperContainer(eng Engine, id string) {
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true})
	for rctx.Err() == nil {
		if _, err := eng.ContainerInspect(rctx, id, client.ContainerInspectOptions{}); isNotFound(err) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readHelperLines reads the helper's multiplexed output until it ends: its
// progress lines go to progress, its last other line is the result; what is
// not a line of JSON is kept as its stderr.
func readHelperLines(stream io.Reader, progress func(Progress)) (*helperfs.Line, string) {
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	go func() {
		_, err := stdcopy.StdCopy(pw, &stderr, stream)
		pw.CloseWithError(err)
	}()
	var result *helperfs.Line
	br := bufio.NewReaderSize(pr, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var l helperfs.Line
			if jerr := json.Unmarshal(line, &l); jerr != nil {
				stderr.Write(line)
			} else if l.Progress != nil {
				if progress != nil {
					progress(*l.Progress)
				}
			} else {
				result = &l
			}
		}
		if err != nil {
			break
		}
	}
	return result, stderr.String()
}

// waitHelper waits for the helper's exit status.
func waitHelper(ctx context.Context, wait client.ContainerWaitResult) (int64, error) {
	select {
	case w := <-wait.Result:
		return w.StatusCode, nil
	case err := <-wait.Error:
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("waiting for the helper container: %w", err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// helperResult turns the helper's result line, exit status and stderr into
// the result or an error, carrying the sentinel the line's kind names.
func helperResult(result *helperfs.Line, code int64, stderr string) (*helperfs.Line, error) {
	if result != nil && result.Error != "" {
		e := helperfs.KindError(result.Kind)
		switch {
		case e == nil:
			return nil, errors.New(result.Error)
		case !strings.Contains(result.Error, e.Error()):
			return nil, fmt.Errorf("%w: %s", e, result.Error)
		default:
			return nil, &helperError{msg: result.Error, kind: e}
		}
	}
	if code != 0 || result == nil {
		msg := strings.TrimSpace(stderr)
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return nil, fmt.Errorf("the helper container exited with status %d: %s", code, msg)
	}
	return result, nil
}

// helperError carries a helper's message and its sentinel.
type helperError struct {
	msg  string
	kind error
}

func (e *helperError) Error() string { return e.msg }
func (e *helperError) Unwrap() error { return e.kind }

func randHex() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
