package volumes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// tmpfsVolume creates a volume on a tmpfs with the given mount options.
func tmpfsVolume(tb testing.TB, opts string) string {
	tb.Helper()
	name := dockertest.Name("moltvol")
	tb.Cleanup(func() { dockertest.Run("docker", "volume", "rm", "-f", name) })
	dockertest.Docker(tb, "volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o="+opts, name)
	return name
}

// TestCopyRoom: inodes running out are reported as inodes (with megabytes
// free), and the full pass keeps Reserve bytes free for the snapshots.
func TestCopyRoom(t *testing.T) {
	eng := dockertest.Engine(t)
	ctx := context.Background()
	hopts := helperOpts(t)
	t.Run("inodes", func(t *testing.T) {
		src := t.TempDir()
		for i := range 100 {
			writeFile(t, filepath.Join(src, fmt.Sprintf("f%03d", i)), "x", 0o644)
		}
		vol := tmpfsVolume(t, "size=10m,nr_inodes=40")
		_, err := Copy(ctx, eng, CopyOptions{Source: src, Volume: vol, Owner: "1:1", Helper: hopts})
		if !errors.Is(err, ErrNoInodes) || !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "inodes") {
			t.Errorf("got %v, want ErrNoInodes (and ErrNoSpace) saying inodes", err)
		}
	})
	t.Run("reserve for the snapshots", func(t *testing.T) {
		src := t.TempDir()
		writeFile(t, filepath.Join(src, "f"), strings.Repeat("x", 1<<20), 0o644)
		vol := tmpfsVolume(t, "size=4m")
		if _, err := Copy(ctx, eng, CopyOptions{Source: src, Volume: vol, Owner: "1:1", Helper: hopts}); err != nil {
			t.Fatalf("got %v without a reserve, want the copy to fit", err)
		}
		_, err := Copy(ctx, eng, CopyOptions{Source: src, Volume: vol, Owner: "1:1", Reserve: 8 << 20, Helper: hopts})
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "snapshots") {
			t.Errorf("got %v, want ErrNoSpace naming the snapshots", err)
		}
	})
}
