package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths of the source bind and the volume inside the helper container.
const (
	helperFrom = "/from"
	helperTo   = "/to"
)

// helperRequest is the one argument of `moltctl copy-helper`.
type helperRequest struct {
	Op        string `json:"op"` // copy, verify, finish, probe, copyback, statfs
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
}

// helperLine is one JSON line the helper writes on stdout.
type helperLine struct {
	Progress *Progress       `json:"progress,omitempty"`
	Copy     *CopyResult     `json:"copy,omitempty"`
	Verify   *VerifyReport   `json:"verify,omitempty"`
	Probe    *probeResult    `json:"probe,omitempty"`
	CopyBack *CopyBackResult `json:"copy_back,omitempty"`
	Space    *Space          `json:"space,omitempty"`
	Error    string          `json:"error,omitempty"`
	Kind     string          `json:"kind,omitempty"`
}

type probeResult struct {
	Empty bool `json:"empty"`
}

// error kinds carried from the helper to the client
var kinds = map[string]error{"noinodes": ErrNoInodes, "nospace": ErrNoSpace, "nofirstpass": ErrNoFirstPass, "refused": ErrRefused, "mismatch": ErrMismatch}

// Helper is the body of the hidden `moltctl copy-helper REQUEST` command that
// runs inside the helper container: it reads the source at /from, writes the
// volume at /to, and writes JSON lines (progress, then a result or an error)
// to out. It returns the error it reported, for the exit status.
func Helper(ctx context.Context, args []string, out io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(l helperLine) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(l)
	}
	err := runHelper(ctx, args, emit)
	if err != nil {
		l := helperLine{Error: err.Error()}
		for k, e := range kinds {
			if errors.Is(err, e) && l.Kind != "noinodes" { // the narrowest kind
				l.Kind = k
			}
		}
		emit(l)
	}
	return err
}

func runHelper(ctx context.Context, args []string, emit func(helperLine)) error {
	if len(args) != 1 {
		return errors.New("copy-helper takes one argument, a JSON request")
	}
	var req helperRequest
	if err := json.Unmarshal([]byte(args[0]), &req); err != nil {
		return fmt.Errorf("reading the copy-helper request: %w", err)
	}
	if req.From == "" {
		req.From = helperFrom
	}
	if req.To == "" {
		req.To = helperTo
	}
	switch req.Op {
	case "copy":
		uid, gid, err := parseOwner(req.Owner, req.KeepOwner)
		if err != nil {
			return err
		}
		res, err := copyTree(ctx, treeOptions{Src: req.From, Dst: req.To, UID: uid, GID: gid, KeepOwner: req.KeepOwner,
			Delta: req.Pass == PassDelta, Workers: req.Workers, Reserve: req.Reserve, Exclude: req.Exclude, Progress: func(p Progress) { emit(helperLine{Progress: &p}) }})
		if err != nil {
			return err
		}
		emit(helperLine{Copy: res})
	case "verify":
		uid, gid, err := parseOwner(req.Owner, req.KeepOwner)
		if err != nil {
			return err
		}
		rep, err := verifyTree(req.From, req.To, compareOptions{UID: uid, GID: gid, KeepOwner: req.KeepOwner, Exclude: req.Exclude}, req.Full)
		if err != nil {
			return err
		}
		emit(helperLine{Verify: rep})
	case "finish":
		d, err := openRoot(req.To)
		if err != nil {
			return fmt.Errorf("opening the volume: %w", err)
		}
		defer d.Close()
		if err := removeState(int(d.Fd())); err != nil {
			return err
		}
		emit(helperLine{Probe: &probeResult{}})
	case "probe":
		d, err := openRoot(req.To)
		if err != nil {
			return fmt.Errorf("opening the volume: %w", err)
		}
		defer d.Close()
		names, err := d.Readdirnames(1)
		if err != nil && err != io.EOF {
			return fmt.Errorf("listing the volume: %w", err)
		}
		emit(helperLine{Probe: &probeResult{Empty: len(names) == 0}})
	case "statfs":
		sp, err := statfsSpace(req.To)
		if err != nil {
			return err
		}
		emit(helperLine{Space: sp})
	case "copyback":
		res, err := copyBackTree(ctx, copyBackTreeOptions{Src: req.From, Parent: req.To, Name: req.Name, ID: req.ID,
			Progress: func(p Progress) { emit(helperLine{Progress: &p}) }, Hook: crashHook(req.CrashAfter)})
		if err != nil {
			return err
		}
		emit(helperLine{CopyBack: res})
	default:
		return fmt.Errorf("copy-helper: unknown operation %q", req.Op)
	}
	return nil
}

// verifyTree compares the trees at src and dst: content hashes of every
// regular file when full, else of the files the delta passes touched.
func verifyTree(src, dst string, o compareOptions, full bool) (*VerifyReport, error) {
	start := time.Now()
	d, err := openRoot(dst)
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
	hash := func(p string) bool { return full || touched[p] }
	// The two walks are independent: side by side they take about half the
	// time on two cores (verify runs while the services are stopped).
	var dm map[string]*entry
	var derr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		dm, _, derr = prunedManifest(dst, StateDir, pruneSet(o.Exclude), hash)
	}()
	sm, mounts, err := prunedManifest(src, "", pruneSet(o.Exclude), hash)
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
	diffs, warns := compare(sm, dm, o)
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

// parseOwner reads "uid:gid" (numeric).
func parseOwner(s string, keep bool) (int, int, error) {
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
