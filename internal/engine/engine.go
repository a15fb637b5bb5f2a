// Package engine connects to the Docker Engine the way the docker CLI does:
// --host / DOCKER_HOST, then --context / DOCKER_CONTEXT, then the current context
// of the CLI's config file, then the default socket. The API version is negotiated,
// so engines from API 1.40 (Docker 19.03) up to today's are spoken to.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/moby/client"
)

// Options choose the engine endpoint. Empty fields fall back to the environment
// and the docker CLI's configuration, as the docker CLI does.
type Options struct {
	// Host is --host (-H): an endpoint such as unix:///var/run/docker.sock or tcp://h:2376.
	Host string
	// Context is --context: the name of a docker CLI context.
	Context string
}

// Connect returns a client for the engine selected by opts, and checks that the
// engine answers. It returns an error naming the endpoint when it does not.
func Connect(ctx context.Context, opts Options) (*client.Client, error) {
	host, err := Endpoint(opts)
	if err != nil {
		return nil, err
	}
	copts := []client.Opt{client.FromEnv}
	where := host
	if where == "" {
		where = os.Getenv("DOCKER_HOST")
	}
	if ssh, err := sshOpts(where); err != nil {
		return nil, err
	} else if ssh != nil {
		copts = append(copts, ssh...)
	} else if host != "" {
		copts = append(copts, client.WithHost(host))
	}
	c, err := client.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to the Docker Engine: %w", err)
	}
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		if where == "" {
			where = c.DaemonHost()
		}
		return nil, fmt.Errorf("connecting to the Docker Engine at %s: %w", where, err)
	}
	return c, nil
}

// Endpoint resolves the engine endpoint of opts: "" means the client library's
// default (DOCKER_HOST, else the local socket). It returns an error when a named
// context does not exist.
func Endpoint(opts Options) (string, error) {
	if opts.Host != "" {
		return opts.Host, nil
	}
	if os.Getenv("DOCKER_HOST") != "" && opts.Context == "" {
		return "", nil
	}
	name := opts.Context
	if name == "" {
		name = os.Getenv("DOCKER_CONTEXT")
	}
	if name == "" {
		name = currentContext()
	}
	if name == "" || name == "default" {
		return "", nil
	}
	return contextHost(name)
}

func configDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".docker")
}

func currentContext() string {
	b, err := os.ReadFile(filepath.Join(configDir(), "config.json"))
	if err != nil {
		return ""
	}
	var cfg struct {
		CurrentContext string `json:"currentContext"`
	}
	if json.Unmarshal(b, &cfg) != nil {
		return ""
	}
	return cfg.CurrentContext
}

// contextHost reads the docker endpoint of a CLI context from its metadata file,
// contexts/meta/<sha256(name)>/meta.json in the CLI's config directory.
func contextHost(name string) (string, error) {
	sum := sha256.Sum256([]byte(name))
	p := filepath.Join(configDir(), "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("docker context %q: not found", name)
	}
	if err != nil {
		return "", fmt.Errorf("reading docker context %q: %w", name, err)
	}
	var meta struct {
		Endpoints map[string]struct {
			Host string `json:"Host"`
		} `json:"Endpoints"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return "", fmt.Errorf("reading docker context %q: %w", name, err)
	}
	ep, ok := meta.Endpoints["docker"]
	if !ok || ep.Host == "" {
		return "", fmt.Errorf("docker context %q: no docker endpoint", name)
	}
	return ep.Host, nil
}
