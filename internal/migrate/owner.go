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

	"github.com/moltctl/moltctl/internal/volumes"
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
	// facts: the owners of the sources where the engine runs
	facts map[string]*volumes.SourceInfo
	dbs   map[string]*userDB
	// missing are the images found not present locally, each once, in order.
	missing []string
	// noEngine: an owner needed an image and there was no engine to ask.
	noEngine bool
}

func newOwnerResolver(eng Engine, facts map[string]*volumes.SourceInfo) *ownerResolver {
	return &ownerResolver{eng: eng, facts: facts, dbs: map[string]*userDB{}}
}

// Where a conversion's owner came from (Conversion.OwnerFrom); the variables an
// image that starts as root reads give "env:" and the variable's name.
const (
	OwnerFromFlag    = "flag"    // --owner
	OwnerFromUser    = "user"    // the service's user:
	OwnerFromImage   = "image"   // the image's USER
	OwnerFromSource  = "source"  // the directory's current owner
	OwnerFromUnknown = "unknown" // an image needed to tell is not present
	// OwnerUnknown is Conversion.Owner when OwnerFrom is OwnerFromUnknown.
	OwnerUnknown = "unknown"
)

// ErrImageMissing is wrapped by errors about an image that is not present locally.
var ErrImageMissing = errors.New("image not present locally")

// imageMissingError names the image.
type imageMissingError struct{ image string }

func (e *imageMissingError) Error() string { return "image " + e.image + " is not present locally" }
func (e *imageMissingError) Unwrap() error { return ErrImageMissing }

// volumeOwner resolves the uid:gid the data of c will get and where it came
// from (see Prepare). flag is the --owner for c's source (or for all). An owner
// that needs an image that is not present (or no engine to read it from) is
// OwnerUnknown; the images are recorded in r.missing.
func (r *ownerResolver) volumeOwner(ctx context.Context, project *types.Project, c *Conversion, flag string) (string, string, error) {
	if flag != "" {
		svc := project.Services[c.Mounts[0].Service]
		o, err := r.resolve(ctx, project, svc, flag)
		if r.unknown(err) {
			return OwnerUnknown, OwnerFromUnknown, nil
		}
		if err != nil {
			return "", "", fmt.Errorf("resolving the owner %s: %w", flag, err)
		}
		return o, OwnerFromFlag, nil
	}
	var owners, froms []string
	unknown := false
	for _, m := range c.Mounts {
		svc := project.Services[m.Service]
		o, from, err := r.serviceOwner(ctx, project, svc)
		if r.unknown(err) {
			unknown = true // go on: every missing image is named
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("resolving the owner of %s for service %s: %w", c.Source, m.Service, err)
		}
		if o != "" && !strings.HasPrefix(o, "0:") && !slices.Contains(owners, o) {
			owners = append(owners, o)
			froms = append(froms, from)
		}
	}
	switch {
	case unknown:
		return OwnerUnknown, OwnerFromUnknown, nil
	case len(owners) == 0:
		f := r.facts[c.Source]
		if f == nil || f.Owner == "" {
			return "", "", fmt.Errorf("resolving the owner of %s: the source was not inspected", c.Source)
		}
		return f.Owner, OwnerFromSource, nil
	case len(owners) == 1:
		return owners[0], froms[0], nil
	}
	return "", "", mark(fmt.Errorf("resolving the owner of %s: its services run as different users (%s): %w",
		c.Source, strings.Join(owners, ", "), ErrInvalid), ErrOwnersDiffer)
}

// unknown reports whether err is an image not present, recording the
// image, or the lack of an engine to read an image from.
func (r *ownerResolver) unknown(err error) bool {
	if errors.Is(err, ErrNoEngine) {
		r.noEngine = true
		return true
	}
	var m *imageMissingError
	if !errors.As(err, &m) {
		return false
	}
	if !slices.Contains(r.missing, m.image) {
		r.missing = append(r.missing, m.image)
	}
	return true
}

// BootstrapUserEnv is the variable naming the user `moltctl bootstrap` drops
// to (docs/bootstrap.md): an image that starts as root with it set runs its app
// as that user, so that user owns the migrated data.
const BootstrapUserEnv = "MOLTCTL_USER"

// rootEnvUsers are the conventions by which an image that starts as root is
// told the user to run its app as, in order: moltctl bootstrap's user (a name
// or uid[:gid]), linuxserver.io's PUID/PGID, paperless-ngx's
// USERMAP_UID/USERMAP_GID (numbers).
var rootEnvUsers = []struct{ uid, gid string }{
	{BootstrapUserEnv, ""},
	{"PUID", "PGID"},
	{"USERMAP_UID", "USERMAP_GID"},
}

// envUser finds the first of rootEnvUsers set in the service's environment,
// else in the image's, and returns it as user[:group] with the variable's name.
// The values of PUID and the like must be numbers; an empty value is unset.
func envUser(svc types.ServiceConfig, imageEnv []string) (spec, variable string, err error) {
	lookups := []func(string) string{
		func(k string) string {
			if v, ok := svc.Environment[k]; ok && v != nil {
				return *v
			}
			return ""
		},
		func(k string) string {
			for _, e := range imageEnv {
				if v, ok := strings.CutPrefix(e, k+"="); ok {
					return v
				}
			}
			return ""
		},
	}
	for i, get := range lookups {
		for _, conv := range rootEnvUsers {
			u := get(conv.uid)
			if u == "" {
				continue
			}
			if conv.gid == "" {
				return u, conv.uid, nil
			}
			where := "the environment of service " + svc.Name
			if i == 1 {
				where = "the image's environment"
			}
			if n, err := strconv.Atoi(u); err != nil || n < 0 {
				return "", "", fmt.Errorf("%s in %s is not a numeric uid: %w", conv.uid, where, ErrInvalid)
			}
			if g := get(conv.gid); g != "" {
				if n, err := strconv.Atoi(g); err != nil || n < 0 {
					return "", "", fmt.Errorf("%s in %s is not a numeric gid: %w", conv.gid, where, ErrInvalid)
				}
				u += ":" + g
			}
			return u, conv.uid, nil
		}
	}
	return "", "", nil
}

// serviceOwner is the uid:gid the service runs as and where it came from:
// user:, else the image's USER, else (the image starts as root) the user named
// by one of rootEnvUsers in the service's environment, else in the image's,
// else "" (the image runs as root and has no opinion). An image that is not
// present gives an error wrapping ErrImageMissing.
func (r *ownerResolver) serviceOwner(ctx context.Context, project *types.Project, svc types.ServiceConfig) (string, string, error) {
	if svc.User != "" {
		o, err := r.resolve(ctx, project, svc, svc.User)
		return o, OwnerFromUser, err
	}
	image := imageName(project, svc)
	if r.eng == nil {
		return "", "", fmt.Errorf("reading the USER of image %s: %w", image, ErrNoEngine)
	}
	res, err := r.eng.ImageInspect(ctx, image)
	if cerrdefs.IsNotFound(err) {
		return "", "", &imageMissingError{image}
	}
	if err != nil {
		return "", "", fmt.Errorf("inspecting image %s: %w", image, err)
	}
	if res.Config == nil {
		return "", "", nil
	}
	if u := res.Config.User; u != "" && u != "0" && u != "root" && !strings.HasPrefix(u, "0:") && !strings.HasPrefix(u, "root:") {
		o, err := r.resolve(ctx, project, svc, u)
		return o, OwnerFromImage, err
	}
	spec, variable, err := envUser(svc, res.Config.Env)
	if err != nil {
		return "", "", err
	}
	if spec != "" {
		o, err := r.resolve(ctx, project, svc, spec)
		return o, "env:" + variable, err
	}
	if res.Config.User == "" {
		return "", "", nil
	}
	o, err := r.resolve(ctx, project, svc, res.Config.User)
	return o, OwnerFromImage, err
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
		return nil, fmt.Errorf("reading the users of image %s: %w", image, ErrNoEngine)
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
		return nil, &imageMissingError{image}
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
