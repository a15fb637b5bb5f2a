package remount_test

import (
	"context"
	"testing"

	"github.com/moltctl/moltctl/internal/remount"
)

// TestStatusWritableBytes checks the writable layer's size in status on the
// engine under test: the bytes written, not the store's mount-point stubs.
func TestStatusWritableBytes(t *testing.T) {
	f := setup(t) // wrote "kept\n" into /opt/kept
	const n = 200_000
	f.compose(t, "exec", "-T", "web", "sh", "-c", "head -c 200000 /dev/zero > /opt/big")
	rep, err := remount.Status(context.Background(), f.eng, remount.StatusOptions{Project: f.project(t)})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	// overlay2 sums file sizes; the containerd store counts 4 KiB blocks and directories.
	if got := rep.Containers[0].WritableBytes; got < n || got > n+64<<10 {
		t.Errorf("writable bytes: got %d, want %d to %d", got, n, n+64<<10)
	}
}
