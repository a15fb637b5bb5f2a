package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/volumes"
)

func TestPlanCheckSpace(t *testing.T) {
	tests := []struct {
		name         string
		needed, free int64
		wantErr      bool
	}{
		{"fits", 100 << 20, 200 << 20, false},
		{"exactly data and margin", 100 << 20, 100<<20 + 64<<20, false},
		{"the margin does not fit", 100 << 20, 150 << 20, true},
		{"big data: 5% margin", 10 << 30, 10<<30 + 400<<20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Plan{Bytes: tt.needed, Space: &Space{Free: tt.free, Needed: tt.needed, Margin: SpaceMargin(tt.needed)}}
			err := p.Check()
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil && (!errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), HumanBytes(tt.free))) {
				t.Errorf("got %v, want ErrNoSpace with the free space", err)
			}
		})
	}
}

// TestRunNoSpace: on a small file system where the engine keeps its volumes
// (the throwaway volume MeasureSpace asks backed by a 128 MiB tmpfs), Run
// refuses 80 MiB of data plus the margin before changing anything.
func TestRunNoSpace(t *testing.T) {
	l := newLive(t)
	if err := os.WriteFile(filepath.Join(l.state, "big"), make([]byte, 80<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	spaceProbeDriverOpts = map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=128m"}
	probe := "io.moltctl.test=" + l.name
	spaceProbeLabels = map[string]string{"io.moltctl.test": l.name}
	t.Cleanup(func() { spaceProbeDriverOpts, spaceProbeLabels = nil, nil })
	before, _ := os.ReadFile(l.file)
	id := l.containerID(t)
	eng := dockertest.Engine(t)

	_, err := Run(context.Background(), eng, fresh(t, l.opts))
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("got %v, want ErrNoSpace", err)
	}
	for _, w := range []string{"the data needs 80.", "plus a margin of 64.0 MiB", "have 128.0 MiB (134217728 bytes) free"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got %q, want the numbers (%q)", err, w)
		}
	}
	if errors.Is(err, ErrAborted) {
		t.Errorf("got %v, want a refusal before any step, not an abort", err)
	}
	if got, _ := os.ReadFile(l.file); string(got) != string(before) {
		t.Errorf("got the compose file changed")
	}
	if _, err := os.Stat(l.file + ".moltctl-backup"); err == nil {
		t.Errorf("got a compose file backup, want none")
	}
	if j, err := readJournal(l.name); err != nil || j != nil {
		t.Errorf("got journal %+v (%v), want none", j, err)
	}
	if out, _ := dockertest.Run("docker", "volume", "inspect", l.name+"_state"); !strings.Contains(out, "[]") {
		t.Errorf("got volume %s_state created, want none", l.name)
	}
	if got := l.containerID(t); got != id {
		t.Errorf("got container %s, want %s untouched", got, id)
	}
	l.checkRunning(t, "bind")
	l.checkSource(t)
	// This test's throwaway volume only: other runs may be measuring at the same time.
	if out, _ := dockertest.Run("docker", "volume", "ls", "-q", "--filter", "label="+volumes.LabelHelper+"=space", "--filter", "label="+probe); strings.Contains(out, "moltctl-space-") {
		t.Errorf("got throwaway volumes %q left, want none", out)
	}
}
