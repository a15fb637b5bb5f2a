package bootstrap

import (
	"github.com/moltctl/moltctl/internal/dockertest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// userHome makes a home directory owned by node (1000:1000) with a legacy
// ~/.clawdbot holding clawdbot.json, as the app left it.
func userHome(tb testing.TB) (home, legacy string) {
	tb.Helper()
	base := tb.TempDir()
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o755)
	home = filepath.Join(base, "home")
	legacy = filepath.Join(home, ".clawdbot")
	if err := os.MkdirAll(legacy, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(legacy, "clawdbot.json"), []byte(`{"k":1}`), 0o600); err != nil {
		tb.Fatal(err)
	}
	for _, p := range []string{home, legacy, filepath.Join(legacy, "clawdbot.json")} {
		os.Chown(p, 1000, 1000)
	}
	return home, legacy
}

func TestLegacyMigrationRunsAsTheUser(t *testing.T) {
	dockertest.Root(t)
	home, legacy := userHome(t)
	o := Options{User: "node", Dirs: []string{}, Legacy: "moltbot", Home: home, EtcDir: etcDir(t),
		Command: []string{"sh", "-c", "cat $0/.moltbot/moltbot.json", home}}
	out, errOut, code := runChild(t, child(t, testBinary(t, "bootstrap.test", 0o755), o, nil))
	if code != 0 || out != `{"k":1}` {
		t.Fatalf("got exit code %d, stdout %q, stderr %q; want 0 and the migrated config", code, out, errOut)
	}
	if dest, err := os.Readlink(legacy); err != nil || filepath.Base(dest) != ".moltbot" {
		t.Errorf("compatibility link: got %q, %v; want a link to .moltbot", dest, err)
	}
	// Whatever the migration made in the user's home (target, lock file), it
	// made as the user.
	entries, _ := os.ReadDir(home)
	for _, e := range entries {
		if got := owner(t, filepath.Join(home, e.Name())); got != "1000:1000" {
			t.Errorf("owner of %s: got %s, want 1000:1000 (the migration must not run as root)", e.Name(), got)
		}
	}
}

func TestLegacyBindMountWarnsAndStarts(t *testing.T) {
	dockertest.Root(t)
	home, legacy := userHome(t)
	src := filepath.Join(filepath.Dir(home), "host-dir")
	os.Rename(legacy, src)
	os.Mkdir(legacy, 0o755)
	if err := unix.Mount(src, legacy, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(legacy, unix.MNT_DETACH) })
	o := Options{User: "node", Dirs: []string{}, Legacy: "moltbot", Home: home, EtcDir: etcDir(t),
		Command: []string{"sh", "-c", "cat $0/.moltbot/moltbot.json 2>/dev/null || cat $0/.moltbot/clawdbot.json", home}}
	out, errOut, code := runChild(t, child(t, testBinary(t, "bootstrap.test", 0o755), o, nil))
	if code != 0 || out != `{"k":1}` {
		t.Fatalf("got exit code %d, stdout %q, stderr %q; want the app started and finding its state", code, out, errOut)
	}
	var warnings []string
	for _, line := range strings.Split(errOut, "\n") {
		if strings.HasPrefix(line, "warning: ") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], legacy) || !strings.Contains(warnings[0], "moltctl migrate") {
		t.Errorf("warnings: got %q, want one naming %s and `moltctl migrate`", warnings, legacy)
	}
}
