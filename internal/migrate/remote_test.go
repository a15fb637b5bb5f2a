package migrate

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/volumes"
)

// TestCorpusThroughEngine plans every corpus entry twice: reading the
// sources on this host (no engine) and through the engine's helper container
// (as for a remote engine). The plans must be the same: what converts, with
// which sizes and exclusions, what is kept and why.
func TestCorpusThroughEngine(t *testing.T) {
	eng := dockertest.Engine(t)
	helper := volumes.HelperOptions{Binary: staticMoltctl(t)}
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() { volumes.RemoveHelper(context.Background(), eng, helper) })
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		name := e.Name()
		t.Run(name, func(t *testing.T) {
			src := readSource(t, name)
			root, dir := corpusProject(t, name)
			files := src.Files
			if len(files) == 0 {
				files = []string{src.File}
			}
			opts := compose.Options{Files: make([]string, len(files))}
			for i, f := range files {
				opts.Files[i] = dir + "/" + f
			}
			all := opts
			all.Profiles = []string{"*"}
			everything, err := compose.Load(ctx, all)
			if err != nil {
				t.Fatal(err)
			}
			makeSources(t, root, dir, everything, src.RegularFiles)
			project, err := compose.Load(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			local, lerr := Prepare(ctx, nil, project, PlanOptions{Owner: corpusOwner})
			remote, rerr := Prepare(ctx, eng, project, PlanOptions{Owner: corpusOwner, Helper: helper, KeepHelper: true})
			if (lerr == nil) != (rerr == nil) || lerr != nil && lerr.Error() != rerr.Error() {
				t.Fatalf("got error %v through the engine, want %v as on this host", rerr, lerr)
			}
			if lerr != nil {
				return
			}
			if remote.SourcesLocal {
				t.Fatal("got the sources read on this host, want them read through the engine")
			}
			type same struct {
				Conversions  []Conversion
				Kept         []Kept
				Bytes, Files int64
			}
			g, _ := json.Marshal(same{remote.Conversions, remote.Kept, remote.Bytes, remote.Files})
			w, _ := json.Marshal(same{local.Conversions, local.Kept, local.Bytes, local.Files})
			if string(g) != string(w) {
				t.Errorf("got through the engine:\n%s\nwant as on this host:\n%s", g, w)
			}
		})
	}
}
