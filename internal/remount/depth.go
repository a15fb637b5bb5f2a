package remount

import (
	"context"

	"github.com/moby/moby/client"
)

// The layer depth cap. The overlay2 graph driver refuses an image deeper than 125
// layers ("max depth exceeded"), at commit and create. The containerd image store
// (Docker 29's default) has no such check: a deeper commit succeeds and the image
// fails later, when a container on it is mounted. moltctl counts the layers itself
// (RootFS.Layers: the same count on both stores, a commit adds one) and refuses
// past DefaultMaxLayers on both stores, so that a snapshot made on one store still
// runs on the other (the images move when a host switches stores) and the failure
// comes before anything changed, with the way out (--flatten) named.

// infoer is the engine call that tells the image store apart; *client.Client has it.
type infoer interface {
	Info(ctx context.Context, options client.InfoOptions) (client.SystemInfoResult, error)
}

// ContainerdStore reports whether the engine keeps its images in the containerd
// image store (a snapshotter) rather than a graph driver such as overlay2. An engine
// that does not say is taken for a graph driver.
func ContainerdStore(ctx context.Context, eng any) bool {
	in, ok := eng.(infoer)
	if !ok {
		return false
	}
	res, err := in.Info(ctx, client.InfoOptions{})
	if err != nil {
		return false
	}
	for _, kv := range res.Info.DriverStatus {
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			return true
		}
	}
	return false
}

// MaxLayers is the deepest image moltctl commits onto on eng (see above).
func MaxLayers(ctx context.Context, eng any) int {
	return DefaultMaxLayers
}
