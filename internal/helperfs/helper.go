package helperfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

// Paths of the source bind and the volume inside the helper container.
const (
	From = "/from"
	To   = "/to"
)

// Request is the one argument of `moltctl copy-helper`.
type Request struct {
	Op        string `json:"op"` // copy, verify, finish, probe, copyback, statfs, sources
	Owner     string `json:"owner,omitempty"`
	KeepOwner bool   `json:"keep_owner,omitempty"`
	Pass      Pass   `json:"pass,omitempty"`
	Full      bool   `json:"full,omitempty"`
	Workers   int    `json:"workers,omitempty"`
	Reserve   int64  `json:"reserve,omitempty"`
	// Exclude: directories (relative to the source) copied and verified as
	// empty directories (CopyOptions.Exclude).
	Exclude []string `json:"exclude,omitempty"`
	// From and To default to /from and /to; tests run the helper in-process on other paths.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// copyback: From is the volume, To the target's parent directory; Name is
	// the target's name in it, ID the copy-back's; CrashAfter (tests) makes
	// the helper exit abruptly after that step.
	Name       string `json:"name,omitempty"`
	ID         string `json:"id,omitempty"`
	CrashAfter string `json:"crash_after,omitempty"`
	// sources: the bind sources to look at (volumes.InspectSources).
	Sources []SourceArg `json:"sources,omitempty"`
}

// Line is one JSON line the helper writes on stdout.
type Line struct {
	Progress *Progress       `json:"progress,omitempty"`
	Copy     *CopyResult     `json:"copy,omitempty"`
	Verify   *VerifyReport   `json:"verify,omitempty"`
	Probe    *ProbeResult    `json:"probe,omitempty"`
	CopyBack *CopyBackResult `json:"copy_back,omitempty"`
	Space    *Space          `json:"space,omitempty"`
	Sources  []SourceInfo    `json:"sources,omitempty"`
	Error    string          `json:"error,omitempty"`
	Kind     string          `json:"kind,omitempty"`
}

// ProbeResult answers the probe operation.
type ProbeResult struct {
	Empty bool `json:"empty"`
}

// error kinds carried from the helper to the client
var kinds = map[string]error{"noinodes": ErrNoInodes, "nospace": ErrNoSpace, "nofirstpass": ErrNoFirstPass, "refused": ErrRefused, "mismatch": ErrMismatch}

// KindError is the sentinel a Line's Kind names; nil for none.
func KindError(kind string) error { return kinds[kind] }

// Main is the body of the hidden `moltctl copy-helper REQUEST` command that
// runs inside the helper container: it reads the source at /from, writes the
// volume at /to, and writes JSON lines (progress, then a result or an error)
// to out. It returns the error it reported, for the exit status.
func Main(ctx context.Context, args []string, out io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(l Line) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(l)
	}
	err := runHelper(ctx, args, emit)
	if err != nil {
		l := Line{Error: err.Error()}
		for k, e := range kinds {
			if errors.Is(err, e) && l.Kind != "noinodes" { // the narrowest kind
				l.Kind = k
			}
		}
		emit(l)
	}
	return err
}

func runHelper(ctx context.Context, args []string, emit func(Line)) error {
	if len(args) != 1 {
		return errors.New("copy-helper takes one argument, a JSON request")
	}
	var req Request
	if err := json.Unmarshal([]byte(args[0]), &req); err != nil {
		return fmt.Errorf("reading the copy-helper request: %w", err)
	}
	if req.From == "" {
		req.From = From
	}
	if req.To == "" {
		req.To = To
	}
	progress := func(p Progress) { emit(Line{Progress: &p}) }
	var l Line
	var err error
	switch req.Op {
	case "copy":
		l.Copy, err = runCopy(ctx, req, progress)
	case "verify":
		l.Verify, err = runVerify(req)
	case "finish":
		l.Probe, err = &ProbeResult{}, removeStateAt(req.To)
	case "probe":
		l.Probe, err = probe(req.To)
	case "statfs":
		l.Space, err = statfsSpace(req.To)
	case "sources":
		l.Sources, err = Sources(req.Sources, HelperPlaces)
	case "copyback":
		l.CopyBack, err = copyBackTree(ctx, copyBackTreeOptions{Src: req.From, Parent: req.To, Name: req.Name, ID: req.ID,
			Progress: progress, Hook: crashHook(req.CrashAfter)})
	default:
		return fmt.Errorf("copy-helper: unknown operation %q", req.Op)
	}
	if err != nil {
		return err
	}
	emit(l)
	return nil
}

func runCopy(ctx context.Context, req Request, progress func(Progress)) (*CopyResult, error) {
	uid, gid, err := ParseOwner(req.Owner, req.KeepOwner)
	if err != nil {
		return nil, err
	}
	return copyPass(ctx, passOptions{Src: req.From, Dst: req.To, UID: uid, GID: gid, KeepOwner: req.KeepOwner,
		Delta: req.Pass == PassDelta, Workers: req.Workers, Reserve: req.Reserve, Exclude: req.Exclude, Progress: progress})
}

func runVerify(req Request) (*VerifyReport, error) {
	uid, gid, err := ParseOwner(req.Owner, req.KeepOwner)
	if err != nil {
		return nil, err
	}
	return verifyTree(req.From, req.To, verifyOptions{UID: uid, GID: gid, KeepOwner: req.KeepOwner, Exclude: req.Exclude, Full: req.Full})
}

// probe says whether the volume at root is empty.
func probe(root string) (*ProbeResult, error) {
	d, err := safefs.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("opening the volume: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("listing the volume: %w", err)
	}
	return &ProbeResult{Empty: len(names) == 0}, nil
}

// statfsSpace is the helper's side of FreeSpace.
func statfsSpace(dir string) (*Space, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return nil, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return &Space{Free: int64(fs.Bavail) * fs.Bsize, Total: int64(fs.Blocks) * fs.Bsize, FreeInodes: int64(fs.Ffree)}, nil
}

// verifyOptions say what the volume should look like.
type verifyOptions struct {
	UID, GID  int
	KeepOwner bool
	// Exclude: directories whose content is not compared.
	Exclude []string
	// Full hashes every regular file, else only those the delta passes touched.
	Full bool
}

// verifyTree compares the trees at src and dst: content hashes of every
// regular file when o.Full, else of the files the delta passes touched.
func verifyTree(src, dst string, o verifyOptions) (*VerifyReport, error) {
	start := time.Now()
	d, err := safefs.OpenRoot(dst)
	if err != nil {
		return nil, fmt.Errorf("opening the volume: %w", err)
	}
	st, err := readState(int(d.Fd()))
	d.Close()
	if err != nil {
		return nil, err
	}
	touched := map[string]bool{}
	for _, p := range st.Touched {
		touched[p] = true
	}
	hash := func(p string) bool { return o.Full || touched[p] }
	// The two walks are independent: side by side they take about half the
	// time on two cores (verify runs while the services are stopped).
	var dm map[string]*safefs.Entry
	var derr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		dm, _, derr = safefs.Manifest(dst, safefs.ManifestOptions{Skip: []string{StateDir}, Prune: o.Exclude, Hash: hash})
	}()
	sm, mounts, err := safefs.Manifest(src, safefs.ManifestOptions{Prune: o.Exclude, Hash: hash})
	<-done
	if err != nil {
		return nil, fmt.Errorf("reading the source: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("reading the volume: %w", derr)
	}
	for _, p := range mounts { // not copied: not compared
		for q := range sm {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(sm, q)
			}
		}
	}
	diffs, warns := safefs.Compare(sm, dm, safefs.CompareOptions{UID: o.UID, GID: o.GID, KeepOwner: o.KeepOwner, Dst: "the volume"})
	rep := &VerifyReport{Entries: len(sm), Differences: diffs, Warnings: warns, Duration: time.Since(start)}
	for _, e := range sm {
		if e.Hash != "" {
			rep.Hashed++
		}
	}
	for _, p := range mounts {
		rep.Warnings = append(rep.Warnings, p+": another mount, not compared")
	}
	return rep, nil
}

// ParseOwner reads "uid:gid" (numeric); with keep, "" is -1, -1.
func ParseOwner(s string, keep bool) (int, int, error) {
	if keep && s == "" {
		return -1, -1, nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("owner %q: want numeric uid:gid", s)
	}
	return int(uid), int(gid), nil
}

// FirstDiffs joins the first n differences, saying how many more there are.
func FirstDiffs(d []string, n int) string {
	s := ""
	for i, x := range d {
		if i == n {
			s += fmt.Sprintf("; and %d more", len(d)-n)
			break
		}
		if i > 0 {
			s += "; "
		}
		s += x
	}
	return s
}
