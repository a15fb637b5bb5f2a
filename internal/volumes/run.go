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
	req      helperRequest
	source   string // host directory bound read-only at /from ("" for none)
	volume   string // volume mounted at /to
	readOnly bool   // mount the volume read-only
	progress func(Progress)
	helper   HelperOptions
	// mounts, when set, replace the mounts made of source and volume (CopyBack
	// binds the target's parent); volume still names the helper for cleanup.
	mounts []mount.Mount
}

// runHelperContainer runs the helper and returns its result line. The
// container is removed whatever happens, with a context of its own.
func runHelperContainer(ctx context.Context, eng Engine, r helperRun) (*helperLine, error) {
	ref, err := EnsureHelper(ctx, eng, r.helper)
	if err != nil {
		return nil, err
	}
	arg, _ := json.Marshal(r.req)
	mounts := []mount.Mount{{Type: mount.TypeVolume, Source: r.volume, Target: helperTo, ReadOnly: r.readOnly,
		VolumeOptions: &mount.VolumeOptions{NoCopy: true}}}
	if r.source != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: r.source, Target: helperFrom, ReadOnly: true})
	}
	if r.mounts != nil {
		mounts = r.mounts
	}
	// a helper left by a moltctl killed with -9 must not write beside this one
	left, err := eng.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", LabelHelperVolume+"="+r.volume)})
	if err != nil {
		return nil, fmt.Errorf("listing helper containers: %w", err)
	}
	for _, c := range left.Items {
		if _, err := eng.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("removing the helper container left by an interrupted run: %w", err)
		}
	}
	name := "moltctl-helper-" + randHex()
	created, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image: ref, Entrypoint: []string{"/moltctl", "copy-helper"}, Cmd: []string{string(arg)},
			User: "0:0", WorkingDir: "/", AttachStdout: true, AttachStderr: true,
			Labels: map[string]string{LabelHelper: r.req.Op, LabelHelperVolume: r.volume},
		},
		HostConfig: &container.HostConfig{
			// AutoRemove: the engine removes it even when moltctl is killed before the deferred remove
			Mounts: mounts, NetworkMode: "none", ReadonlyRootfs: true, AutoRemove: true,
			CapDrop: []string{"ALL"}, CapAdd: helperCaps, SecurityOpt: []string{"no-new-privileges"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the helper container: %w", err)
	}
	defer func() {
		// Gone before returning: with AutoRemove the engine may still be removing
		// it, and the volume can't be removed (abort) while it exists.
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		eng.ContainerRemove(rctx, created.ID, client.ContainerRemoveOptions{Force: true})
		for rctx.Err() == nil {
			if _, err := eng.ContainerInspect(rctx, created.ID, client.ContainerInspectOptions{}); isNotFound(err) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	att, err := eng.ContainerAttach(ctx, created.ID, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return nil, fmt.Errorf("attaching to the helper container: %w", err)
	}
	defer att.Close()
	wait := eng.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	if _, err := eng.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("starting the helper container: %w", err)
	}
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	go func() {
		_, err := stdcopy.StdCopy(pw, &stderr, att.Reader)
		pw.CloseWithError(err)
	}()
	var result *helperLine
	br := bufio.NewReaderSize(pr, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var l helperLine
			if jerr := json.Unmarshal(line, &l); jerr != nil {
				stderr.Write(line)
			} else if l.Progress != nil {
				if r.progress != nil {
					r.progress(*l.Progress)
				}
			} else {
				result = &l
			}
		}
		if err != nil {
			break
		}
	}
	var code int64
	select {
	case w := <-wait.Result:
		code = w.StatusCode
	case err := <-wait.Error:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("waiting for the helper container: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if result != nil && result.Error != "" {
		if e, ok := kinds[result.Kind]; ok && !strings.Contains(result.Error, e.Error()) {
			return nil, fmt.Errorf("%w: %s", e, result.Error)
		} else if ok {
			return nil, &helperError{msg: result.Error, kind: e}
		}
		return nil, errors.New(result.Error)
	}
	if code != 0 || result == nil {
		msg := strings.TrimSpace(stderr.String())
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
