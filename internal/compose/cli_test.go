package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// fakeDocker puts a `docker` on PATH (and nothing else) that logs its
// arguments to the returned file, answers `compose version --short` with
// version and a dry-run up with two containers' verbs on stderr.
func fakeDocker(tb testing.TB, version string) (log string) {
	tb.Helper()
	dir := tb.TempDir()
	log = filepath.Join(dir, "calls")
	script := `#!/bin/sh
echo "$*" >>` + log + `
case "$*" in
*"version --short") echo ` + version + ` ;;
*"--dry-run up"*) printf 'DRY-RUN MODE -  Container p-web-1  Recreate\nDRY-RUN MODE -  Container p-web-1  Recreated\nDRY-RUN MODE -  Container p-db-1  Running\n' >&2 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("PATH", dir)
	return log
}

// loadFixture loads a one-service project from a temp dir.
func loadFixture(tb testing.TB, opts Options) *Project {
	tb.Helper()
	dir := tb.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte("name: p\nservices:\n  web:\n    image: busybox\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	opts.Files = []string{file}
	p, err := Load(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func calls(tb testing.TB, log string) []string {
	tb.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestCLIFoundOnce: the compose CLI is looked up (and its version asked) once
// per project, also across a Reload, and runs with the project's flags and
// the environment it was loaded with.
func TestCLIFoundOnce(t *testing.T) {
	p := loadFixture(t, Options{CLIEnv: []string{"DOCKER_HOST=unix:///nowhere.sock"}})
	log := fakeDocker(t, "v2.30.1")
	ctx := context.Background()
	// Reloaded before the CLI is first needed (migrate's rollback does so).
	np, err := p.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []*Project{np, p, p} {
		c, err := q.CLI(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Version(); got != "2.30.1" {
			t.Errorf("version: got %q, want 2.30.1", got)
		}
	}
	c, err := np.CLI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, "ps"); err != nil {
		t.Fatal(err)
	}
	got := calls(t, log)
	want := []string{"compose version --short", "compose " + strings.Join(p.Args(), " ") + " ps"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls: got %q, want %q", got, want)
	}
}

func TestCLIRefused(t *testing.T) {
	tests := []struct {
		name    string
		version string // "" no docker at all
		want    string
	}{
		{"none", "", "no docker compose CLI found"},
		{"v1 only", "1.29.2", "only docker compose v1 is installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadFixture(t, Options{})
			if tt.version == "" {
				t.Setenv("PATH", t.TempDir())
			} else {
				fakeDocker(t, tt.version)
			}
			_, err := p.CLI(context.Background())
			if !errors.Is(err, ErrNoCLI) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrNoCLI saying %q", err, tt.want)
			}
		})
	}
}

// TestProjectStdin: a project read from standard input can't be given to the
// compose CLI nor loaded again.
func TestProjectStdin(t *testing.T) {
	p := &Project{Project: &types.Project{Name: "x"}, Options: Options{Files: []string{"-"}}}
	if _, err := p.CLI(context.Background()); !errors.Is(err, ErrStdin) {
		t.Errorf("CLI: got %v, want ErrStdin", err)
	}
	if _, err := p.Reload(context.Background()); !errors.Is(err, ErrStdin) {
		t.Errorf("Reload: got %v, want ErrStdin", err)
	}
}

func TestWouldRecreate(t *testing.T) {
	p := loadFixture(t, Options{})
	log := fakeDocker(t, "2.30.1")
	c, err := p.CLI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.WouldRecreate(context.Background(), "web", "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got["p-web-1"] {
		t.Errorf("got %v, want only p-web-1", got)
	}
	want := "compose " + strings.Join(p.Args(), " ") + " --dry-run up -d --no-deps --pull never --no-build web db"
	if c := calls(t, log); c[len(c)-1] != want {
		t.Errorf("call: got %q, want %q", c[len(c)-1], want)
	}
}

// TestLoadErrorNamesOnce: a project that does not load names the loading once.
func TestLoadErrorNamesOnce(t *testing.T) {
	_, err := Load(context.Background(), Options{Files: []string{filepath.Join(t.TempDir(), "nope.yaml")}})
	if err == nil || strings.Count(err.Error(), "loading") != 1 {
		t.Errorf("got %v, want the loading named once", err)
	}
}
