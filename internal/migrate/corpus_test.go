package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
)

// The corpus: real compose files of public projects under testdata/corpus, one
// directory each (see testdata/corpus/README.md). Every directory gets a golden
// JSON plan (plan.golden.json) and a golden rewrite (rewrite.golden.diff);
// `go test -run TestCorpus ./internal/migrate -update` writes them again.
var update = flag.Bool("update", false, "rewrite the golden files of the corpus")

const (
	corpusDir = "testdata/corpus"
	// corpusRoot replaces the temporary directory in the goldens: the project
	// is planned in $CORPUS/<entry>, with HOME=$CORPUS/home.
	corpusRoot = "$CORPUS"
	// corpusOwner is the --owner of every corpus plan: no image is present,
	// and the plan must not depend on what the machine has pulled.
	corpusOwner = "1000:1000"
	// ownerlessMustPlan makes a corpus plan without --owner and without an
	// engine (a user's first dry-run, before pulling) that fails an error: a
	// dry-run always plans, with unknown owners (issue 9 item 1). With it off,
	// the golden records that plan's error as error_without_owner.
	ownerlessMustPlan = true
	// knownViolations lists the corpus-wide check failures still expected
	// (see checkNoSplit); a line that no longer fails is an error too.
	knownViolations = "testdata/corpus/KNOWN-VIOLATIONS"
)

// corpusSource is the SOURCE.json of a corpus entry: where its compose file
// came from. Every other file of the entry (.env, env_file files) was written
// for the corpus.
type corpusSource struct {
	Repo      string `json:"repo"`
	Path      string `json:"path"`
	Commit    string `json:"commit"`
	File      string `json:"file"`
	Retrieved string `json:"retrieved"`
	// Files are the compose files (-f, in order); default: File.
	Files []string `json:"files,omitempty"`
	// RegularFiles are bind sources (relative to the project directory) to
	// create as files where the name alone does not tell.
	RegularFiles []string `json:"regular_files,omitempty"`
}

// corpusGolden is plan.golden.json: the plan, or the error of Prepare, and
// the error of the same plan without --owner (see ownerlessMustPlan).
type corpusGolden struct {
	Error             string `json:"error,omitempty"`
	ErrorWithoutOwner string `json:"error_without_owner,omitempty"`
	Plan              *Plan  `json:"plan,omitempty"`
}

// machineBytes matches the sizes in a plan: allocated bytes depend on the
// file system the corpus is planned on, so the goldens don't hold them.
var machineBytes = regexp.MustCompile(`"bytes": [0-9]+`)

func TestCorpus(t *testing.T) {
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) < 20 {
		t.Fatalf("got %d corpus entries, want at least 20", len(names))
	}
	var violations []string
	ran := map[string]bool{}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			ran[name] = true
			violations = append(violations, corpusEntry(t, name)...)
		})
	}
	checkKnownViolations(t, violations, ran)
}

// corpusEntry plans one entry in a fresh directory and compares the plan and
// the rewrite with the goldens; it returns the corpus-wide check failures.
func corpusEntry(t *testing.T, name string) []string {
	src := readSource(t, name)
	root, dir := corpusProject(t, name)
	files := src.Files
	if len(files) == 0 {
		files = []string{src.File}
	}
	opts := compose.Options{Files: make([]string, len(files))}
	for i, f := range files {
		opts.Files[i] = filepath.Join(dir, f)
	}
	ctx := context.Background()

	// Every service, whatever the active profiles: their bind sources exist.
	all := opts
	all.Profiles = []string{"*"}
	everything, err := compose.Load(ctx, all)
	if err != nil {
		t.Fatalf("loading %s: %v", name, err)
	}
	makeSources(t, root, dir, everything, src.RegularFiles)

	project, err := compose.Load(ctx, opts)
	if err != nil {
		t.Fatalf("loading %s: %v", name, err)
	}
	plan, err := Prepare(ctx, nil, project, PlanOptions{Owner: corpusOwner})
	golden := corpusGolden{Plan: plan}
	if err != nil {
		golden.Error = err.Error()
	}
	if _, err := Prepare(ctx, nil, project, PlanOptions{}); err != nil {
		if ownerlessMustPlan {
			t.Errorf("a dry-run without --owner and without images: got %v, want a plan", err)
		}
		golden.ErrorWithoutOwner = err.Error()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(golden); err != nil {
		t.Fatal(err)
	}
	got := bytes.ReplaceAll(buf.Bytes(), []byte(root), []byte(corpusRoot))
	got = machineBytes.ReplaceAll(got, []byte(`"bytes": "(machine)"`))
	compareGolden(t, filepath.Join(corpusDir, name, "plan.golden.json"), got)

	var diff strings.Builder
	if plan != nil {
		for _, e := range plan.Edits {
			rel, err := filepath.Rel(dir, e.Path)
			if err != nil {
				t.Fatal(err)
			}
			diff.WriteString(compose.Edit{Path: rel, Old: e.Old, New: e.New}.Diff())
		}
	}
	if diff.Len() == 0 {
		diff.WriteString("# no compose file changes\n")
	}
	compareGolden(t, filepath.Join(corpusDir, name, "rewrite.golden.diff"), []byte(strings.ReplaceAll(diff.String(), root, corpusRoot)))
	if plan == nil {
		return nil
	}

	violations := checkNoSplit(plan, everything)
	for i, v := range violations {
		violations[i] = name + ": " + strings.ReplaceAll(v, root, corpusRoot)
	}
	if len(plan.Edits) == 0 {
		return violations
	}
	before := corpusConfig(t, project)
	for _, e := range plan.Edits {
		if err := os.WriteFile(e.Path, e.New, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	after := corpusConfig(t, project)
	compareConverted(t, before, after, plan)

	// Planning the rewritten project again converts nothing.
	again, err := compose.Load(ctx, opts)
	if err != nil {
		t.Fatalf("loading the rewritten %s: %v", name, err)
	}
	p2, err := Prepare(ctx, nil, again, PlanOptions{Owner: corpusOwner})
	if err != nil {
		t.Fatalf("planning the rewritten %s: %v", name, err)
	}
	if len(p2.Conversions) != 0 || len(p2.Edits) != 0 {
		t.Errorf("planning again: got %d conversions and %d edits, want none", len(p2.Conversions), len(p2.Edits))
	}
	return violations
}

func readSource(tb testing.TB, name string) corpusSource {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, name, "SOURCE.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var s corpusSource
	if err := json.Unmarshal(b, &s); err != nil {
		tb.Fatalf("SOURCE.json of %s: %v", name, err)
	}
	if s.Repo == "" || s.Path == "" || len(s.Commit) != 40 || s.File == "" {
		tb.Fatalf("SOURCE.json of %s: want repo, path, a 40-digit commit and file, got %+v", name, s)
	}
	return s
}

// corpusProject copies the entry's files (not its notes and goldens) into a
// new directory ROOT/<name> and points HOME at ROOT/home, with no COMPOSE_*
// variable of the machine in the way. ROOT has no symbolic links, so that it
// can be replaced in every path the plan prints.
func corpusProject(t *testing.T, name string) (root, dir string) {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("DOCKER_CONFIG") == "" {
		// The docker CLI finds its compose plugin there, not in the new HOME.
		if home, err := os.UserHomeDir(); err == nil {
			t.Setenv("DOCKER_CONFIG", filepath.Join(home, ".docker"))
		}
	}
	t.Setenv("HOME", filepath.Join(root, "home"))
	for _, k := range []string{"COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "COMPOSE_ENV_FILES", "COMPOSE_PATH_SEPARATOR", "COMPOSE_DISABLE_ENV_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	src := filepath.Join(corpusDir, name)
	err = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		if rel == "SOURCE.json" || strings.Contains(d.Name(), ".golden") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root, dir
}

// makeSources creates, below root only, the host side of every bind mount,
// the device of every bind-backed volume and the files of secrets and
// configs: a directory holding one file, or a file when the name says so
// (an extension) or the entry lists it. Paths outside root are the machine's own.
func makeSources(tb testing.TB, root, dir string, p *compose.Project, regular []string) {
	tb.Helper()
	files := map[string]bool{}
	for _, r := range regular {
		files[filepath.Join(dir, r)] = true
	}
	var dirs []string
	add := func(src string, file bool) {
		src = filepath.Clean(src)
		if !strings.HasPrefix(src, root+"/") {
			return
		}
		if file || files[src] || looksLikeFile(src) {
			files[src] = true
		} else {
			dirs = append(dirs, src)
		}
	}
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				add(v.Source, false)
			}
		}
	}
	for _, v := range p.Volumes {
		if dev, ok := bindVolumeDevice(v); ok {
			add(dev, false)
		}
	}
	for _, s := range p.Secrets {
		if s.File != "" {
			add(s.File, true)
		}
	}
	for _, c := range p.Configs {
		if c.File != "" {
			add(c.File, true)
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, ".corpus-data"), []byte("data\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(files)) {
		if _, err := os.Stat(f); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("data\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// looksLikeFile: a base name with an extension (nginx.conf, init.sh), not a
// dot directory (.docker).
func looksLikeFile(p string) bool {
	base := filepath.Base(p)
	ext := filepath.Ext(base)
	return !strings.HasPrefix(base, ".") && len(ext) > 1 && len(ext) <= 8
}

func compareGolden(tb testing.TB, path string, got []byte) {
	tb.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs (run with -update to rewrite it, then review the diff):\ngot:\n%s", path, got)
	}
}

// corpusConfig runs the real `docker compose config --format json` with every
// profile enabled.
func corpusConfig(tb testing.TB, p *compose.Project) map[string]any {
	tb.Helper()
	dockertest.Compose(tb)
	args := append([]string{"compose"}, p.Args()...)
	args = append(args, "--profile", "*", "config", "--format", "json")
	out := dockertest.Docker(tb, args...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		tb.Fatalf("docker compose config: %v", err)
	}
	return m
}

// compareConverted checks that the configs are identical except the converted
// mounts, and that each converted mount kept every option: it must read as the
// bind mount did, with type volume, source the key, nocopy when the directory
// was empty, and of the bind options only the SELinux label.
func compareConverted(tb testing.TB, before, after map[string]any, plan *Plan) {
	tb.Helper()
	type conv struct {
		key    string
		nocopy bool
	}
	converted := map[string]conv{}
	for _, c := range plan.Conversions {
		for _, m := range c.Mounts {
			converted[m.Service+"\x00"+m.Target] = conv{c.Volume, c.Empty}
		}
		vols, _ := after["volumes"].(map[string]any)
		v, ok := vols[c.Volume].(map[string]any)
		if !ok || v["name"] != c.Name {
			tb.Errorf("got top-level volume %s = %v, want name %s", c.Volume, vols[c.Volume], c.Name)
			continue
		}
		delete(vols, c.Volume)
		if len(vols) == 0 {
			delete(after, "volumes")
		}
		if c.FromVolume != "" {
			// A bind-backed volume no service uses any more: compose leaves it out.
			if _, still := vols[c.FromVolume]; !still {
				bv, _ := before["volumes"].(map[string]any)
				delete(bv, c.FromVolume)
				if len(bv) == 0 {
					delete(before, "volumes")
				}
			}
		}
	}
	for _, cfg := range []map[string]any{before, after} {
		for k := range cfg {
			if strings.HasPrefix(k, "x-") {
				delete(cfg, k) // extensions, where YAML anchors live: not compose configuration
			}
		}
	}
	seen := 0
	services, _ := before["services"].(map[string]any)
	for name, s := range services {
		bvols, _ := s.(map[string]any)["volumes"].([]any)
		asvc, _ := after["services"].(map[string]any)[name].(map[string]any)
		avols, _ := asvc["volumes"].([]any)
		for i, v := range bvols {
			m := v.(map[string]any)
			c, ok := converted[name+"\x00"+m["target"].(string)]
			if !ok {
				continue
			}
			seen++
			if i >= len(avols) {
				tb.Errorf("service %s: mount %v is gone", name, m["target"])
				continue
			}
			want := maps.Clone(m)
			want["type"], want["source"] = "volume", c.key
			if b, ok := want["bind"].(map[string]any); ok {
				if sel, ok := b["selinux"]; ok {
					want["bind"] = map[string]any{"selinux": sel}
				} else {
					delete(want, "bind")
				}
			}
			if v, ok := want["volume"].(map[string]any); ok && len(v) == 0 {
				delete(want, "volume")
			}
			got := maps.Clone(avols[i].(map[string]any))
			vol, _ := got["volume"].(map[string]any)
			if c.nocopy != (vol["nocopy"] == true) {
				tb.Errorf("service %s mount %v: got volume options %v, want nocopy %v", name, m["target"], vol, c.nocopy)
			}
			delete(vol, "nocopy")
			if len(vol) == 0 {
				delete(got, "volume")
			}
			if !reflect.DeepEqual(got, want) {
				tb.Errorf("service %s: got mount %v, want %v (the bind mount %v with the volume)", name, got, want, m)
			}
			bvols[i], avols[i] = "converted", "converted"
		}
	}
	if n := countMounts(plan); seen != n {
		tb.Errorf("docker compose config shows %d of the %d converted mounts", seen, n)
	}
	a, _ := json.MarshalIndent(before, "", " ")
	b, _ := json.MarshalIndent(after, "", " ")
	if !bytes.Equal(a, b) {
		tb.Errorf("docker compose config differs beyond the converted mounts:\nbefore %s\nafter %s", a, b)
	}
}

func countMounts(p *Plan) int {
	n := 0
	for _, c := range p.Conversions {
		n += len(c.Mounts)
	}
	return n
}

// checkNoSplit is the corpus-wide check of issues 9 and 15: no source is
// converted for some of the services that bind it only (in any profile), and
// no converted directory contains a path still bound from the host or read by
// compose secrets: or configs:. It returns one line per failure.
func checkNoSplit(plan *Plan, all *compose.Project) []string {
	var out []string
	converted := map[string]bool{}
	for _, c := range plan.Conversions {
		for _, m := range c.Mounts {
			converted[m.Service+"\x00"+m.Target] = true
		}
	}
	inside := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, c := range plan.Conversions {
		for _, name := range slices.Sorted(maps.Keys(all.Services)) {
			for _, v := range all.Services[name].Volumes {
				if v.Type != types.VolumeTypeBind {
					continue
				}
				src := filepath.Clean(v.Source)
				if !inside(src, c.Source) || converted[name+"\x00"+filepath.Clean(v.Target)] {
					continue
				}
				if src == c.Source {
					out = append(out, fmt.Sprintf("%s is converted, but service %s still binds it at %s", c.Source, name, v.Target))
				} else {
					out = append(out, fmt.Sprintf("%s is converted, but service %s still binds %s inside it at %s", c.Source, name, src, v.Target))
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(all.Secrets)) {
			if f := all.Secrets[k].File; f != "" && inside(filepath.Clean(f), c.Source) {
				out = append(out, fmt.Sprintf("%s is converted, but secret %s reads %s inside it", c.Source, k, f))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(all.Configs)) {
			if f := all.Configs[k].File; f != "" && inside(filepath.Clean(f), c.Source) {
				out = append(out, fmt.Sprintf("%s is converted, but config %s reads %s inside it", c.Source, k, f))
			}
		}
	}
	return out
}

// checkKnownViolations fails on a corpus-wide check failure that is not listed
// in KNOWN-VIOLATIONS, and on a listed one of an entry that ran (see -run)
// that no longer happens; -update writes the lines of the entries that ran again.
func checkKnownViolations(t *testing.T, got []string, ran map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(knownViolations)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var known, others []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if entry, _, _ := strings.Cut(l, ": "); ran[entry] {
			known = append(known, l)
		} else {
			others = append(others, l)
		}
	}
	if *update {
		lines := slices.Sorted(slices.Values(append(others, got...)))
		text := "# Corpus-wide check failures still expected (TestCorpus). Written by -update; each must go.\n"
		for _, v := range lines {
			text += v + "\n"
		}
		if err := os.WriteFile(knownViolations, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, v := range got {
		if !slices.Contains(known, v) {
			t.Errorf("corpus check: %s", v)
		}
	}
	for _, k := range known {
		if !slices.Contains(got, k) {
			t.Errorf("%s lists %q, which no longer happens: run with -update", knownViolations, k)
		}
	}
}
