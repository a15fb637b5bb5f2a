package compose

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// composeConfig runs the real `docker compose config --format json` in dir with the given
// global flags and returns the project name, the enabled services and each service's bind sources.
func composeConfig(tb testing.TB, dir string, args ...string) (string, map[string][]string) {
	tb.Helper()
	cmd := exec.Command("docker", append(append([]string{"compose"}, args...), "config", "--format", "json")...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		tb.Fatalf("docker compose config: %v: %s", err, stderr)
	}
	var cfg struct {
		Name     string `json:"name"`
		Services map[string]struct {
			Volumes []struct {
				Type   string `json:"type"`
				Source string `json:"source"`
			} `json:"volumes"`
		} `json:"services"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		tb.Fatalf("parsing compose config: %v", err)
	}
	binds := map[string][]string{}
	for name, s := range cfg.Services {
		binds[name] = []string{}
		for _, v := range s.Volumes {
			if v.Type == "bind" {
				binds[name] = append(binds[name], v.Source)
			}
		}
	}
	return cfg.Name, binds
}

// TestLoadMatchesDockerCompose checks that Load selects the same project as the real
// docker compose CLI under compose's conventions: default file discovery, override
// files, COMPOSE_FILE, COMPOSE_PROJECT_NAME, .env, --env-file, profiles.
func TestLoadMatchesDockerCompose(t *testing.T) {
	dockertest.Compose(t)
	dir := t.TempDir()
	files := map[string]string{
		"compose.yaml": "services:\n  app:\n    image: busybox\n    volumes:\n      - ./data:/data\n      - ${STATE_DIR}:/state\n" +
			"  debug:\n    image: busybox\n    profiles: [debug]\n    volumes: [./dbg:/dbg]\n",
		"compose.override.yaml": "services:\n  app:\n    volumes:\n      - ./extra:/extra\n",
		"other.yaml":            "name: fromfile\nservices:\n  other:\n    image: busybox\n    volumes: [./o:/o]\n",
		".env":                  "STATE_DIR=./state-from-dotenv\n",
		"alt.env":               "STATE_DIR=./state-from-alt\nCOMPOSE_PROJECT_NAME=fromaltenv\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		env  map[string]string
		opts Options
		args []string
	}{
		{name: "defaults with override and .env"},
		{name: "project name flag", opts: Options{ProjectName: "flagname"}, args: []string{"-p", "flagname"}},
		{name: "COMPOSE_PROJECT_NAME", env: map[string]string{"COMPOSE_PROJECT_NAME": "envname"}},
		{name: "env-file", opts: Options{EnvFiles: []string{"alt.env"}}, args: []string{"--env-file", "alt.env"}},
		{name: "profile flag", opts: Options{Profiles: []string{"debug"}}, args: []string{"--profile", "debug"}},
		{name: "COMPOSE_PROFILES", env: map[string]string{"COMPOSE_PROFILES": "debug"}},
		{name: "explicit file skips the override", opts: Options{Files: []string{"compose.yaml"}}, args: []string{"-f", "compose.yaml"}},
		{name: "COMPOSE_FILE with name:", env: map[string]string{"COMPOSE_FILE": "other.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(dir)
			for _, k := range []string{"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "COMPOSE_FILE"} {
				t.Setenv(k, tt.env[k])
				if tt.env[k] == "" {
					os.Unsetenv(k)
				}
			}
			wantName, wantBinds := composeConfig(t, dir, tt.args...)
			p, err := Load(context.Background(), tt.opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if p.Name != wantName {
				t.Errorf("project name: got %q, want %q", p.Name, wantName)
			}
			gotBinds := map[string][]string{}
			for name, s := range p.Services {
				gotBinds[name] = []string{}
				for _, v := range s.Volumes {
					if v.Type == "bind" {
						gotBinds[name] = append(gotBinds[name], v.Source)
					}
				}
			}
			for name := range wantBinds {
				g, w := gotBinds[name], wantBinds[name]
				slices.Sort(g)
				slices.Sort(w)
				if !slices.Equal(g, w) {
					t.Errorf("service %s binds: got %v, want %v", name, g, w)
				}
			}
			if len(gotBinds) != len(wantBinds) {
				t.Errorf("services: got %v, want %v", keys(gotBinds), keys(wantBinds))
			}
			// The compose CLI flags from Args select the same project.
			args := p.Args()
			name2, _ := composeConfig(t, dir, args...)
			if name2 != p.Name {
				t.Errorf("Args() %s selects project %q, want %q", strings.Join(args, " "), name2, p.Name)
			}
		})
	}
}

func keys(m map[string][]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}
