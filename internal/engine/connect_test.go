package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/engine"
)

// TestConnectNegotiates talks to the real engine: the negotiated API version must be
// the engine's own (or the client's maximum), never a pinned newer one.
func TestConnectNegotiates(t *testing.T) {
	dockertest.Engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := engine.Connect(ctx, engine.Options{})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer c.Close()
	v, err := c.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatalf("ServerVersion: %v", err)
	}
	if got := c.ClientVersion(); versions.GreaterThan(got, v.APIVersion) {
		t.Errorf("client API version %s is newer than the engine's %s", got, v.APIVersion)
	}
}
