package remount

import (
	"context"
	"path"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// stubSlack bounds what the containerd image store counts in a container's
// writable layer that the container never wrote: the mount points the engine
// creates for /etc/hosts, /etc/hostname, /etc/resolv.conf and volume targets
// (overlay2 keeps them in a separate init layer) and the directories copied up to
// hold them, each counted as a 4 KiB block.
const stubSlack = 64 << 10

// differ is the engine calls that list a container's changes and its mount
// points; *client.Client has them.
type differ interface {
	ContainerDiff(ctx context.Context, id string, options client.ContainerDiffOptions) (client.ContainerDiffResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// writableBytes is the size status reports for a container's writable layer, given
// the engine's SizeRw. The stores count differently: overlay2 sums the sizes of
// the files the container wrote (0 for a fresh container); the containerd store
// reports the disk usage of the layer's directory (blocks, directories included)
// and counts the mount points it created in the layer too, so a fresh container
// has a few KiB. There a small layer whose change list (which leaves those mount
// points out) is empty is reported as 0: nothing the container wrote.
func writableBytes(ctx context.Context, eng any, id string, sizeRw int64, containerd bool) int64 {
	if !containerd || sizeRw <= 0 || sizeRw > stubSlack {
		return sizeRw
	}
	d, ok := eng.(differ)
	if !ok {
		return sizeRw
	}
	res, err := d.ContainerDiff(ctx, id, client.ContainerDiffOptions{})
	if err != nil {
		return sizeRw
	}
	ins, err := d.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return sizeRw
	}
	stubs := map[string]bool{}
	for _, m := range ins.Container.Mounts {
		for p := path.Clean(m.Destination); p != "/" && p != "."; p = path.Dir(p) {
			stubs[p] = true
		}
	}
	for _, ch := range res.Changes {
		if !stubs[path.Clean(ch.Path)] || ch.Kind == container.ChangeDelete {
			return sizeRw
		}
	}
	return 0
}
