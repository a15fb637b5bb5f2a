package remount_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/remount"
)

// TestEngineDiesRemovingOld kills a private engine (SIGKILL) while it removes
// the old container, as compose does after remount's step composing: after the
// restart the old container is Dead, part of its layer gone, and can't be
// started. --rollback must put the service back from the snapshot (kept), and
// --resume must finish on it; neither may count on the Dead container.
func TestEngineDiesRemovingOld(t *testing.T) {
	for _, mode := range []string{"rollback", "resume"} {
		t.Run(mode, func(t *testing.T) {
			pe := dockertest.NewPrivateEngine(t)
			f := setup(t)
			// Enough files in the layer for the removal to take a while.
			f.compose(t, "exec", "-T", "web", "sh", "-c", "mkdir -p /opt/many && cd /opt/many && seq 1 8000 | xargs touch")
			old := f.containerID(t)
			f.killAfter(t, "composing")
			rm := exec.Command("docker", "rm", "-f", old)
			if err := rm.Start(); err != nil {
				t.Fatal(err)
			}
			// The engine marks the container Dead on disk before it removes its layer.
			cfg := filepath.Join(pe.DataRoot, "containers", old, "config.v2.json")
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if b, err := os.ReadFile(cfg); err != nil || strings.Contains(string(b), `"Dead":true`) {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			pe.Kill(t)
			rm.Wait()
			pe.Start(t)
			if got := dockertest.Docker(t, "inspect", "-f", "{{.State.Status}}", old); got != "dead" {
				t.Fatalf("got the old container %q after the engine's death, want dead", got)
			}
			if mode == "rollback" {
				f.write(t, baseCompose)
				res, err := remount.Rollback(context.Background(), f.eng, f.options(t))
				if err != nil {
					t.Fatalf("rollback: %v", err)
				}
				f.checkRestored(t)
				if _, err := f.eng.ImageInspect(context.Background(), res.Snapshot); err != nil {
					t.Errorf("got snapshot %s removed (%v), want it kept", res.Snapshot, err)
				}
			} else {
				if _, err := remount.Resume(context.Background(), f.eng, f.options(t)); err != nil {
					t.Fatalf("resume: %v", err)
				}
				f.checkLayer(t)
				if env := f.env(t); !strings.Contains(env, "ADDED=yes") {
					t.Errorf("env after resume: got keys %v, want ADDED", envKeys(env))
				}
				f.checkNoJournal(t)
			}
			if got := f.compose(t, "exec", "-T", "web", "sh", "-c", "ls /opt/many | wc -l"); strings.TrimSpace(got) != "8000" {
				t.Errorf("got %s files of the layer, want 8000 (from the snapshot)", got)
			}
			f.checkComposeKeeps(t)
		})
	}
}
