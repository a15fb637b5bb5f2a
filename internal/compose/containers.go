package compose

import (
	"context"
	"fmt"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// ContainerLister is the part of the Docker Engine API ServiceContainers uses.
type ContainerLister interface {
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
}

// ServiceContainers lists every container compose made for the service of the
// project (running or not; one-off `run` containers excluded), by compose's labels.
func ServiceContainers(ctx context.Context, eng ContainerLister, project, service string) ([]container.Summary, error) {
	f := client.Filters{}
	f.Add("label", "com.docker.compose.project="+project, "com.docker.compose.service="+service,
		"com.docker.compose.oneoff=False", "com.docker.compose.config-hash")
	res, err := eng.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing the containers of service %s: %w", service, err)
	}
	return res.Items, nil
}
