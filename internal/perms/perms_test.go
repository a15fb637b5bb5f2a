package perms

import (
	"context"
	"errors"
	"fmt"
	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/safefs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const uid, gid = 1000, 1000

// owner returns the uid:gid of path itself (not following a symlink).
func owner(tb testing.TB, path string) string {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

func mode(tb testing.TB, path string) uint32 {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		tb.Fatal(err)
	}
	return st.Mode & 0o7777
}

func write(tb testing.TB, path string, perm os.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), perm); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Chmod(path, uint32(perm)); err != nil { // umask; 0o4000 is setuid here
		tb.Fatal(err)
	}
}

// each runs f once with openat2 and once with the openat fallback.
func each(t *testing.T, f func(t *testing.T)) {
	for _, fallback := range []bool{false, true} {
		t.Run(map[bool]string{false: "openat2", true: "fallback"}[fallback], func(t *testing.T) {
			forceNoOpenat2 = fallback
			t.Cleanup(func() { forceNoOpenat2 = false })
			f(t)
		})
	}
}

func TestFixChownsOnlyWhatIsWrongAndNeverLeaves(t *testing.T) {
	dockertest.Root(t)
	each(t, func(t *testing.T) {
		base := t.TempDir()
		root := filepath.Join(base, "state")
		outside := filepath.Join(base, "outside")
		write(t, filepath.Join(outside, "shadow"), 0o600)
		os.MkdirAll(filepath.Join(outside, "dir"), 0o755)
		write(t, filepath.Join(root, "a", "b", "file"), 0o644)
		write(t, filepath.Join(root, "a", "suid"), 0o4755)
		write(t, filepath.Join(root, "owned-suid"), 0o6755)
		os.Chown(filepath.Join(root, "owned-suid"), uid, gid)
		unix.Chmod(filepath.Join(root, "owned-suid"), 0o6755)
		write(t, filepath.Join(root, "a", "root-suid"), 0o4755)
		os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(root, "link-to-shadow"))
		os.Symlink(filepath.Join(outside, "dir"), filepath.Join(root, "a", "link-to-dir"))
		os.Link(filepath.Join(outside, "shadow"), filepath.Join(root, "hardlink-to-shadow"))
		unix.Mkfifo(filepath.Join(root, "fifo"), 0o600)

		st, err := Fix(context.Background(), root, Options{UID: uid, GID: gid})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"", "a", "a/b", "a/b/file", "a/suid", "link-to-shadow", "a/link-to-dir", "fifo", "owned-suid"} {
			if got := owner(t, filepath.Join(root, p)); got != "1000:1000" {
				t.Errorf("owner of %q: got %s, want 1000:1000", p, got)
			}
		}
		for _, p := range []string{"shadow", "dir"} {
			if got := owner(t, filepath.Join(outside, p)); got != "0:0" {
				t.Errorf("owner of outside %s: got %s, want 0:0", p, got)
			}
		}
		if got := mode(t, filepath.Join(root, "owned-suid")); got != 0o6755 {
			t.Errorf("mode of an already-owned setuid file: got %04o, want 6755", got)
		}
		if got, want := st.Changed, int64(9); got != want {
			t.Errorf("changed: got %d, want %d", got, want)
		}
		if got, want := st.SetIDCleared, int64(2); got != want {
			t.Errorf("setid cleared: got %d, want %d", got, want)
		}
		if len(st.Skipped) != 1 || st.Skipped[0].Reason != SkipHardlink || st.Skipped[0].Path != filepath.Join(root, "hardlink-to-shadow") {
			t.Errorf("skipped: got %+v, want the hardlink", st.Skipped)
		}
		// Running again changes nothing.
		st, err = Fix(context.Background(), root, Options{UID: uid, GID: gid})
		if err != nil || st.Changed != 0 {
			t.Errorf("second run: got changed %d, err %v; want 0, nil", st.Changed, err)
		}
	})
}

func TestFixRefusesSymlinkRoot(t *testing.T) {
	dockertest.Root(t)
	base := t.TempDir()
	os.Mkdir(filepath.Join(base, "real"), 0o755)
	os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "state"))
	_, err := Fix(context.Background(), filepath.Join(base, "state"), Options{UID: uid, GID: gid})
	if !errors.Is(err, ErrSymlink) {
		t.Fatalf("got %v, want ErrSymlink", err)
	}
	if got := owner(t, filepath.Join(base, "real")); got != "0:0" {
		t.Errorf("owner of the symlink's target: got %s, want 0:0", got)
	}
	// A symlink on the way in a directory others can write is refused too.
	os.Chmod(base, 0o777)
	os.Mkdir(filepath.Join(base, "real", "sub"), 0o755)
	_, err = Fix(context.Background(), filepath.Join(base, "state", "sub"), Options{UID: uid, GID: gid})
	if !errors.Is(err, ErrSymlink) {
		t.Fatalf("through a symlink in a world-writable dir: got %v, want ErrSymlink", err)
	}
}

func mount(tb testing.TB, src, target, fstype string, flags uintptr) {
	tb.Helper()
	if err := unix.Mount(src, target, fstype, flags, ""); err != nil {
		tb.Fatalf("mount %s on %s: %v", src, target, err)
	}
	tb.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
}

func TestFixDoesNotCrossMounts(t *testing.T) {
	dockertest.Root(t)
	each(t, func(t *testing.T) {
		base := t.TempDir()
		root := filepath.Join(base, "state")
		outside := filepath.Join(base, "outside")
		write(t, filepath.Join(outside, "file"), 0o644)
		write(t, filepath.Join(outside, "dir", "inner"), 0o644)
		os.MkdirAll(filepath.Join(root, "tmpfs"), 0o755)
		os.MkdirAll(filepath.Join(root, "bind-dir"), 0o755)
		write(t, filepath.Join(root, "bind-file"), 0o644)
		mount(t, "tmpfs", filepath.Join(root, "tmpfs"), "tmpfs", 0)
		write(t, filepath.Join(root, "tmpfs", "inner"), 0o644)
		mount(t, filepath.Join(outside, "dir"), filepath.Join(root, "bind-dir"), "", unix.MS_BIND)
		mount(t, filepath.Join(outside, "file"), filepath.Join(root, "bind-file"), "", unix.MS_BIND)
		// Make the state dir group-writable so files go the pinned way, and
		// also run it sealed.
		for _, perm := range []os.FileMode{0o755, 0o777} {
			os.Chmod(root, perm)
			os.Chown(root, 0, 0)
			st, err := Fix(context.Background(), root, Options{UID: uid, GID: gid})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{filepath.Join(root, "tmpfs"), filepath.Join(root, "tmpfs", "inner"), filepath.Join(outside, "file"), filepath.Join(outside, "dir"), filepath.Join(outside, "dir", "inner")} {
				if got := owner(t, p); got != "0:0" {
					t.Errorf("mode %o: owner of %s: got %s, want 0:0", perm, p, got)
				}
			}
			if got := st.SkippedTotal; got != 3 {
				t.Errorf("mode %o: skipped: got %d (%+v), want 3 mounts", perm, got, st.Skipped)
			}
			for _, s := range st.Skipped {
				if s.Reason != SkipMount {
					t.Errorf("mode %o: skip %s: got %v, want mount point", perm, s.Path, s.Reason)
				}
			}
		}
	})
}

// TestFixRace swaps entries for symlinks and hardlinks to files outside while
// the walk runs; whatever the interleaving, nothing outside changes owner.
func TestFixRace(t *testing.T) {
	dockertest.Root(t)
	each(t, func(t *testing.T) {
		for _, sealed := range []bool{false, true} {
			t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
				base := t.TempDir()
				root := filepath.Join(base, "state")
				outside := filepath.Join(base, "outside")
				write(t, filepath.Join(outside, "shadow"), 0o600)
				write(t, filepath.Join(outside, "dir", "inner"), 0o600)
				const n = 40
				for i := range n {
					write(t, filepath.Join(root, fmt.Sprintf("d%d", i), "f"), 0o644)
				}
				// The attacker is uid 1000, as the app would be: it cannot make
				// hardlinks to root's files (protected_hardlinks), so root plants
				// some in a stash the attacker owns, and it renames them in.
				stash := filepath.Join(base, "stash")
				os.Mkdir(stash, 0o755)
				os.Chown(stash, uid, gid)
				for i := range 3000 {
					os.Link(filepath.Join(outside, "shadow"), filepath.Join(stash, fmt.Sprint(i)))
				}
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				var swaps atomic.Int64
				wg.Add(1)
				go func() { // the attacker
					defer wg.Done()
					runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
					// Only this thread's credentials change (raw syscalls, not Go's all-threads ones).
					if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, gid, gid, gid); e != 0 {
						t.Errorf("setresgid: %v", e)
						return
					}
					if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uid, uid, uid); e != 0 {
						t.Errorf("setresuid: %v", e)
						return
					}
					for i := 0; ctx.Err() == nil; i++ {
						d := filepath.Join(root, fmt.Sprintf("d%d", i%n))
						tmp := filepath.Join(root, fmt.Sprintf(".t%d", i%n))
						var err error
						switch i % 3 {
						case 0:
							os.Symlink(filepath.Join(outside, "shadow"), tmp)
							err = os.Rename(tmp, filepath.Join(d, "f"))
						case 1:
							err = os.Rename(filepath.Join(stash, fmt.Sprint(i%3000)), filepath.Join(d, "f"))
						case 2:
							if err = os.Rename(d, tmp+"x"); err == nil {
								os.Symlink(filepath.Join(outside, "dir"), d)
								os.Remove(d)
								os.Rename(tmp+"x", d)
							}
						}
						if err == nil {
							swaps.Add(1)
						}
					}
				}()
				for range 30 {
					// Reset ownership so there is always work: root-owned, sealed or not.
					filepath.Walk(root, func(p string, fi os.FileInfo, _ error) error {
						if fi != nil && fi.Mode().IsRegular() && fi.Sys().(*syscall.Stat_t).Nlink == 1 || fi != nil && fi.IsDir() {
							os.Lchown(p, 0, 0)
						}
						return nil
					})
					perm := os.FileMode(0o777)
					if sealed {
						perm = 0o755
					}
					filepath.Walk(root, func(p string, fi os.FileInfo, _ error) error {
						if fi != nil && fi.IsDir() {
							os.Chmod(p, perm)
						}
						return nil
					})
					if _, err := Fix(context.Background(), root, Options{UID: uid, GID: gid}); err != nil {
						t.Errorf("fix: %v", err)
					}
				}
				cancel()
				wg.Wait()
				for _, p := range []string{"shadow", "dir", "dir/inner"} {
					if got := owner(t, filepath.Join(outside, p)); got != "0:0" {
						t.Errorf("owner of outside %s after %d swaps: got %s, want 0:0", p, swaps.Load(), got)
					}
				}
			})
		}
	})
}

func TestFixDryRun(t *testing.T) {
	dockertest.Root(t)
	root := t.TempDir()
	write(t, filepath.Join(root, "a", "f"), 0o644)
	st, err := Fix(context.Background(), root, Options{UID: uid, GID: gid, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Changed != 3 {
		t.Errorf("changed: got %d, want 3", st.Changed)
	}
	if got := owner(t, filepath.Join(root, "a", "f")); got != "0:0" {
		t.Errorf("owner after a dry run: got %s, want 0:0", got)
	}
}

func TestMkdirAll(t *testing.T) {
	dockertest.Root(t)
	base := t.TempDir()
	if err := MkdirAll(filepath.Join(base, "x", "y")); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(base, "x", "y")); err != nil {
		t.Fatalf("again: %v", err)
	}
	os.Symlink("/etc", filepath.Join(base, "link"))
	if err := MkdirAll(filepath.Join(base, "link")); !errors.Is(err, ErrSymlink) {
		t.Errorf("on a symlink: got %v, want ErrSymlink", err)
	}
	if err := MkdirAll("relative"); err == nil {
		t.Error("relative path: got nil, want an error")
	}
}

// TestFixSwappedBetweenExamineAndChange swaps each entry, at the worst instant
// (after it was examined, before it is changed), for a symlink or a hardlink to
// a file outside, or a directory for a symlink to one outside.
func TestFixSwappedBetweenExamineAndChange(t *testing.T) {
	dockertest.Root(t)
	each(t, func(t *testing.T) {
		for _, attack := range []string{"symlink", "hardlink", "dir-symlink"} {
			t.Run(attack, func(t *testing.T) {
				base := t.TempDir()
				root := filepath.Join(base, "state")
				outside := filepath.Join(base, "outside")
				write(t, filepath.Join(outside, "shadow"), 0o600)
				write(t, filepath.Join(outside, "dir", "inner"), 0o600)
				write(t, filepath.Join(root, "f"), 0o644)
				os.Mkdir(filepath.Join(root, "d"), 0o755)
				os.Chmod(root, 0o777) // writable by others: the careful path
				var swapped []string
				testHookBeforeChange = func(p string) {
					var err error
					switch {
					case attack == "symlink" && p == filepath.Join(root, "f"):
						os.Remove(p)
						err = os.Symlink(filepath.Join(outside, "shadow"), p)
					case attack == "hardlink" && p == filepath.Join(root, "f"):
						os.Remove(p)
						err = os.Link(filepath.Join(outside, "shadow"), p)
					case attack == "dir-symlink" && p == filepath.Join(root, "d"):
						os.Remove(p)
						err = os.Symlink(filepath.Join(outside, "dir"), p)
					default:
						return
					}
					if err != nil {
						t.Errorf("swapping %s: %v", p, err)
					}
					swapped = append(swapped, p)
				}
				t.Cleanup(func() { testHookBeforeChange = nil })
				if _, err := Fix(context.Background(), root, Options{UID: uid, GID: gid, Workers: 1}); err != nil {
					t.Fatal(err)
				}
				if len(swapped) != 1 {
					t.Fatalf("swapped: got %v, want one entry", swapped)
				}
				for _, p := range []string{"shadow", "dir", "dir/inner"} {
					if got := owner(t, filepath.Join(outside, p)); got != "0:0" {
						t.Errorf("owner of outside %s: got %s, want 0:0", p, got)
					}
				}
			})
		}
	})
}

// escapeShape builds the shape of issue 12 under a root-only base: the image's
// root-owned link srv/moltbot -> home/node/.moltbot, and the app, which owns
// home/node, replaced .moltbot with a link to usr (libc inside).
func escapeShape(tb testing.TB) (base string) {
	tb.Helper()
	base = tb.TempDir()
	write(tb, filepath.Join(base, "usr", "lib", "libc.so.6"), 0o755)
	for _, d := range []string{"srv", "home/node"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(base, "home", "node"), uid, gid); err != nil {
		tb.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "home", "node", ".moltbot"), filepath.Join(base, "srv", "moltbot")); err != nil {
		tb.Fatal(err)
	}
	// The app: rm -rf ~/.moltbot && ln -s /usr ~/.moltbot
	if err := os.Symlink(filepath.Join(base, "usr"), filepath.Join(base, "home", "node", ".moltbot")); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Lchown(filepath.Join(base, "home", "node", ".moltbot"), uid, gid); err != nil {
		tb.Fatal(err)
	}
	return base
}

// TestTrustedLinkIsTrustedOnlyAsFarAsItsTarget is issue 12's ownership escape:
// a link the app owns, met inside the target of a trusted root link, is never
// followed, by any of the ways in (Fix, MkdirAll, Resolve).
func TestTrustedLinkIsTrustedOnlyAsFarAsItsTarget(t *testing.T) {
	dockertest.Root(t)
	each(t, func(t *testing.T) {
		base := escapeShape(t)
		dir := filepath.Join(base, "srv", "moltbot", "lib")
		for _, tc := range []struct {
			name string
			do   func() error
		}{
			{"Fix", func() error { _, err := Fix(context.Background(), dir, Options{UID: uid, GID: gid}); return err }},
			{"Fix dry run", func() error {
				_, err := Fix(context.Background(), dir, Options{UID: uid, GID: gid, DryRun: true})
				return err
			}},
			{"MkdirAll", func() error { return MkdirAll(filepath.Join(dir, "new")) }},
			{"Resolve", func() error { _, err := Resolve(dir); return err }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.do(); !errors.Is(err, ErrSymlink) {
					t.Errorf("got %v, want ErrSymlink", err)
				}
				for _, p := range []string{"usr", "usr/lib", "usr/lib/libc.so.6"} {
					if got := owner(t, filepath.Join(base, p)); got != "0:0" {
						t.Errorf("owner of %s: got %s, want 0:0", p, got)
					}
				}
				if _, err := os.Lstat(filepath.Join(base, "usr", "lib", "new")); err == nil {
					t.Errorf("%s/usr/lib/new was created", base)
				}
			})
		}
	})
}

// TestTrustedLinksChained follows trusted links inside trusted links'
// targets (absolute and relative, with ".."), and refuses a link that is
// root's but sits in a directory the user can write.
func TestTrustedLinksChained(t *testing.T) {
	dockertest.Root(t)
	each(t, func(t *testing.T) {
		base := t.TempDir()
		write(t, filepath.Join(base, "real", "state", "f"), 0o644)
		os.MkdirAll(filepath.Join(base, "srv"), 0o755)
		os.MkdirAll(filepath.Join(base, "opt"), 0o755)
		os.Symlink(filepath.Join(base, "opt", "b"), filepath.Join(base, "srv", "a")) // absolute
		os.Symlink("../real", filepath.Join(base, "opt", "b"))                       // relative, with ..
		dir := filepath.Join(base, "srv", "a", "state")
		got, err := Resolve(dir)
		if want := filepath.Join(base, "real", "state"); err != nil || got != want {
			t.Fatalf("Resolve: got %q, %v; want %q", got, err, want)
		}
		if _, err := Fix(context.Background(), dir, Options{UID: uid, GID: gid}); err != nil {
			t.Fatal(err)
		}
		if got := owner(t, filepath.Join(base, "real", "state", "f")); got != "1000:1000" {
			t.Errorf("owner through trusted links: got %s, want 1000:1000", got)
		}
		// The same root-owned link in a directory the user owns is not trusted.
		os.Chown(filepath.Join(base, "opt"), uid, gid)
		if _, err := Fix(context.Background(), dir, Options{UID: uid, GID: gid}); !errors.Is(err, ErrSymlink) {
			t.Errorf("through a root link in the user's directory: got %v, want ErrSymlink", err)
		}
	})
}

func TestSystemDirsRefused(t *testing.T) {
	dockertest.Root(t)
	base := t.TempDir()
	os.Symlink("/usr", filepath.Join(base, "sys")) // a trusted link to a system tree
	for _, dir := range []string{"/", "/etc", "/etc/", "/usr/lib", "/lib64", "/var/log/app", "/proc/1", "/var",
		"/home/node/../../usr", "/var/lib/../../etc", filepath.Join(base, "sys", "local")} {
		t.Run(dir, func(t *testing.T) {
			// A dry run: old code must not be able to harm the host here.
			if _, err := Fix(context.Background(), dir, Options{UID: uid, GID: gid, DryRun: true}); !errors.Is(err, ErrSystemDir) {
				t.Errorf("Fix: got %v, want ErrSystemDir", err)
			}
			if _, err := Resolve(dir); !errors.Is(err, ErrSystemDir) {
				t.Errorf("Resolve: got %v, want ErrSystemDir", err)
			}
		})
	}
	made := "/usr/local/moltctl-test-" + filepath.Base(base)
	t.Cleanup(func() { os.Remove(made) })
	if err := MkdirAll(made); !errors.Is(err, ErrSystemDir) {
		t.Errorf("MkdirAll(%q): got %v, want ErrSystemDir", made, err)
	}
	for _, dir := range []string{"/var/lib/moltbot", "/home/node/clawd", "/srv/moltbot", "/libre-office-data/x", base} {
		if SystemDir(filepath.Clean(dir)) && dir != "/libre-office-data/x" {
			t.Errorf("SystemDir(%q): got true, want false", dir)
		}
	}
}

// TestFixDeepTreeBoundedDescriptors walks 5,000 levels with an open-file limit
// of 1,024.
func TestFixDeepTreeBoundedDescriptors(t *testing.T) {
	dockertest.Root(t)
	const depth = 5000
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	each(t, func(t *testing.T) {
		root := t.TempDir()
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < depth; i++ {
			if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
				t.Fatal(err)
			}
			if i == depth/2 {
				unix.Mkdirat(fd, "side", 0o700) // a sibling walked after a deep subtree
			}
			nfd, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
			fd = nfd
		}
		ffd, err := unix.Openat(fd, "leaf", unix.O_CREAT|unix.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(ffd)
		defer unix.Close(fd)
		lim := unix.Rlimit{Cur: 1024, Max: old.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		st, err := Fix(context.Background(), root, Options{UID: uid, GID: gid})
		unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
		if err != nil {
			t.Fatalf("Fix: got %.300v, want nil", err)
		}
		if want := int64(depth + 3); st.Changed != want { // root, levels, side, leaf
			t.Errorf("changed: got %d, want %d", st.Changed, want)
		}
		var fst unix.Stat_t
		if err := unix.Fstatat(fd, "leaf", &fst, unix.AT_SYMLINK_NOFOLLOW); err != nil || fst.Uid != uid {
			t.Errorf("owner of the deepest file: got %d (%v), want %d", fst.Uid, err, uid)
		}
	})
}

// TestFixWithoutDACOverride runs Fix on a thread whose effective capabilities
// lack CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (docker run --cap-drop ALL
// --cap-add CHOWN,SETUID,SETGID): a 0700 directory root may not open is left
// to the user (and given to it when it is not yet), reported, and no error.
func TestFixWithoutDACOverride(t *testing.T) {
	dockertest.Root(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	write(t, filepath.Join(root, "credentials", "token"), 0o600)
	write(t, filepath.Join(root, "other", "x"), 0o600)
	write(t, filepath.Join(root, "f"), 0o644)
	os.Chown(filepath.Join(root, "credentials"), uid, gid)
	os.Chown(filepath.Join(root, "credentials", "token"), uid, gid)
	os.Chmod(filepath.Join(root, "credentials"), 0o700)
	os.Chown(filepath.Join(root, "other"), 1234, 1234)
	os.Chmod(filepath.Join(root, "other"), 0o700)
	own := t.TempDir() // the state directory itself unreadable to root
	os.Chown(own, uid, gid)
	os.Chmod(own, 0o700)

	type result struct {
		st  Stats
		err error
	}
	run := func(dir string) result {
		ch := make(chan result)
		go func() {
			// This goroutine's thread loses the capabilities and ends with it
			// (never unlocked).
			runtime.LockOSThread()
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				ch <- result{err: err}
				return
			}
			for _, c := range []uint{unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_FOWNER} {
				data[c/32].Effective &^= 1 << (c % 32)
			}
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				ch <- result{err: err}
				return
			}
			st, err := Fix(context.Background(), dir, Options{UID: uid, GID: gid, Workers: 1})
			ch <- result{st, err}
		}()
		return <-ch
	}
	r := run(root)
	if r.err != nil {
		t.Fatalf("Fix: got %v, want nil", r.err)
	}
	want := map[string]bool{filepath.Join(root, "credentials"): true, filepath.Join(root, "other"): true}
	for _, s := range r.st.Skipped {
		if !want[s.Path] || s.Reason != SkipNoAccess {
			t.Errorf("skipped %q (%s), want only credentials and other (no access)", s.Path, s.Reason)
		}
		delete(want, s.Path)
	}
	if len(want) > 0 {
		t.Errorf("not reported: %v", want)
	}
	for p, w := range map[string]string{"": "1000:1000", "f": "1000:1000", "other": "1000:1000", "other/x": "0:0", "credentials/token": "1000:1000"} {
		if got := owner(t, filepath.Join(root, p)); got != w {
			t.Errorf("owner of %q: got %s, want %s", p, got, w)
		}
	}
	r = run(own)
	if r.err != nil || r.st.SkippedTotal != 1 {
		t.Errorf("state directory root may not open: got %+v, %v; want it reported, nil", r.st, r.err)
	}
}

// TestFixDeepDirectoryMovedDuringTheWalk moves a directory below the depth
// where the walk closes its parents' descriptors while the walk is inside it:
// the subdirectory's ".." is then not the directory the walk came from, which
// is reported as changed, never walked as if it were.
func TestFixDeepDirectoryMovedDuringTheWalk(t *testing.T) {
	dockertest.Root(t)
	root := t.TempDir()
	p := root
	for i := 0; i < deepAfter+5; i++ {
		p = filepath.Join(p, "d")
	}
	write(t, filepath.Join(p, "y", "z", "f"), 0o644)
	os.Mkdir(filepath.Join(root, "elsewhere"), 0o755)
	y := filepath.Join(p, "y")
	moved := false
	testHookBeforeChange = func(path string) {
		if path == filepath.Join(y, "z") && !moved {
			moved = true
			if err := os.Rename(y, filepath.Join(root, "elsewhere", "y")); err != nil {
				t.Errorf("moving: %v", err)
			}
		}
	}
	t.Cleanup(func() { testHookBeforeChange = nil })
	st, err := Fix(context.Background(), root, Options{UID: uid, GID: gid})
	if err != nil {
		t.Fatalf("Fix: got %v, want nil", err)
	}
	if !moved {
		t.Fatal("the hook never moved the directory")
	}
	found := false
	for _, s := range st.Skipped {
		found = found || s.Path == p && s.Reason == SkipChanged
	}
	if !found {
		t.Errorf("skipped: got %+v, want %q changed during the walk", st.Skipped, p)
	}
	// The next run finishes the job.
	if _, err := Fix(context.Background(), root, Options{UID: uid, GID: gid}); err != nil || owner(t, p) != "1000:1000" {
		t.Errorf("second run: got %v, owner %s; want nil, 1000:1000", err, owner(t, p))
	}
}

// TestFixStopsWhenCancelled: a cancelled context (SIGTERM in bootstrap) stops
// the walk with the context's error.
func TestFixStopsWhenCancelled(t *testing.T) {
	dockertest.Root(t)
	root := t.TempDir()
	for i := 0; i < 20; i++ {
		write(t, filepath.Join(root, fmt.Sprint(i), "f"), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	testHookBeforeChange = func(string) { cancel() }
	t.Cleanup(func() { testHookBeforeChange = nil })
	if _, err := Fix(ctx, root, Options{UID: uid, GID: gid, Workers: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// TestFixStopsWithoutMountTable: where openat2 can't refuse to cross a mount
// and the mount table can't be read, a bind mount of the same file system
// below root can't be told from a directory: Fix changes nothing and says
// why (its old mountinfo reader went on with an empty table).
func TestFixStopsWithoutMountTable(t *testing.T) {
	dockertest.Root(t)
	forceNoOpenat2 = true
	t.Cleanup(func() { forceNoOpenat2 = false })
	real := safefs.TestHooks.MountInfo
	safefs.TestHooks.MountInfo = filepath.Join(t.TempDir(), "no-mountinfo")
	t.Cleanup(func() { safefs.TestHooks.MountInfo = real })
	root := t.TempDir()
	write(t, filepath.Join(root, "file"), 0o644)
	_, err := Fix(context.Background(), root, Options{UID: uid, GID: gid})
	if err == nil || !strings.Contains(err.Error(), "mount table") || strings.Count(err.Error(), root) != 1 {
		t.Errorf("got %v, want an error naming the mount table and the root once", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "file"), &st); err != nil || st.Uid == uint32(uid) {
		t.Errorf("got file owned by %d (%v), want it left alone", st.Uid, err)
	}
}
