package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/migrate"
	"github.com/moltctl/moltctl/internal/remount"
)

// TestComposeAdvice: without a docker compose CLI the command says what to
// install (the library's error names no remedy).
func TestComposeAdvice(t *testing.T) {
	dockertest.Engine(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte("name: h13-advice\nservices:\n  app:\n    image: "+dockertest.BusyboxImage+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), []string{"status", "-f", file}, &stdout, &stderr)
	want := "moltctl: status: no docker compose CLI found (tried \"docker compose\" and \"docker-compose\"): docker compose v2+ is required; install the docker compose v2+ plugin\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("got exit code %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
}

// TestAdvice: each library error the command layer advises on gets its flag
// or command once, with the library's message kept in front.
func TestAdvice(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		name string
		got  error
		want string
	}{
		{"no project name", composeAdvice(fmt.Errorf("loading the compose project: %w", compose.ErrNoName)),
			"loading the compose project: project name can't be empty; name the project with -p (--project-name)"},
		{"stdin", composeAdvice(compose.ErrStdin), "a compose file from standard input can't be read again; write it to a file and pass that with -f"},
		{"remount interrupted", remountAdvice(&remount.InterruptedError{Service: "web", Step: "stopped", Journal: "/s/p/remount.json"}, ""),
			"remount of service web (step stopped, /s/p/remount.json): an interrupted remount must be resumed or rolled back first; run moltctl remount web --resume or --rollback"},
		{"remount rollback failed", remountAdvice(&remount.StepError{Step: "starting", Err: cause, Restored: "rolling back failed too: boom (journal kept: j)", Pending: "db"}, ""),
			"starting: cause; rolling back failed too: boom (journal kept: j); run moltctl remount db --rollback"},
		{"no container", remountAdvice(fmt.Errorf("service web: %w", remount.ErrNoContainer), ""),
			"service web: the service has no container: nothing to preserve; create it with docker compose up"},
		{"too deep", remountAdvice(fmt.Errorf("container c: %w", remount.ErrTooDeep), "use --flatten"), "container c: too many image layers; use --flatten"},
		{"keep", validateKeep(1), "--keep 1: must keep at least 2 (the running snapshot and the previous one)"},
		{"option", migrateAdvice(fmt.Errorf("planning the migration: %w", &migrate.OptionError{Option: "exclude", Value: "x", Err: cause}), &migrateOptions{}),
			`--exclude "x": cause`},
		{"migration interrupted", migrateAdvice(fmt.Errorf("project p (step copied): %w", migrate.ErrInterrupted), &migrateOptions{}),
			"project p (step copied): an interrupted migration must be resumed or rolled back first; run moltctl migrate --resume or --rollback"},
		{"rollback stopped, copy-back", migrateAdvice(fmt.Errorf("x: %w: %w", cause, migrate.ErrRollbackStopped), &migrateOptions{rollback: true, copyBack: true}),
			"x: cause: the rollback stopped half way; fix that, then run moltctl migrate --rollback --copy-back again"},
		{"no advice", migrateAdvice(cause, &migrateOptions{}), "cause"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got == nil || tt.got.Error() != tt.want {
				t.Errorf("got %v, want %q", tt.got, tt.want)
			}
		})
	}
}

// TestValidationNamesCommand: a bad flag is refused before the project is
// loaded, and the message names the command once.
func TestValidationNamesCommand(t *testing.T) {
	t.Chdir(t.TempDir()) // no compose file: loading would fail
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"remount", "--keep", "1", "web"}, "moltctl: remount: --keep 1: must keep at least 2 (the running snapshot and the previous one)\n"},
		{[]string{"up", "--keep", "0"}, "moltctl: up: --keep 0: must keep at least 2 (the running snapshot and the previous one)\n"},
		{[]string{"up", "--rebase-conflicts", "mine"}, "moltctl: up: --rebase-conflicts \"mine\": want image or layer\n"},
	} {
		var stdout, stderr bytes.Buffer
		if code := execute(context.Background(), tc.args, &stdout, &stderr); code != 1 || stderr.String() != tc.want {
			t.Errorf("%v: got exit code %d, stderr %q; want 1 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
