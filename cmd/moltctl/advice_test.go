package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
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
