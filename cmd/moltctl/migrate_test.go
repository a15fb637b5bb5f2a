package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// migrateProject writes a small project: a state directory shared by two
// services, an empty cache directory and a single file.
func migrateProject(tb testing.TB) (dir, file string) {
	tb.Helper()
	dir = tb.TempDir()
	for _, d := range []string{"state", "cache"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "state", "openclaw.json"), []byte("{}\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "app.env"), []byte("TOKEN=secret\n"), 0o600)
	file = filepath.Join(dir, "compose.yaml")
	content := `name: clitest
services:
  gateway:
    image: moltctl-test/none:1
    volumes:
      - ./state:/home/node/.openclaw  # state
      - ./cache:/home/node/.cache
      - ./app.env:/app.env:ro
  cli:
    image: moltctl-test/none:1
    volumes:
      - ./state:/home/node/.openclaw:ro
`
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir, file
}

// runMoltctl runs the command line in-process and returns stdout and the error.
func runMoltctl(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestMigrateDryRun(t *testing.T) {
	dir, file := migrateProject(t)
	before, _ := os.ReadFile(file)
	state := t.TempDir()
	t.Setenv("MOLTCTL_STATE_DIR", state)
	noEngine := []string{"-H", "unix://" + filepath.Join(dir, "no-engine.sock"), "-f", file}
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut []string
	}{
		{"without --dry-run, no terminal", []string{"migrate"}, "migrate: not a terminal to confirm on: pass --yes", nil},
		{"engine unreachable", []string{"migrate", "--yes"}, "migrate: connecting to the Docker Engine at unix://", nil},
		{"engine unreachable, resume", []string{"migrate", "--resume"}, "migrate: connecting to the Docker Engine at unix://", nil},
		{"bad --verify", []string{"migrate", "--yes", "--verify", "some"}, `migrate: --verify "some": want delta or full`, nil},
		{"--copy-back without --rollback", []string{"migrate", "--yes", "--copy-back"}, "migrate: --copy-back needs --rollback", nil},
		{"bad --volume-name", []string{"migrate", "--dry-run", "--volume-name", "state"}, `migrate: --volume-name "state": want SOURCE=KEY`, nil},
		{"bad --verify and --copy-back, --dry-run", []string{"migrate", "--dry-run", "--verify", "bogus", "--copy-back"}, "migrate: --copy-back needs --rollback", nil},
		{"bad --verify, --dry-run", []string{"migrate", "--dry-run", "--verify", "bogus"}, `migrate: --verify "bogus": want delta or full`, nil},
		{"no engine, owner from the image: still a plan", []string{"migrate", "--dry-run"}, "", []string{
			"state (clitest_state)         unknown",
			"Owner unknown: no Docker Engine answered to read the images' users from. Before migrating, start it, or give the owner with --owner SOURCE=UID:GID.",
		}},
		{"unknown service", []string{"migrate", "--dry-run", "--owner", "1:1", "nope"}, `no service "nope"`, nil},
		{"empty --exclude", []string{"migrate", "--dry-run", "--exclude", ""}, `migrate: --exclude "": want a SOURCE directory`, nil},
		{"--exclude of nothing bound", []string{"migrate", "--dry-run", "--owner", "1:1", "--exclude", "nope"}, `--exclude "nope": no bind mount of the project has the source`, nil},
		{"--include of a file", []string{"migrate", "--dry-run", "--owner", "1:1", "--include", "app.env"}, `--include "app.env": the source stays a bind (single file), which include can't override`, nil},
		{"--exclude", []string{"migrate", "--dry-run", "--owner", "1000:1000", "--exclude", "./cache"}, "", []string{
			"Project clitest: 1 directory to convert into named volumes (",
			", 2 bind mounts kept.",
			"excluded (--exclude)",
		}},
		{"human", []string{"migrate", "--dry-run", "--owner", "1000:1000", "--volume-name", "./state=moltbot-state"}, "", []string{
			"Project clitest: 2 directories to convert into named volumes (",
			" KiB, 1 file), 1 bind mount kept.",
			"Free space where the engine keeps its volumes: unknown (the Docker Engine is unreachable); needed ",
			" KiB + 64.0 MiB margin.",
			"moltbot-state (clitest_moltbot-state)",
			"cache (clitest_cache) nocopy",
			"gateway:/app.env",
			"single file",
			"Services to recreate: cli, gateway",
			"--- " + file,
			"-      - ./state:/home/node/.openclaw  # state",
			"+      - moltbot-state:/home/node/.openclaw  # state",
			"+      - cache:/home/node/.cache:nocopy",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runMoltctl(t, append(slices.Clone(noEngine), tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("got a multi-line error %q, want one line", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("got output\n%s\nwant it to contain %q", out, w)
				}
			}
			if strings.Contains(out, "secret") {
				t.Errorf("got output with a secret value:\n%s", out)
			}
			after, _ := os.ReadFile(file)
			if !bytes.Equal(before, after) {
				t.Errorf("got %s changed by a dry run", file)
			}
			if _, err := os.Stat(file + ".moltctl-backup"); err == nil {
				t.Errorf("got a backup written by a dry run")
			}
			if left, _ := os.ReadDir(state); len(left) > 0 {
				t.Errorf("got %v in the state directory, want nothing written", left)
			}
		})
	}
}

// TestMigrateJSON checks the exact shape of the --json plan.
func TestMigrateJSON(t *testing.T) {
	dir, file := migrateProject(t)
	out, err := runMoltctl(t, "-H", "unix://"+filepath.Join(dir, "no-engine.sock"), "-f", file,
		"migrate", "--dry-run", "--json", "--owner", "1000:1000")
	if err != nil {
		t.Fatal(err)
	}
	var plan map[string]any
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("got invalid JSON %v:\n%s", err, out)
	}
	keys := func(v any) []string {
		m, _ := v.(map[string]any)
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	check := func(what string, v any, want ...string) {
		t.Helper()
		slices.Sort(want)
		if got := keys(v); !slices.Equal(got, want) {
			t.Errorf("%s: got keys %v, want %v", what, got, want)
		}
	}
	check("plan", plan, "project", "conversions", "kept", "services", "bytes", "files", "space_error")
	convs, _ := plan["conversions"].([]any)
	if len(convs) != 2 {
		t.Fatalf("got %d conversions, want 2:\n%s", len(convs), out)
	}
	check("conversion", convs[0], "volume", "name", "source", "owner", "owner_from", "bytes", "files", "empty", "mounts")
	c := convs[1].(map[string]any)
	if c["volume"] != "state" || c["name"] != "clitest_state" || c["source"] != filepath.Join(dir, "state") ||
		c["owner"] != "1000:1000" || c["owner_from"] != "flag" || c["empty"] != false || c["files"] != 1.0 {
		t.Errorf("got conversion %v, want state of %s owned by 1000:1000", c, dir)
	}
	mounts, _ := c["mounts"].([]any)
	if len(mounts) != 2 {
		t.Fatalf("got %d mounts of state, want 2", len(mounts))
	}
	check("mount", mounts[0], "service", "target", "read_only", "file")
	if m := mounts[0].(map[string]any); m["service"] != "cli" || m["read_only"] != true || m["file"] != file {
		t.Errorf("got mount %v, want cli read-only in %s", m, file)
	}
	kept, _ := plan["kept"].([]any)
	if len(kept) != 1 {
		t.Fatalf("got %d kept, want 1", len(kept))
	}
	check("kept", kept[0], "service", "source", "target", "reason")
	if got := plan["services"]; len(got.([]any)) != 2 {
		t.Errorf("got services %v, want cli and gateway", got)
	}
}

// TestMigrateExample plans the bundled example (examples/moltbot) on a copy,
// with the directories scripts/example creates.
func TestMigrateExample(t *testing.T) {
	src, err := os.ReadFile("../../examples/moltbot/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, src, 0o644)
	for _, d := range []string{"data/openclaw", "data/workspace", "data/cache"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "data/openclaw/openclaw.json"), []byte("{}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "data/workspace/AGENTS.md"), []byte("#\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "data/gateway.env"), []byte("K=v\n"), 0o644)
	out, err := runMoltctl(t, "-H", "unix://"+filepath.Join(dir, "no.sock"), "-f", file, "migrate", "--dry-run", "--json", "--owner", "1000:1000")
	if err != nil {
		t.Fatal(err)
	}
	var plan struct {
		Conversions []struct {
			Volume string
			Empty  bool
		}
		Kept     []struct{ Target, Reason string }
		Services []string
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range plan.Conversions {
		got = append(got, c.Volume+map[bool]string{true: "(nocopy)"}[c.Empty])
	}
	if want := []string{"cache(nocopy)", "openclaw", "workspace"}; !slices.Equal(got, want) {
		t.Errorf("got conversions %v, want %v", got, want)
	}
	if len(plan.Kept) != 2 || plan.Kept[0].Reason != "single file" {
		t.Errorf("got kept %+v, want gateway.env (single file) and docker.sock", plan.Kept)
	}
	if want := []string{"cli", "gateway"}; !slices.Equal(plan.Services, want) {
		t.Errorf("got services %v, want %v", plan.Services, want)
	}
}
