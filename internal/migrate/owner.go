package migrate

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// ProbeLabel marks the containers Prepare creates (never starts) to copy an
// image's /etc/passwd and /etc/group out; it removes them right after.
const ProbeLabel = "io.moltctl.probe"

// userDB is an image's /etc/passwd and /etc/group.
type userDB struct {
	users  []dbEntry // name, uid, primary gid
	groups []dbEntry // name, gid
}

type dbEntry struct {
	name    string
	id, gid int
}

type ownerResolver struct {
	eng Engine
	dbs map[string]*userDB
}

func newOwnerResolver(eng Engine) *ownerResolver {
	return &ownerResolver{eng: eng, dbs: map[string]*userDB{}}
}

// volumeOwner resolves the uid:gid the data of c will get (see Prepare).
func (r *ownerResolver) volumeOwner(ctx context.Context, project *types.Project, c *Conversion, flag string) (string, error) {
	if flag != "" {
		svc := project.Services[c.Mounts[0].Service]
		o, err := r.resolve(ctx, project, svc, flag)
		if err != nil {
			return "", fmt.Errorf("resolving --owner %s: %w", flag, err)
		}
		return o, nil
	}
	var owners []string
	for _, m := range c.Mounts {
		svc := project.Services[m.Service]
		o, err := r.serviceOwner(ctx, project, svc)
		if err != nil {
			return "", fmt.Errorf("resolving the owner of %s for service %s: %w", c.Source, m.Service, err)
		}
		if o != "" && !strings.HasPrefix(o, "0:") && !slices.Contains(owners, o) {
			owners = append(owners, o)
		}
	}
	switch len(owners) {
	case 0:
		o, err := statOwner(c.Source)
		if err != nil {
			return "", fmt.Errorf("resolving the owner of %s: %w", c.Source, err)
		}
		return o, nil
	case 1:
		return owners[0], nil
	}
	return "", fmt.Errorf("resolving the owner of %s: its services run as different users (%s); choose one with --owner: %w",
		c.Source, strings.Join(owners, ", "), ErrInvalid)
}

// BootstrapUserEnv is the variable naming the user `moltctl bootstrap` drops
// to (docs/bootstrap.md): an image that starts as root with it set runs its app
// as that user, so that user owns the migrated data.
const BootstrapUserEnv = "MOLTCTL_USER"

// serviceOwner is the uid:gid the service runs as: user:, else the image's USER,
// else the user moltctl bootstrap drops to (BootstrapUserEnv in the service's
// environment, else in the image's), else "" (the image runs as root and has
// no opinion).
func (r *ownerResolver) serviceOwner(ctx context.Context, project *types.Project, svc types.ServiceConfig) (string, error) {
	if svc.User != "" {
		return r.resolve(ctx, project, svc, svc.User)
	}
	bootstrapUser := func(imageEnv []string) string {
		if v, ok := svc.Environment[BootstrapUserEnv]; ok && v != nil {
			return *v
		}
		for _, e := range imageEnv {
			if v, ok := strings.CutPrefix(e, BootstrapUserEnv+"="); ok {
				return v
			}
		}
		return ""
	}
	image := imageName(project, svc)
	if r.eng == nil {
		return "", fmt.Errorf("reading the USER of image %s (or use --owner): %w", image, ErrNoEngine)
	}
	res, err := r.eng.ImageInspect(ctx, image)
	if cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("image %s is not present: build or pull it first, or use --owner", image)
	}
	if err != nil {
		return "", fmt.Errorf("inspecting image %s: %w", image, err)
	}
	if res.Config == nil {
		return "", nil
	}
	if u := res.Config.User; u != "" && u != "0" && u != "root" && !strings.HasPrefix(u, "0:") && !strings.HasPrefix(u, "root:") {
		return r.resolve(ctx, project, svc, u)
	}
	if u := bootstrapUser(res.Config.Env); u != "" {
		return r.resolve(ctx, project, svc, u)
	}
	if res.Config.User == "" {
		return "", nil
	}
	return r.resolve(ctx, project, svc, res.Config.User)
}

// resolve turns "user[:group]" (names or numbers) into uid:gid, reading the
// service image's /etc/passwd and /etc/group only when a name or a missing
// group needs it. A uid without a group gets the user's primary group, else 0,
// as the engine does.
func (r *ownerResolver) resolve(ctx context.Context, project *types.Project, svc types.ServiceConfig, spec string) (string, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, uerr := strconv.Atoi(u)
	gid, gerr := strconv.Atoi(g)
	if uerr == nil && hasGroup && gerr == nil {
		if uid < 0 || gid < 0 {
			return "", fmt.Errorf("negative id in %q: %w", spec, ErrInvalid)
		}
		return fmt.Sprintf("%d:%d", uid, gid), nil
	}
	if u == "" || (hasGroup && g == "") {
		return "", fmt.Errorf("%q is not user[:group]: %w", spec, ErrInvalid)
	}
	image := imageName(project, svc)
	db, err := r.userDB(ctx, image)
	if err != nil {
		return "", err
	}
	var user *dbEntry
	for i, e := range db.users {
		if (uerr == nil && e.id == uid) || (uerr != nil && e.name == u) {
			user = &db.users[i]
			break
		}
	}
	switch {
	case user != nil:
		uid = user.id
	case uerr != nil:
		return "", fmt.Errorf("no user %s in the /etc/passwd of image %s: %w", u, image, ErrInvalid)
	}
	switch {
	case hasGroup && gerr == nil:
	case hasGroup:
		found := false
		for _, e := range db.groups {
			if e.name == g {
				gid, found = e.id, true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("no group %s in the /etc/group of image %s: %w", g, image, ErrInvalid)
		}
	case user != nil:
		gid = user.gid
	default:
		gid = 0
	}
	return fmt.Sprintf("%d:%d", uid, gid), nil
}

func imageName(project *types.Project, svc types.ServiceConfig) string {
	if svc.Image != "" {
		return svc.Image
	}
	return project.Name + "-" + svc.Name
}

// userDB reads /etc/passwd and /etc/group of image without running it: it
// creates a container (never started), copies the two files out and removes
// the container.
func (r *ownerResolver) userDB(ctx context.Context, image string) (*userDB, error) {
	if db, ok := r.dbs[image]; ok {
		return db, nil
	}
	if r.eng == nil {
		return nil, fmt.Errorf("reading the users of image %s (or use --owner uid:gid): %w", image, ErrNoEngine)
	}
	db, err := readUserDB(ctx, r.eng, image)
	if err != nil {
		return nil, err
	}
	r.dbs[image] = db
	return db, nil
}

// staleProbe is the age after which a probe container is taken for one a
// killed run left behind (a probe lives for well under a second).
const staleProbe = 10 * time.Minute

// removeStaleProbes removes the never-started probe containers that runs killed
// between create and remove left behind. Failures are ignored: they only leave
// a stopped container.
func removeStaleProbes(ctx context.Context, eng Engine) {
	f := client.Filters{}
	f.Add("label", ProbeLabel)
	res, err := eng.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		if c.State == container.StateCreated && time.Since(time.Unix(c.Created, 0)) > staleProbe {
			eng.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
}

func readUserDB(ctx context.Context, eng Engine, image string) (_ *userDB, err error) {
	removeStaleProbes(ctx, eng)
	b := make([]byte, 6)
	rand.Read(b)
	name := "moltctl-probe-" + hex.EncodeToString(b)
	created, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:           image,
			Entrypoint:      []string{"/moltctl-never-started"},
			Cmd:             []string{},
			Labels:          map[string]string{ProbeLabel: "users"},
			NetworkDisabled: true,
		},
		HostConfig: &container.HostConfig{},
	})
	if cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %s is not present: build or pull it first, or use --owner", image)
	}
	if err != nil {
		return nil, fmt.Errorf("creating a container of image %s to read its users: %w", image, err)
	}
	defer func() {
		_, rerr := eng.ContainerRemove(context.WithoutCancel(ctx), created.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if rerr != nil && err == nil {
			err = fmt.Errorf("removing container %s after reading the users of image %s: %w", name, image, rerr)
		}
	}()
	db := &userDB{}
	passwd, err := copyFile(ctx, eng, created.ID, "/etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("reading /etc/passwd of image %s: %w", image, err)
	}
	group, err := copyFile(ctx, eng, created.ID, "/etc/group")
	if err != nil {
		return nil, fmt.Errorf("reading /etc/group of image %s: %w", image, err)
	}
	db.users = parseDB(passwd, true)
	db.groups = parseDB(group, false)
	return db, nil
}

// maxDBSize bounds what is read of /etc/passwd or /etc/group.
const maxDBSize = 4 << 20

// copyFile returns the content of a regular file of a container, or nil when
// the path does not exist or is not a regular file.
func copyFile(ctx context.Context, eng Engine, id, path string) ([]byte, error) {
	res, err := eng.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	hdr, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil, nil
	}
	return io.ReadAll(io.LimitReader(tr, maxDBSize))
}

// parseDB parses passwd (name:x:uid:gid:...) or group (name:x:gid:...) lines.
func parseDB(data []byte, passwd bool) []dbEntry {
	var out []dbEntry
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 64<<10), maxDBSize)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 3 || (passwd && len(f) < 4) {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		e := dbEntry{name: f[0], id: id}
		if passwd {
			if e.gid, err = strconv.Atoi(f[3]); err != nil {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}
