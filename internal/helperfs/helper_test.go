package helperfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run calls Main with req and returns its lines.
func run(t *testing.T, req Request) ([]Line, error) {
	t.Helper()
	arg, err := json.Marshal(req)
	must(t, err)
	var out bytes.Buffer
	err = Main(context.Background(), []string{string(arg)}, &out)
	var lines []Line
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var line Line
		must(t, json.Unmarshal([]byte(l), &line))
		lines = append(lines, line)
	}
	return lines, err
}

// TestMainRequests runs the copy-helper program as the helper container would,
// without one: copy, delta, verify, finish, probe, and the error kinds the
// engine side turns back into sentinels.
func TestMainRequests(t *testing.T) {
	tr := makeTree(t)
	dst := newDst(t)
	lines, err := run(t, Request{Op: "copy", Owner: "1000:1000", From: tr.Src, To: dst})
	must(t, err)
	if last := lines[len(lines)-1]; last.Copy == nil || last.Copy.Pass != PassFull || last.Copy.Files == 0 {
		t.Fatalf("got last line %+v, want a full pass's result", last)
	}
	if len(lines) < 2 || lines[len(lines)-2].Progress == nil {
		t.Errorf("got %d lines, want progress before the result", len(lines))
	}
	lines, err = run(t, Request{Op: "copy", Owner: "1000:1000", Pass: PassDelta, From: tr.Src, To: dst})
	must(t, err)
	if r := lines[len(lines)-1].Copy; r == nil || r.Pass != PassDelta || r.Bytes != 0 {
		t.Errorf("got %+v, want an idle delta", r)
	}
	lines, err = run(t, Request{Op: "verify", Owner: "1000:1000", Full: true, From: tr.Src, To: dst})
	must(t, err)
	if v := lines[len(lines)-1].Verify; v == nil || len(v.Differences) > 0 || v.Hashed == 0 {
		t.Errorf("got %+v, want a clean full verification", v)
	}
	if _, err := run(t, Request{Op: "finish", To: dst}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, StateDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want the copy state gone after finish", err)
	}
	lines, err = run(t, Request{Op: "probe", To: dst})
	must(t, err)
	if p := lines[0].Probe; p == nil || p.Empty {
		t.Errorf("got probe %+v, want a non-empty volume", p)
	}

	empty := newDst(t)
	lines, err = run(t, Request{Op: "copy", Owner: "1000:1000", Pass: PassDelta, From: tr.Src, To: empty})
	if !errors.Is(err, ErrNoFirstPass) || lines[0].Kind != "nofirstpass" || KindError(lines[0].Kind) != ErrNoFirstPass {
		t.Errorf("got %v and %+v, want ErrNoFirstPass reported as its kind", err, lines)
	}
	if _, err := run(t, Request{Op: "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("got %v, want the unknown operation named", err)
	}
}
