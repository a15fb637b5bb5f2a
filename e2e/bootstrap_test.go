package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// The adversarial review of issue 12, each case in a container of the gateway
// image: a preamble (as root, the image's or an earlier start's doing, or the
// app's) sets the scene, `moltctl bootstrap` runs in a subshell so the shell can
// look afterwards, and the script prints "rc=N" and key=value lines to check.

// chunk is 1,000 levels of "d/": a relative path under PATH_MAX.
const chunk = `c=$(i=0; while [ $i -lt 1000 ]; do printf d/; i=$((i+1)); done)`

// runScript runs script with sh in a fresh container of the gateway image
// with the docker run options opts, and returns its output (stdout and
// stderr, the script redirects).
func runScript(tb testing.TB, img images, opts []string, script string) string {
	tb.Helper()
	args := append([]string{"run", "--rm", "--name", dockertest.Name("moltctl-e2e-bootstrap-"), "--entrypoint", "/bin/sh"}, opts...)
	out, err := dockertest.Run("docker", append(args, img.Gateway, "-c", script)...)
	if err != nil {
		tb.Fatalf("docker run: %.2000v\noutput:\n%.2000s", err, out)
	}
	return out
}

// fields returns the key=value lines of out.
func fields(out string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && regexp.MustCompile(`^[a-z_0-9]+$`).MatchString(k) {
			f[k] = v
		}
	}
	return f
}

// volume creates a named volume removed when the test ends.
func volume(tb testing.TB) string {
	tb.Helper()
	v := dockertest.Name("moltctl-e2e-bootstrap-")
	dockertest.Docker(tb, "volume", "create", v)
	tb.Cleanup(func() { dockertest.Run("docker", "volume", "rm", "-f", v) })
	return v
}

func TestBootstrapAdversarial(t *testing.T) {
	img := productImages(t)
	for _, tc := range []struct {
		name   string
		opts   []string
		script string
		want   map[string]string // key=value lines the script must print
		output []string          // what the output must contain
		never  []string          // what it must not contain
	}{{
		// Issue 12 point 1: the image's root-owned link /srv/moltbot ->
		// /home/node/.moltbot; the app replaced ~/.moltbot by a link to /usr.
		name: "ownership escape through a trusted link",
		script: `mkdir -p /srv /usr/lib && touch /usr/lib/libc.so.6 && ln -s /home/node/.moltbot /srv/moltbot
su_app() { ln -s /usr /home/node/.moltbot && chown -h node:node /home/node/.moltbot; }; su_app
(MOLTCTL_DIRS=/srv/moltbot/lib MOLTCTL_LEGACY=off moltctl bootstrap -- true) 2>&1; echo "rc=$?"
echo "usr_lib=$(stat -c %u:%g /usr/lib) libc=$(stat -c %u:%g /usr/lib/libc.so.6)"`,
		want:   map[string]string{"rc": "1", "usr_lib": "0:0 libc=0:0"},
		output: []string{`"/home/node/.moltbot" (not owned by root in a root-only directory): refusing to follow a symlink`},
	}, {
		name: "gid out of range before any change",
		script: `mkdir /data
(MOLTCTL_DIRS=/data MOLTCTL_LEGACY=off moltctl bootstrap --user node:4294967296 -- true) 2>&1; echo "rc=$?"
echo "data=$(stat -c %u:%g /data)"`,
		want:   map[string]string{"rc": "1", "data": "0:0"},
		output: []string{"gid 4294967296 out of range (0 to 2147483647)"},
	}, {
		name:   "uid out of range",
		script: `(MOLTCTL_DIRS= MOLTCTL_LEGACY=off moltctl bootstrap --user 4294967296 -- id -u) 2>&1; echo "rc=$?"`,
		want:   map[string]string{"rc": "1"},
		output: []string{"uid 4294967296 out of range (0 to 2147483647)"},
	}, {
		name:   "/etc refused",
		script: `(MOLTCTL_DIRS=/etc MOLTCTL_LEGACY=off moltctl bootstrap -- true) 2>&1; echo "rc=$?"; echo "passwd=$(stat -c %u:%g /etc/passwd)"`,
		want:   map[string]string{"rc": "1", "passwd": "0:0"},
		output: []string{`state directory "/etc": refusing a system directory`},
	}, {
		name:   "/usr through .. refused",
		script: `(MOLTCTL_DIRS=/home/node/../../usr MOLTCTL_LEGACY=off moltctl bootstrap -- true) 2>&1; echo "rc=$?"; echo "usr=$(stat -c %u:%g /usr)"`,
		want:   map[string]string{"rc": "1", "usr": "0:0"},
		output: []string{`state directory "/home/node/../../usr": refusing a system directory`},
	}, {
		// Point 5: a file name with a newline, hardlinked so that it is reported.
		name: "no forged log line",
		script: `f=$(printf '/var/lib/moltbot/x\nmoltctl bootstrap: forged'); touch "$f"; ln "$f" /var/lib/moltbot-other
(MOLTCTL_LEGACY=off moltctl bootstrap -- true) 2>&1; echo "rc=$?"`,
		want:   map[string]string{"rc": "0"},
		output: []string{`(hardlinked elsewhere), e.g. "/var/lib/moltbot/x\nmoltctl bootstrap: forged"`},
		never:  []string{"\nmoltctl bootstrap: forged"},
	}, {
		// Point 6: 5,000 levels under nofile=1024.
		name: "5000 levels under nofile=1024",
		opts: []string{"--ulimit", "nofile=1024:1024"},
		script: chunk + `
cd /var/lib/moltbot && for i in 1 2 3 4 5; do mkdir -p "$c" && cd -P "$c"; done && touch leaf && cd /
( (MOLTCTL_LEGACY=off moltctl bootstrap -- true) 2>&1; echo "rc=$?") | cut -c1-300
cd /var/lib/moltbot && for i in 1 2 3 4 5; do cd -P "$c"; done && echo "leaf=$(stat -c %u:%g leaf)"`,
		want:  map[string]string{"rc": "0", "leaf": "1000:1000"},
		never: []string{"too many open files"},
	}, {
		// Point 7: read-only file system as a non-root user: not "start as root".
		name:   "read-only as node",
		opts:   []string{"--read-only", "--user", "node"},
		script: `(MOLTCTL_DIRS=/home/node/clawd MOLTCTL_LEGACY=off moltctl bootstrap -- true) 2>&1; echo "rc=$?"`,
		want:   map[string]string{"rc": "1"},
		output: []string{"read-only file system", "fix: the file system is read-only: mount a writable volume"},
		never:  []string{"start the container as root"},
	}, {
		// Point 7: --user is not silently ignored when not root.
		name:   "--user when not root",
		opts:   []string{"--user", "65534"},
		script: `(MOLTCTL_DIRS= MOLTCTL_LEGACY=off moltctl bootstrap -- id -u) 2>&1; echo "rc=$?"`,
		want:   map[string]string{"rc": "0"},
		output: []string{`started as uid 65534, not root: the user "node" (uid 1000) cannot be switched to; running CMD as uid 65534`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out := runScript(t, img, tc.opts, tc.script)
			checkOutput(t, out, tc.want, tc.output, tc.never)
		})
	}
}

// TestBootstrapMinimalCapabilities is point 4: with only CHOWN, SETUID and
// SETGID, a 0700 directory the app owns (root may not open it) is left to the
// app and reported once; the container starts, every time.
func TestBootstrapMinimalCapabilities(t *testing.T) {
	img := productImages(t)
	v := volume(t)
	mount := []string{"-v", v + ":/var/lib/moltbot"}
	runScript(t, img, mount, `mkdir -p /var/lib/moltbot/credentials && touch /var/lib/moltbot/credentials/token /var/lib/moltbot/root-file
chown -R node:node /var/lib/moltbot/credentials && chmod 700 /var/lib/moltbot/credentials`)
	caps := append([]string{"--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "SETUID", "--cap-add", "SETGID"}, mount...)
	for i := 0; i < 2; i++ { // a second start must not fail either (no crash loop)
		out := runScript(t, img, caps, `(MOLTCTL_LEGACY=off moltctl bootstrap -- sh -c 'echo app-ran-as=$(id -u); ls /var/lib/moltbot/credentials') 2>&1; echo "rc=$?"
echo "root_file=$(stat -c %u:%g /var/lib/moltbot/root-file)"`)
		got := fields(out)
		if got["rc"] != "0" || got["app-ran-as"] != "" && got["app-ran-as"] != "1000" || !strings.Contains(out, "app-ran-as=1000") {
			t.Errorf("start %d: got rc %q, want 0 and the app running as 1000; output:\n%s", i+1, got["rc"], out)
		}
		if got["root_file"] != "1000:1000" {
			t.Errorf("start %d: root_file owner: got %q, want 1000:1000", i+1, got["root_file"])
		}
		if want := `(root may not open it without CAP_DAC_OVERRIDE; its contents are left to the user), e.g. "/var/lib/moltbot/credentials"`; !strings.Contains(out, want) {
			t.Errorf("start %d: output %q, want it to report %q", i+1, out, want)
		}
		if n := strings.Count(out, "credentials"); n > 2 { // the report and ls's listing line "token" don't repeat
			t.Errorf("start %d: credentials mentioned %d times, want it reported once:\n%s", i+1, n, out)
		}
	}
}

// TestBootstrapLegacyMessages is point 7's migration cases, each started twice
// where a repeated warning was the problem.
func TestBootstrapLegacyMessages(t *testing.T) {
	img := productImages(t)
	for _, tc := range []struct {
		name   string
		opts   []string
		script string
		want   map[string]string
		output []string
		never  []string
	}{{
		// An image that ran the app as root left ~/.clawdbot root-owned.
		name: "root-owned legacy dir",
		script: `mkdir /home/node/.clawdbot && echo '{}' >/home/node/.clawdbot/clawdbot.json
for i in 1 2; do (MOLTCTL_DIRS= MOLTCTL_LEGACY=moltbot moltctl bootstrap -- true) 2>&1; echo "rc$i=$?"; done
echo "target=$(stat -c %u:%g /home/node/.moltbot) json=$(stat -c %u:%g /home/node/.moltbot/moltbot.json)"
ls -a /home/node | grep -q moltctl-moving && echo intent=left || echo intent=none`,
		want:  map[string]string{"rc1": "0", "rc2": "0", "target": "1000:1000 json=1000:1000", "intent": "none"},
		never: []string{"could not migrate", "nothing is half done"},
	}, {
		name: "dangling target link",
		script: `mkdir /home/node/.clawdbot && chown node:node /home/node/.clawdbot && ln -s /nowhere /home/node/.moltbot && chown -h node:node /home/node/.moltbot
(MOLTCTL_DIRS= MOLTCTL_LEGACY=moltbot moltctl bootstrap -- true) 2>&1; echo "rc=$?"`,
		want:   map[string]string{"rc": "0"},
		output: []string{`"/home/node/.moltbot" is a link to "/nowhere", which does not exist, so the app cannot use it`},
		never:  []string{"the app uses"},
	}, {
		name: "openclaw preset with .clawdbot and .moltbot",
		script: `mkdir /home/node/.clawdbot /home/node/.moltbot && chown node:node /home/node/.clawdbot /home/node/.moltbot
(MOLTCTL_DIRS= MOLTCTL_LEGACY=openclaw moltctl bootstrap -- true) 2>&1; echo "rc=$?"`,
		want:   map[string]string{"rc": "0"},
		output: []string{`the app uses "/home/node/.openclaw", which was migrated from "/home/node/.clawdbot"; if "/home/node/.moltbot" holds the state you want, merge it by hand`},
	}, {
		name:   "nested mount left alone with a hint",
		opts:   []string{"--tmpfs", "/var/lib/moltbot/cache"},
		script: `(MOLTCTL_LEGACY=off moltctl bootstrap -- true) 2>&1; echo "rc=$?"`,
		want:   map[string]string{"rc": "0"},
		output: []string{`left 1 entry alone (mount point), e.g. "/var/lib/moltbot/cache"; to have a mount's ownership fixed too, list it in MOLTCTL_DIRS`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out := runScript(t, img, tc.opts, tc.script)
			checkOutput(t, out, tc.want, tc.output, tc.never)
		})
	}

	// A legacy directory in the image's own layers: overlayfs answers EXDEV
	// to renaming it, which is not "another filesystem".
	t.Run("legacy dir from the image's layer", func(t *testing.T) {
		tag := "moltctl-test/legacy-layer:" + dockertest.Name("")
		dockerfile := "FROM " + img.Gateway + "\nRUN mkdir -p /home/node/.clawdbot && echo '{}' >/home/node/.clawdbot/clawdbot.json && chown -R node:node /home/node/.clawdbot\n"
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := dockertest.Run("docker", "build", "-q", "-t", tag, dir); err != nil {
			t.Fatalf("docker build: %v %s", err, out)
		}
		t.Cleanup(func() { dockertest.Run("docker", "image", "rm", tag) })
		layered := img
		layered.Gateway = tag
		out := runScript(t, layered, nil, `(MOLTCTL_DIRS= MOLTCTL_LEGACY=moltbot moltctl bootstrap -- true) 2>&1; echo "rc=$?"`)
		checkOutput(t, out, map[string]string{"rc": "0"},
			[]string{`"/home/node/.clawdbot" comes from the image (overlayfs cannot rename a directory of the image's layers): copied it to "/home/node/.moltbot"`},
			[]string{"another filesystem"})
	})
}

// checkOutput checks a script's output: key=value lines, what it must and
// must not contain.
func checkOutput(tb testing.TB, out string, want map[string]string, contains, never []string) {
	tb.Helper()
	got := fields(out)
	ok := true
	for k, v := range want {
		if got[k] != v {
			tb.Errorf("%s: got %q, want %q", k, got[k], v)
			ok = false
		}
	}
	for _, s := range contains {
		if !strings.Contains(out, s) {
			tb.Errorf("output: want it to contain %q", s)
			ok = false
		}
	}
	for _, s := range never {
		if strings.Contains(out, s) {
			tb.Errorf("output: got %q in it, want none", s)
			ok = false
		}
	}
	if !ok {
		tb.Logf("output:\n%.3000s", out)
	}
}

// TestGatewayEntrypointBuild: the gateway runs moltctl's entrypoint build
// (bootstrap without the compose and engine code), a fraction of the size.
func TestGatewayEntrypointBuild(t *testing.T) {
	img := productImages(t)
	out := runScript(t, img, nil, `moltctl version; echo "size=$(stat -c %s /usr/local/bin/moltctl)"; moltctl migrate 2>&1; echo "rc=$?"`)
	if want := "moltctl " + img.MoltctlVersion + " "; !strings.Contains(out, want) || !strings.Contains(out, "entrypoint build") {
		t.Errorf("moltctl version: got %q, want %q and the entrypoint build", out, want)
	}
	got := fields(out)
	if size, err := strconv.Atoi(got["size"]); err != nil || size > 5<<20 {
		t.Errorf("size of /usr/local/bin/moltctl: got %q, want under 5 MiB (the full moltctl is 12 MB)", got["size"])
	}
	if got["rc"] != "1" || !strings.Contains(out, "migrate is not in this build") {
		t.Errorf("moltctl migrate in the gateway: got rc %q, output %q; want 1 and where to run it", got["rc"], out)
	}
}
