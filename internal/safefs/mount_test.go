package safefs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/dockertest"
)

func TestParseMountInfo(t *testing.T) {
	const sample = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 0:30 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
101 22 8:1 /home/me/My\040State /home/node/.clawdbot rw,relatime shared:1 - ext4 /dev/sda1 rw
102 22 0:45 / /mnt/tab\011and\012newline\134back rw - tmpfs tmpfs rw
103 22 0:46 / /mnt/not\04escape\x rw - tmpfs tmpfs rw

`
	got, err := ParseMountInfo(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{{"8:1", "/", "/"}, {"0:30", "/", "/proc"}, {"8:1", "/home/me/My State", "/home/node/.clawdbot"},
		{"0:45", "/", "/mnt/tab\tand\nnewline\\back"}, {"0:46", "/", `/mnt/not\04escape\x`}}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := ParseMountInfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("short line: got no error, want one")
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, "plain"},
		{`a\040b`, "a b"},
		{`/a\134b\011`, "/a\\b\t"},
		{`\134`, `\`},
		{`end\04`, `end\04`},
		{`\999`, `\999`},
		{`\400`, `\400`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := unescapeOctal(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// bindMount bind-mounts source on target for the test.
func bindMount(tb testing.TB, source, target string) {
	tb.Helper()
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		tb.Fatalf("bind-mounting %s on %s: %v", source, target, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmounting %s: %v", target, err)
		}
	})
}

// forceMountTable makes statx report nothing about mount roots, as kernels
// before 5.8 do, so that the mount table decides.
func forceMountTable(tb testing.TB) {
	tb.Helper()
	real := TestHooks.StatxMountRoot
	TestHooks.StatxMountRoot = func(int, string) (bool, bool, error) { return false, false, nil }
	tb.Cleanup(func() { TestHooks.StatxMountRoot = real })
}

// mountFixture makes dir/src, a bind mount of it at "dir/my mnt\tx" (a name
// the mount table escapes), dir/plain and dir/link (a symlink to the mount).
func mountFixture(t *testing.T) (dir, src, mnt, plain, link string) {
	t.Helper()
	dockertest.Root(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src, mnt, plain, link = filepath.Join(dir, "src"), filepath.Join(dir, "my mnt\tx"), filepath.Join(dir, "plain"), filepath.Join(dir, "link")
	for _, d := range []string{src, mnt, plain} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bindMount(t, src, mnt)
	if err := os.Symlink(mnt, link); err != nil {
		t.Fatal(err)
	}
	return
}

func TestIsMountPoint(t *testing.T) {
	_, src, mnt, plain, link := mountFixture(t)
	for _, mode := range []string{"statx", "mount table"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "mount table" {
				forceMountTable(t)
			}
			tests := []struct {
				path string
				want bool
			}{{mnt, true}, {plain, false}, {link, false}, {src, false}}
			for _, tt := range tests {
				got, err := IsMountPoint(tt.path)
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("%q: got %v, want %v", tt.path, got, tt.want)
				}
			}
		})
	}
}

// TestMountRootsBindSameFS: a bind mount of the same file system has the
// root's st_dev; statx, or the mount table where statx can't tell, must
// still find it. (volumes' copy of this check had no mount-table fallback:
// on a kernel before 5.8 it copied into bind mounts of the same file system.)
func TestMountRootsBindSameFS(t *testing.T) {
	dir, src, mnt, plain, link := mountFixture(t)
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var rootSt unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &rootSt); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"statx", "mount table"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "mount table" {
				forceMountTable(t)
			}
			m := NewMountRoots(uint64(rootSt.Dev))
			for _, tt := range []struct {
				path string
				want bool
			}{{mnt, true}, {plain, false}, {link, false}, {src, false}} {
				var st unix.Stat_t
				if err := unix.Fstatat(int(d.Fd()), filepath.Base(tt.path), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Fatal(err)
				}
				if st.Dev != rootSt.Dev {
					t.Fatalf("%q: another device; the test wants a bind mount of the same file system", tt.path)
				}
				if got := m.At(int(d.Fd()), filepath.Base(tt.path), &st); got != tt.want {
					t.Errorf("%q: got %v, want %v", tt.path, got, tt.want)
				}
			}
		})
	}
	t.Run("unreadable mount table", func(t *testing.T) {
		forceMountTable(t)
		real := TestHooks.MountInfo
		TestHooks.MountInfo = filepath.Join(dir, "missing")
		t.Cleanup(func() { TestHooks.MountInfo = real })
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), "plain", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		if !NewMountRoots(uint64(rootSt.Dev)).At(int(d.Fd()), "plain", &st) {
			t.Error("got false, want true: a directory that can't be placed counts as a mount")
		}
	})
}

func TestMountPointsUnder(t *testing.T) {
	dir, _, mnt, _, _ := mountFixture(t)
	got, err := MountPointsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[mnt] {
		t.Errorf("got %v, want only %q", got, mnt)
	}
}
