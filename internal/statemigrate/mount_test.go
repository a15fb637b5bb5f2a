package statemigrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/safefs"
)

// forceDetection makes statx report root (known) or, when known is false,
// nothing, so the mountinfo fallback runs.
func forceDetection(tb testing.TB, root, known bool) {
	tb.Helper()
	real := safefs.TestHooks.StatxMountRoot
	safefs.TestHooks.StatxMountRoot = func(int, string) (bool, bool, error) { return root, known, nil }
	tb.Cleanup(func() { safefs.TestHooks.StatxMountRoot = real })
}

// TestMountedLegacy: a bind-mounted legacy directory is never renamed (a real
// rename would answer EBUSY); the target becomes a link to it and the warning
// names the fix. Detection by statx, by mountinfo, and none at all (EBUSY
// from the rename decides).
func TestMountedLegacy(t *testing.T) {
	dockertest.Root(t)
	for _, mode := range []string{"statx", "mountinfo", "rename says EBUSY"} {
		t.Run(mode, func(t *testing.T) {
			switch mode {
			case "mountinfo":
				forceDetection(t, false, false)
			case "rename says EBUSY":
				forceDetection(t, false, true)
			}
			home, host := t.TempDir(), t.TempDir()
			write(t, host, seed)
			rules, _ := Preset("moltbot", home)
			legacy, target := rules[0].Legacy, rules[0].Target
			os.Mkdir(legacy, 0o755)
			mount(t, host, legacy, "")
			for run := 1; run <= 2; run++ {
				out, err := Migrate(context.Background(), Options{Rules: rules})
				if err != nil {
					t.Fatalf("run %d: %v", run, err)
				}
				if got := out[0].Action; got != ActionSkippedMount {
					t.Errorf("run %d: got action %q, want %q", run, got, ActionSkippedMount)
				}
				if w := out[0].Warning; !strings.Contains(w, "moltctl migrate") || !strings.Contains(w, "mount point") || strings.Count(w, "; ") > 1 {
					t.Errorf("run %d: got warning %q, want one naming the mount and `moltctl migrate`", run, w)
				}
			}
			if got := readlink(t, target); got != ".clawdbot" {
				t.Errorf("got target link %q, want .clawdbot", got)
			}
			if got, want := read(t, host), migrated(seed); !equal(got, want) {
				t.Errorf("got host dir %v, want %v", got, want)
			}
			if got, want := read(t, target), migrated(seed); !equal(got, want) {
				t.Errorf("got target view %v, want %v", got, want)
			}
		})
	}
}

// TestMountGone: once the mount is gone, the link made for it is replaced by
// the real rename.
func TestMountGone(t *testing.T) {
	home := t.TempDir()
	rules, _ := Preset("moltbot", home)
	write(t, rules[0].Legacy, seed)
	os.Symlink(".clawdbot", rules[0].Target)
	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil || out[0].Action != ActionRenamed {
		t.Fatalf("got %v, %v, want renamed", out, err)
	}
	if got := readlink(t, rules[0].Legacy); got != ".moltbot" {
		t.Errorf("got legacy link %q, want .moltbot", got)
	}
	if got := read(t, rules[0].Target); !equal(got, migrated(seed)) {
		t.Errorf("got %v, want %v", got, migrated(seed))
	}
}

// exdevRules puts the legacy directory on the test's filesystem and the
// target on a tmpfs, so rename answers EXDEV.
func exdevRules(tb testing.TB) []Rule {
	tb.Helper()
	dir := tb.TempDir()
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	mount(tb, "", other, "tmpfs")
	return []Rule{{
		Legacy: filepath.Join(dir, ".clawdbot"),
		Target: filepath.Join(other, ".moltbot"),
		Files:  []FileRule{{Legacy: "clawdbot.json", Target: "moltbot.json"}},
	}}
}

// TestCopyAcrossFilesystems: EXDEV copies through a staging directory,
// keeping modes, owners, times, links and special bits, and keeps the source.
func TestCopyAcrossFilesystems(t *testing.T) {
	dockertest.Root(t)
	rules := exdevRules(t)
	legacy, target := rules[0].Legacy, rules[0].Target
	write(t, legacy, seed)
	// Details the copy must keep.
	os.Symlink("/etc/shadow", filepath.Join(legacy, "outside"))
	os.WriteFile(filepath.Join(legacy, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.Chown(filepath.Join(legacy, "tool"), 1000, 1000)
	unix.Chmod(filepath.Join(legacy, "tool"), 0o4750) // os.Chmod would drop the setuid bit
	os.Chmod(filepath.Join(legacy, "credentials"), 0o700)
	unix.Mkfifo(filepath.Join(legacy, "fifo"), 0o600)
	unix.Chmod(filepath.Join(legacy, "fifo"), 0o620)
	old := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	os.Chtimes(filepath.Join(legacy, "sessions/a.jsonl"), old, old)
	os.Lchown(filepath.Join(legacy, "current"), 1000, 1000)

	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].Action; got != ActionCopied {
		t.Fatalf("got action %q (warning %q), want %q", got, out[0].Warning, ActionCopied)
	}
	want := migrated(seed)
	want["outside"], want["tool"] = "->/etc/shadow", "#!/bin/sh\n"
	want["fifo"] = "(special)"
	got := read(t, target)
	if !equal(got, want) {
		t.Errorf("got target %v, want %v", got, want)
	}
	if got, want := read(t, legacy)["clawdbot.json"], seed["clawdbot.json"]; got != want {
		t.Errorf("got source config %q, want it kept as %q", got, want)
	}
	checks := []struct {
		rel        string
		mode       uint32 // with type bits
		uid        uint32
		mtimeCheck bool
	}{
		{"tool", unix.S_IFREG | 0o4750, 1000, false},
		{"credentials", unix.S_IFDIR | 0o700, 0, false},
		{"fifo", unix.S_IFIFO | 0o620, 0, false},
		{"current", unix.S_IFLNK | 0o777, 1000, false},
		{"sessions/a.jsonl", unix.S_IFREG | 0o640, 0, true},
	}
	for _, c := range checks {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(target, c.rel), &st); err != nil {
			t.Errorf("%s: %v", c.rel, err)
			continue
		}
		if st.Mode != c.mode || st.Uid != c.uid {
			t.Errorf("%s: got mode %o uid %d, want mode %o uid %d", c.rel, st.Mode, st.Uid, c.mode, c.uid)
		}
		if c.mtimeCheck && !time.Unix(st.Mtim.Unix()).Equal(old) {
			t.Errorf("%s: got mtime %v, want %v", c.rel, time.Unix(st.Mtim.Unix()), old)
		}
	}
	var shadow syscall.Stat_t
	syscall.Stat("/etc/shadow", &shadow)
	if shadow.Uid != 0 {
		t.Errorf("got /etc/shadow uid %d, want 0", shadow.Uid)
	}
	again, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil || again[0].Action != ActionDone {
		t.Errorf("rerun: got %v, %v, want done", actions(again), err)
	}
}

// TestMountedLegacyAcrossFilesystems: a mounted legacy directory whose
// rename answers EXDEV (target on another mount) is treated as a mount even
// when statx said it was not one: never copied away from its mount.
func TestMountedLegacyAcrossFilesystems(t *testing.T) {
	dockertest.Root(t)
	rules := exdevRules(t)
	host := t.TempDir()
	write(t, host, seed)
	os.Mkdir(rules[0].Legacy, 0o755)
	mount(t, host, rules[0].Legacy, "")
	forceDetection(t, false, true)
	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].Action; got != ActionSkippedMount {
		t.Errorf("got action %q, want %q", got, ActionSkippedMount)
	}
	if got := read(t, rules[0].Target); !equal(got, migrated(seed)) {
		t.Errorf("got target view %v, want %v", got, migrated(seed))
	}
}

// TestReadOnly: a step that fails (here EROFS) is reported as ActionFailed
// with a warning, not an error, and changes nothing.
func TestReadOnly(t *testing.T) {
	dockertest.Root(t)
	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o755)
	mount(t, "", ro, "tmpfs")
	rules, _ := Preset("moltbot", ro)
	write(t, rules[0].Legacy, seed)
	if err := unix.Mount("", ro, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	out, err := Migrate(context.Background(), Options{Rules: rules, LockDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].Action; got != ActionFailed || !strings.Contains(out[0].Warning, "read-only") {
		t.Errorf("got %q %q, want %q with the reason", got, out[0].Warning, ActionFailed)
	}
	if got := read(t, rules[0].Legacy); !equal(got, seed) {
		t.Errorf("got %v, want the seed unchanged", got)
	}
}

// TestCopySourceChanges: a source that changes while it is copied fails the
// verify step: ActionFailed, the staging directory removed, the source intact;
// the next run copies the new content.
func TestCopySourceChanges(t *testing.T) {
	dockertest.Root(t)
	rules := exdevRules(t)
	write(t, rules[0].Legacy, seed)
	real := stepHook
	stepHook = func(step string) {
		if step == "staging-copied" {
			os.WriteFile(filepath.Join(rules[0].Legacy, "sessions/a.jsonl"), []byte("one\ntwo\nthree\n"), 0o640)
		}
	}
	out, err := Migrate(context.Background(), Options{Rules: rules})
	stepHook = real
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].Action; got != ActionFailed || !strings.Contains(out[0].Warning, "differs") {
		t.Errorf("got %q %q, want %q naming the difference", got, out[0].Warning, ActionFailed)
	}
	if _, err := os.Lstat(stagingPath(rules[0].Target)); err == nil {
		t.Error("got a staging directory left, want it removed")
	}
	if _, err := os.Lstat(rules[0].Target); err == nil {
		t.Error("got a target, want none")
	}
	out, err = Migrate(context.Background(), Options{Rules: rules})
	if err != nil || out[0].Action != ActionCopied {
		t.Fatalf("rerun: got %v, %v, want copied", actions(out), err)
	}
	if got := read(t, rules[0].Target)["sessions/a.jsonl"]; got != "one\ntwo\nthree\n" {
		t.Errorf("got %q, want the changed content", got)
	}
}

// TestMountedLegacyStaleIntent: an intent left by a run that crashed before
// its rename (which would have met EBUSY) is cleared by the mount path.
func TestMountedLegacyStaleIntent(t *testing.T) {
	dockertest.Root(t)
	rules := scenarios[4].setup(t)
	os.WriteFile(intentPath(rules[0].Target), []byte(rules[0].Legacy+"\n"), 0o644)
	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil || out[0].Action != ActionSkippedMount {
		t.Fatalf("got %v, %v, want skipped-mount", actions(out), err)
	}
	if _, err := os.Lstat(intentPath(rules[0].Target)); err == nil {
		t.Error("got the intent file left, want it removed")
	}
}

// TestCopyAcrossFilesystemsKeepsLinksHolesXattrs: the copy is the volume
// helper's (safefs.CopyTree): hardlinks stay linked, holes stay holes, and
// xattrs are copied (the old path-based copy made two files of a hardlink,
// filled the holes and dropped the xattrs).
func TestCopyAcrossFilesystemsKeepsLinksHolesXattrs(t *testing.T) {
	dockertest.Root(t)
	rules := exdevRules(t)
	legacy, target := rules[0].Legacy, rules[0].Target
	write(t, legacy, seed)
	if err := os.Link(filepath.Join(legacy, "clawdbot.json"), filepath.Join(legacy, "config-link.json")); err != nil {
		t.Fatal(err)
	}
	sparse := filepath.Join(legacy, "sparse.db")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), 64<<20)
	f.Close()
	if err := unix.Lsetxattr(filepath.Join(legacy, "sessions/a.jsonl"), "trusted.moltctl-test", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil || out[0].Action != ActionCopied {
		t.Fatalf("got %v, %v, want copied", out, err)
	}
	var a, b, s unix.Stat_t
	must(t, unix.Lstat(filepath.Join(target, "moltbot.json"), &a))
	must(t, unix.Lstat(filepath.Join(target, "config-link.json"), &b))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("got inodes %d and %d (%d links), want one inode with 2 links", a.Ino, b.Ino, a.Nlink)
	}
	must(t, unix.Lstat(filepath.Join(target, "sparse.db"), &s))
	if s.Size != 64<<20+3 || s.Blocks*512 >= 1<<20 {
		t.Errorf("got sparse.db %d bytes in %d blocks, want 64 MiB with its hole kept", s.Size, s.Blocks)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(target, "sessions/a.jsonl"), "trusted.moltctl-test", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("got xattr error %v, want the xattr kept", err)
	}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// TestCopyLeavesMountsBelowLegacy: a mount inside the legacy directory is not
// copied into the target (its data stays in one place) and the warning says
// so; the old copy walked into it and duplicated its content silently.
func TestCopyLeavesMountsBelowLegacy(t *testing.T) {
	dockertest.Root(t)
	rules := exdevRules(t)
	legacy, target := rules[0].Legacy, rules[0].Target
	write(t, legacy, seed)
	host := t.TempDir()
	write(t, host, state{"big.bin": "mounted data"})
	must(t, os.Mkdir(filepath.Join(legacy, "workspace"), 0o755))
	mount(t, host, filepath.Join(legacy, "workspace"), "")
	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil || out[0].Action != ActionCopied {
		t.Fatalf("got %v, %v, want copied", out, err)
	}
	if _, err := os.Lstat(filepath.Join(target, "workspace", "big.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got the mount's content copied into the target (%v), want it left where it is mounted", err)
	}
	if want := fmt.Sprintf("%q is a mount point inside %q", filepath.Join(legacy, "workspace"), legacy); !strings.Contains(out[0].Warning, want) {
		t.Errorf("got warning %q, want it to contain %q", out[0].Warning, want)
	}
}

// TestCopyAsAppUser: bootstrap migrates after dropping privileges; the copy
// then can't chown or set security.* xattrs (a file capability here) and must
// still copy the rest and pass its verification.
func TestCopyAsAppUser(t *testing.T) {
	dockertest.Root(t)
	bin, err := os.MkdirTemp("", "statemigrate-test")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(bin) })
	self, err := os.ReadFile("/proc/self/exe")
	must(t, err)
	exe := filepath.Join(bin, "statemigrate.test")
	must(t, os.WriteFile(exe, self, 0o755))
	must(t, os.Chmod(bin, 0o755))
	rules := exdevRules(t)
	legacy, target := rules[0].Legacy, rules[0].Target
	for d := filepath.Dir(legacy); d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // the test's temp dirs: 0700
	}
	write(t, legacy, seed)
	for _, d := range []string{legacy, filepath.Dir(target)} {
		must(t, filepath.Walk(d, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, 1000, 1000)
		}))
	}
	must(t, os.Lchown(filepath.Dir(legacy), 1000, 1000))
	// cap_net_bind_service=ep, as setcap writes it (VFS_CAP_REVISION_2); after
	// the chown, which clears it
	capv := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	must(t, unix.Setxattr(filepath.Join(legacy, "clawdbot.json"), "security.capability", capv, 0))
	opts, _ := json.Marshal(Options{Rules: rules})
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+string(opts))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	var got []Outcome
	must(t, json.Unmarshal(out, &got))
	if len(got) != 1 || got[0].Action != ActionCopied {
		t.Fatalf("got %+v, want copied", got)
	}
	if b, err := os.ReadFile(filepath.Join(target, "moltbot.json")); err != nil || string(b) != seed["clawdbot.json"] {
		t.Errorf("got %q, %v in the target, want the legacy config", b, err)
	}
}
