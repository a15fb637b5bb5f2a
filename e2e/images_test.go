package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// Stand-in base images are tagged by a hash of what they are made of, and kept:
// reruns find them. Bump standinFormat when the way they are made changes.
const standinFormat = "1"

// images are the product images built from the Dockerfile for this test run.
type images struct {
	Gateway         string // the default target
	Moltctl         string // --target moltctl
	MoltctlVersion  string // the MOLTCTL_VERSION build arg
	OpenclawVersion string // the Dockerfile's OPENCLAW_VERSION default
}

var (
	productMu    sync.Mutex
	product      *images
	productErr   error
	builtImages  []string // tags and image IDs, removed by TestMain
	repoRootOnce = sync.OnceValues(func() (string, error) { return filepath.Abs("..") })
)

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(builtImages) - 1; i >= 0; i-- {
		dockertest.Run("docker", "image", "rm", builtImages[i])
	}
	os.Exit(code)
}

// repoRoot returns the repository's root directory.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := repoRootOnce()
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// productImages builds the gateway and moltctl images from the repository's
// Dockerfile once per test binary, with the stand-in bases, and returns them.
func productImages(tb testing.TB) images {
	tb.Helper()
	dockertest.Engine(tb)
	productMu.Lock()
	defer productMu.Unlock()
	if product == nil && productErr == nil {
		product, productErr = buildProduct(tb)
	}
	if productErr != nil {
		tb.Fatalf("building the product images: %v", productErr)
	}
	return *product
}

func buildProduct(tb testing.TB) (*images, error) {
	tb.Helper()
	goImage := standin(tb, "gobase", "moltctl-test/go")
	nodeImage := standin(tb, "nodebase", "moltctl-test/node")
	root := repoRoot(tb)

	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`(?m)^ARG OPENCLAW_VERSION=(\S+)$`).FindSubmatch(dockerfile)
	if m == nil {
		return nil, fmt.Errorf("no `ARG OPENCLAW_VERSION=` default in the Dockerfile")
	}

	// The build context: the Dockerfile, the module files, and moltctl built on the
	// host with the release flags, which the stand-in go hands over (testdata/gobase).
	ctx := tb.TempDir()
	for _, f := range []string{"go.mod", "go.sum", "Dockerfile", ".dockerignore"} {
		if err := copyFile(filepath.Join(root, f), filepath.Join(ctx, f)); err != nil {
			return nil, err
		}
	}
	src, err := hashTree(filepath.Join(root, "cmd"), filepath.Join(root, "internal"), filepath.Join(root, "go.sum"))
	if err != nil {
		return nil, err
	}
	version := "e2e-" + src[:12]
	// No -trimpath here, unlike the Dockerfile: the build then reuses the test build's
	// cache (the stand-in go checks the Dockerfile asks for -trimpath).
	for name, pkg := range map[string]string{"moltctl": "./cmd/moltctl", "entrypoint": "./cmd/moltctl/entrypoint"} {
		gobuild := exec.Command("go", "build", "-ldflags", "-s -w -X main.version="+version,
			"-o", filepath.Join(ctx, ".moltctl-prebuilt", name), pkg)
		gobuild.Dir = root
		gobuild.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := gobuild.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v: %s", pkg, err, out)
		}
	}
	sum, err := hashTree(ctx)
	if err != nil {
		return nil, err
	}
	// Tags of this run alone (the builder's layer cache still makes reruns fast): a
	// concurrent run's cleanup cannot remove them.
	id := hash(sum, goImage, nodeImage)[:12] + "-" + dockertest.Name("")
	img := &images{
		Gateway:         "moltctl-test/moltbot:" + id,
		Moltctl:         "moltctl-test/moltctl:" + id,
		MoltctlVersion:  version,
		OpenclawVersion: string(m[1]),
	}
	args := []string{"build",
		"--build-arg", "GO_IMAGE=" + goImage,
		"--build-arg", "NODE_IMAGE=" + nodeImage,
		"--build-arg", "MOLTCTL_VERSION=" + img.MoltctlVersion,
	}
	for _, b := range []struct{ tag, target string }{{img.Moltctl, "moltctl"}, {img.Gateway, ""}} {
		a := append(append([]string{}, args...), "-t", b.tag)
		if b.target != "" {
			a = append(a, "--target", b.target)
		}
		out, err := dockertest.Run("docker", append(a, ctx)...)
		// Remove what this build made: the intermediate images of the steps that were
		// not cached (the build stage's stay behind as dangling images otherwise), then
		// the tag, in TestMain, newest first.
		builtImages = append(builtImages, newImages(out)...)
		if err != nil {
			return nil, fmt.Errorf("docker %s: %v %s", strings.Join(a, " "), err, out)
		}
		builtImages = append(builtImages, b.tag)
	}
	return img, nil
}

// newImages returns the IDs of the images the legacy builder's output says it
// made: the result of every step that was neither a cache hit nor a FROM. It returns
// nothing for BuildKit's output, whose cache is the builder's own.
func newImages(out string) []string {
	var ids []string
	fromStep, cached, last := false, false, ""
	flush := func() {
		if !fromStep && !cached && last != "" {
			ids = append(ids, last)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Step "):
			flush()
			_, instr, _ := strings.Cut(line, " : ")
			fromStep, cached, last = strings.HasPrefix(strings.ToUpper(instr), "FROM "), false, ""
		case line == "---> Using cache":
			cached = true
		case strings.HasPrefix(line, "---> ") && !strings.HasPrefix(line, "---> Running in"):
			last = strings.TrimPrefix(line, "---> ")
		}
	}
	flush()
	return ids
}

var standinMu sync.Mutex

// standin returns a stand-in base image built from testdata/NAME and the host's
// static busybox, tagged REPO:HASH by what it is made of.
func standin(tb testing.TB, name, repo string) string {
	tb.Helper()
	standinMu.Lock()
	defer standinMu.Unlock()
	ctx := tb.TempDir()
	if err := copyTree(filepath.Join("testdata", name), ctx, nil); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "busybox"), busybox(tb), 0o755); err != nil {
		tb.Fatal(err)
	}
	sum, err := hashTree(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tag := repo + ":" + hash(standinFormat, sum)[:12]
	if _, err := dockertest.Run("docker", "image", "inspect", tag); err == nil {
		return tag
	}
	if out, err := dockertest.Run("docker", "build", "-q", "-t", tag, ctx); err != nil {
		tb.Fatalf("building %s: %v %s", tag, err, out)
	}
	return tag
}

// busybox returns the host's static busybox, or fails/skips the test without one.
func busybox(tb testing.TB) []byte {
	tb.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		dockertest.Unavailable(tb, "no static /bin/busybox for the stand-in images: %v", err)
	}
	return bb
}

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hashTree hashes the names, modes and contents of the files under the roots.
func hashTree(roots ...string) (string, error) {
	var lines []string
	for _, dir := range roots {
		if err := hashInto(&lines, dir); err != nil {
			return "", err
		}
	}
	sort.Strings(lines)
	return hash(lines...), nil
}

func hashInto(lines *[]string, dir string) error {
	return filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		data := []byte{}
		if info.Mode().IsRegular() {
			if data, err = os.ReadFile(path); err != nil {
				return err
			}
		} else if info.Mode()&fs.ModeSymlink != 0 {
			l, err := os.Readlink(path)
			if err != nil {
				return err
			}
			data = []byte(l)
		}
		rel, _ := filepath.Rel(dir, path)
		*lines = append(*lines, fmt.Sprintf("%s %s %o %s", filepath.Base(dir), rel, info.Mode(), hash(string(data))))
		return nil
	})
}

// copyTree copies regular files and directories from src to dst, leaving out the
// entries skip reports (nil: none).
func copyTree(src, dst string, skip func(rel string, e fs.DirEntry) bool) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if skip != nil && rel != "." && skip(rel, e) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(target, 0o755)
		case e.Type().IsRegular():
			return copyFile(path, target)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, info.Mode().Perm())
}
