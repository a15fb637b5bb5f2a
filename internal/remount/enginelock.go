package remount

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/moltctl/moltctl/internal/statefile"
)

// The engine lock is a container that is never started: creating a container
// under a name that exists fails on every engine, whoever asks, so it is seen
// by every moltctl run against the engine, whatever its state directory, user
// or machine. Its labels say who holds it.
const (
	lockImage        = "moltctl-lock:1"
	LabelLockProject = "io.moltctl.lock.project"
	LabelLockOwner   = "io.moltctl.lock.owner" // user@host
	LabelLockHost    = "io.moltctl.lock.host"
	LabelLockPID     = "io.moltctl.lock.pid"
	LabelLockStarted = "io.moltctl.lock.started" // RFC 3339
)

// LockContainer is the name of the engine lock of project.
func LockContainer(project string) string { return "moltctl-lock-" + strings.ToLower(project) }

// LockEngine takes the project's local lock (statefile.Lock), then its lock on the
// engine (a created, never started container LockContainer(project) labelled
// with the owner, host, pid and start time), and returns the function that
// releases both. A lock left by a process of this host that no longer runs is
// stale and taken over. It returns an error wrapping ErrLocked, naming the
// owner and the start time, when another run holds either.
func LockEngine(ctx context.Context, eng Engine, project string) (unlock func(), err error) {
	local, err := statefile.Lock(project)
	if err != nil {
		return nil, err
	}
	release, err := lockEngine(ctx, eng, project)
	if err != nil {
		local()
		return nil, err
	}
	return func() { release(); local() }, nil
}

func lockEngine(ctx context.Context, eng Engine, project string) (func(), error) {
	if _, err := eng.ImageInspect(ctx, lockImage); err != nil {
		if err := importLockImage(ctx, eng); err != nil {
			return nil, fmt.Errorf("locking project %s on the engine: %w", project, err)
		}
	}
	name := LockContainer(project)
	host, _ := os.Hostname()
	owner := "uid " + strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		owner = u.Username
	}
	labels := map[string]string{
		LabelLockProject: project, LabelLockOwner: owner + "@" + host, LabelLockHost: host,
		LabelLockPID: strconv.Itoa(os.Getpid()), LabelLockStarted: time.Now().UTC().Format(time.RFC3339),
	}
	for attempt := 0; ; attempt++ {
		res, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name,
			Config: &container.Config{Image: lockImage, Cmd: []string{"/moltctl-lock"}, Labels: labels}})
		if err == nil {
			id := res.ID
			return func() {
				eng.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true})
			}, nil
		}
		if !cerrdefs.IsConflict(err) {
			return nil, fmt.Errorf("locking project %s on the engine: %w", project, err)
		}
		ins, ierr := eng.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if ierr != nil {
			if isNotFound(ierr) && attempt < 3 {
				continue // released meanwhile
			}
			return nil, fmt.Errorf("locking project %s on the engine: %w", project, err)
		}
		l := map[string]string{}
		if ins.Container.Config != nil {
			l = ins.Container.Config.Labels
		}
		if attempt < 3 && staleLock(l, host) {
			eng.ContainerRemove(ctx, ins.Container.ID, client.ContainerRemoveOptions{Force: true})
			continue
		}
		return nil, fmt.Errorf("project %s: %w (engine lock %s held by %s, pid %s, since %s)",
			project, ErrLocked, name, l[LabelLockOwner], l[LabelLockPID], l[LabelLockStarted])
	}
}

// staleLock: the lock was taken on this host by a process that no longer runs.
// A lock of another host is never stale: only its owner (or an admin who
// removes the container) can tell.
func staleLock(l map[string]string, host string) bool {
	if l[LabelLockHost] != host {
		return false
	}
	pid, err := strconv.Atoi(l[LabelLockPID])
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// importLockImage imports the empty image lock containers are created from.
func importLockImage(ctx context.Context, eng Engine) error {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.Close()
	out, err := eng.ImageImport(ctx, client.ImageImportSource{Source: &b, SourceName: "-"}, lockImage,
		client.ImageImportOptions{Message: "moltctl project lock"})
	if err != nil {
		return fmt.Errorf("importing %s: %w", lockImage, err)
	}
	defer out.Close()
	var sink bytes.Buffer
	sink.ReadFrom(out)
	if _, err := eng.ImageInspect(ctx, lockImage); err != nil {
		return fmt.Errorf("importing %s: %w", lockImage, err)
	}
	return nil
}
