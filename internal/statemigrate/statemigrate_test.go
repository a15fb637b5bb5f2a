package statemigrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/safefs"
)

func TestPreset(t *testing.T) {
	tests := []struct {
		name    string
		want    []string // legacy→target pairs
		wantErr error
	}{
		{"", []string{"/h/.clawdbot→/h/.moltbot"}, nil},
		{"moltbot", []string{"/h/.clawdbot→/h/.moltbot"}, nil},
		{"openclaw", []string{"/h/.clawdbot→/h/.openclaw", "/h/.moldbot→/h/.openclaw", "/h/.moltbot→/h/.openclaw"}, nil},
		{"clawdbot", nil, ErrUnknownPreset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := Preset(tt.name, "/h/")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			var got []string
			for _, r := range rules {
				got = append(got, r.Legacy+"→"+r.Target)
				if len(r.Files) == 0 {
					t.Errorf("rule %s: got no file renames", r.Legacy)
				}
			}
			if !eqStrings(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := Preset("moltbot", "relative"); err == nil {
		t.Error("relative home: got no error, want one")
	}
}

func TestMigrateRejectsBadRules(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "a")
	tests := []struct {
		name string
		r    Rule
	}{
		{"relative legacy", Rule{Legacy: "a", Target: good}},
		{"same dirs", Rule{Legacy: good, Target: good + "/"}},
		{"file with slash", Rule{Legacy: good, Target: good + "x", Files: []FileRule{{Legacy: "../x", Target: "y"}}}},
		{"empty file name", Rule{Legacy: good, Target: good + "x", Files: []FileRule{{Legacy: "x"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(t, good, state{"f": "x"})
			defer os.RemoveAll(good)
			_, err := Migrate(context.Background(), Options{Rules: []Rule{{Legacy: good, Target: good + ".ok"}, tt.r}})
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("got error %v, want ErrInvalidRule", err)
			}
			if got := read(t, good); !equal(got, state{"f": "x"}) {
				t.Errorf("got %v after a refused run, want nothing changed", got)
			}
		})
	}
}

// TestMigrate covers the cases that need no mount: each sets up a home,
// migrates with the moltbot preset (twice: the rerun must change nothing) and
// checks the outcome and the resulting tree.
func TestMigrate(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T, legacy, target string)
		want       string // action of the first run
		wantRerun  string
		wantWarn   string // substring of the first run's warning
		wantLegacy string // link target of legacy afterwards, "" when not a link
		wantTarget state  // content under target afterwards; nil: target absent
	}{
		{
			name:       "plain rename",
			setup:      func(t *testing.T, legacy, _ string) { write(t, legacy, seed) },
			want:       ActionRenamed,
			wantRerun:  ActionDone,
			wantLegacy: ".moltbot",
			wantTarget: migrated(seed),
		},
		{
			name:      "nothing there",
			setup:     func(*testing.T, string, string) {},
			want:      ActionAbsent,
			wantRerun: ActionAbsent,
		},
		{
			name:       "only target",
			setup:      func(t *testing.T, _, target string) { write(t, target, migrated(seed)) },
			want:       ActionAbsent,
			wantRerun:  ActionAbsent,
			wantTarget: migrated(seed),
		},
		{
			name: "both exist",
			setup: func(t *testing.T, legacy, target string) {
				write(t, legacy, seed)
				write(t, target, state{"moltbot.json": "{}"})
			},
			want:       ActionConflict,
			wantRerun:  ActionConflict,
			wantWarn:   "merge manually",
			wantTarget: state{"moltbot.json": "{}"},
		},
		{
			name: "empty target directory is not replaced",
			setup: func(t *testing.T, legacy, target string) {
				write(t, legacy, seed)
				os.Mkdir(target, 0o755)
			},
			want:       ActionConflict,
			wantRerun:  ActionConflict,
			wantWarn:   "merge manually",
			wantTarget: state{},
		},
		{
			name: "links already in place",
			setup: func(t *testing.T, legacy, target string) {
				write(t, target, migrated(seed))
				os.Symlink(".moltbot", legacy)
			},
			want:       ActionDone,
			wantRerun:  ActionDone,
			wantLegacy: ".moltbot",
			wantTarget: migrated(seed),
		},
		{
			name: "legacy links elsewhere",
			setup: func(t *testing.T, legacy, _ string) {
				write(t, filepath.Join(filepath.Dir(legacy), "elsewhere"), seed)
				os.Symlink("elsewhere", legacy)
			},
			want:       ActionLinked,
			wantRerun:  ActionLinked,
			wantLegacy: "elsewhere",
		},
		{
			name: "legacy is a file",
			setup: func(t *testing.T, legacy, _ string) {
				os.WriteFile(legacy, []byte("x"), 0o644)
			},
			want:      ActionConflict,
			wantRerun: ActionConflict,
			wantWarn:  "not a directory",
		},
		{
			name: "both config names",
			setup: func(t *testing.T, legacy, _ string) {
				write(t, legacy, state{"clawdbot.json": "old", "moltbot.json": "new"})
			},
			want:       ActionRenamed,
			wantRerun:  ActionDone,
			wantWarn:   `both "clawdbot.json" and "moltbot.json" exist`,
			wantLegacy: ".moltbot",
			wantTarget: state{"clawdbot.json": "old", "moltbot.json": "new"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			rules, err := Preset("moltbot", home)
			if err != nil {
				t.Fatal(err)
			}
			legacy, target := rules[0].Legacy, rules[0].Target
			tt.setup(t, legacy, target)
			out, err := Migrate(context.Background(), Options{Rules: rules})
			if err != nil {
				t.Fatal(err)
			}
			if got := out[0].Action; got != tt.want {
				t.Errorf("got action %q, want %q (warning %q)", got, tt.want, out[0].Warning)
			}
			if !strings.Contains(out[0].Warning, tt.wantWarn) || (tt.wantWarn == "" && out[0].Warning != "") {
				t.Errorf("got warning %q, want one containing %q", out[0].Warning, tt.wantWarn)
			}
			again, err := Migrate(context.Background(), Options{Rules: rules})
			if err != nil {
				t.Fatal(err)
			}
			if got := again[0].Action; got != tt.wantRerun {
				t.Errorf("rerun: got action %q, want %q", got, tt.wantRerun)
			}
			if got := readlink(t, legacy); got != tt.wantLegacy {
				t.Errorf("got legacy link %q, want %q", got, tt.wantLegacy)
			}
			if tt.wantTarget == nil {
				if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("got target %v, want it absent", err)
				}
			} else if got := read(t, target); !equal(got, tt.wantTarget) {
				t.Errorf("got target %v, want %v", got, tt.wantTarget)
			}
			leftovers, _ := filepath.Glob(filepath.Join(home, ".*.moltctl-*"))
			for _, l := range leftovers {
				if !strings.HasSuffix(l, ".moltctl-lock") {
					t.Errorf("got leftover %s, want none", l)
				}
			}
		})
	}
}

// TestMigrateOpenclaw: the first legacy directory in the app's order wins;
// the others are left alone with a warning, and a legacy link into another
// legacy directory is followed by its rule.
func TestMigrateOpenclaw(t *testing.T) {
	home := t.TempDir()
	rules, err := Preset("openclaw", home)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(home, ".moldbot"), state{"moldbot.json": "moldbot"})
	write(t, filepath.Join(home, ".moltbot"), state{"moltbot.json": "moltbot"})
	if err := os.Symlink(".moldbot", filepath.Join(home, ".clawdbot")); err != nil {
		t.Fatal(err)
	}
	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actions(out), []string{ActionLinked, ActionRenamed, ActionConflict}; !eqStrings(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, want := read(t, filepath.Join(home, ".openclaw")), (state{"openclaw.json": "moldbot"}); !equal(got, want) {
		t.Errorf("got .openclaw %v, want %v", got, want)
	}
	if got := read(t, filepath.Join(home, ".clawdbot")); !equal(got, state{"openclaw.json": "moldbot"}) {
		t.Errorf("got .clawdbot → %v, want the .openclaw state through the link chain", got)
	}
	if got := read(t, filepath.Join(home, ".moltbot")); !equal(got, state{"moltbot.json": "moltbot"}) {
		t.Errorf("got .moltbot %v, want it left alone", got)
	}
	// The warning says where .openclaw came from (issue 12: it did not).
	if want := fmt.Sprintf("the app uses %q, which was migrated from %q; if %q holds the state you want, merge it by hand",
		filepath.Join(home, ".openclaw"), filepath.Join(home, ".moldbot"), filepath.Join(home, ".moltbot")); !strings.Contains(out[2].Warning, want) {
		t.Errorf("got warning %q, want it to contain %q", out[2].Warning, want)
	}
}

// TestRenameFallback: a filesystem that answers EINVAL to RENAME_NOREPLACE
// still gets a no-replace rename.
func TestRenameFallback(t *testing.T) {
	real := safefs.TestHooks.Renameat2
	safefs.TestHooks.Renameat2 = func(int, string, int, string, uint) error { return unix.EINVAL }
	t.Cleanup(func() { safefs.TestHooks.Renameat2 = real })
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, state{"x": "1"})
	write(t, b, state{"y": "2"})
	if err := renameNoReplace(a, b); !errors.Is(err, unix.EEXIST) {
		t.Errorf("existing target: got %v, want EEXIST", err)
	}
	c := filepath.Join(dir, "c")
	if err := renameNoReplace(a, c); err != nil {
		t.Fatalf("absent target: got %v, want nil", err)
	}
	if got := read(t, c); !equal(got, state{"x": "1"}) {
		t.Errorf("got %v, want the renamed directory", got)
	}
	home := t.TempDir()
	rules, _ := Preset("moltbot", home)
	write(t, rules[0].Legacy, seed)
	out, err := Migrate(context.Background(), Options{Rules: rules})
	if err != nil || out[0].Action != ActionRenamed {
		t.Fatalf("got %v, %v, want renamed", out, err)
	}
}

// TestMigrateMessagesTrue: issue 12's untrue warnings. A target that is a
// link to nothing is named as such (the app cannot use it); a rename that
// fails leaves no intent file behind ("nothing is half done" is true and the
// next start does not repeat a half-done step).
func TestMigrateMessagesTrue(t *testing.T) {
	t.Run("dangling target link", func(t *testing.T) {
		home := t.TempDir()
		rules, _ := Preset("moltbot", home)
		write(t, filepath.Join(home, ".clawdbot"), state{"clawdbot.json": "x"})
		if err := os.Symlink("/nowhere", filepath.Join(home, ".moltbot")); err != nil {
			t.Fatal(err)
		}
		out, err := Migrate(context.Background(), Options{Rules: rules})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%q is a link to %q, which does not exist, so the app cannot use it", filepath.Join(home, ".moltbot"), "/nowhere")
		if out[0].Action != ActionConflict || !strings.Contains(out[0].Warning, want) || strings.Contains(out[0].Warning, "the app uses") {
			t.Errorf("got %s %q, want conflict and a warning containing %q", out[0].Action, out[0].Warning, want)
		}
	})
	t.Run("rename fails", func(t *testing.T) {
		real := safefs.TestHooks.Renameat2
		safefs.TestHooks.Renameat2 = func(int, string, int, string, uint) error { return unix.EACCES }
		t.Cleanup(func() { safefs.TestHooks.Renameat2 = real })
		home := t.TempDir()
		rules, _ := Preset("moltbot", home)
		write(t, filepath.Join(home, ".clawdbot"), state{"clawdbot.json": "x"})
		out, err := Migrate(context.Background(), Options{Rules: rules})
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Action != ActionFailed || !strings.Contains(out[0].Warning, "nothing is half done") {
			t.Errorf("got %s %q, want failed, nothing half done", out[0].Action, out[0].Warning)
		}
		if _, err := os.Lstat(intentPath(filepath.Join(home, ".moltbot"))); err == nil {
			t.Errorf("intent file %q left behind", intentPath(filepath.Join(home, ".moltbot")))
		}
	})
}
