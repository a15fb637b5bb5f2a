package statemigrate

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/moltctl/moltctl/internal/dockertest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// scenario sets up one migration and returns its rules.
type scenario struct {
	name  string
	root  bool // needs mounts
	setup func(tb testing.TB) []Rule
}

var scenarios = []scenario{
	{"rename", false, func(tb testing.TB) []Rule {
		rules, _ := Preset("moltbot", tb.TempDir())
		write(tb, rules[0].Legacy, seed)
		return rules
	}},
	{"mount gone", false, func(tb testing.TB) []Rule {
		rules, _ := Preset("moltbot", tb.TempDir())
		write(tb, rules[0].Legacy, seed)
		os.Symlink(".clawdbot", rules[0].Target)
		return rules
	}},
	{"openclaw chain", false, func(tb testing.TB) []Rule {
		home := tb.TempDir()
		rules, _ := Preset("openclaw", home)
		write(tb, filepath.Join(home, ".moltbot"), seed)
		os.Symlink(".moltbot", filepath.Join(home, ".clawdbot"))
		return rules
	}},
	{"copy across filesystems", true, func(tb testing.TB) []Rule {
		rules := exdevRules(tb)
		write(tb, rules[0].Legacy, seed)
		return rules
	}},
	{"mounted legacy", true, func(tb testing.TB) []Rule {
		rules, _ := Preset("moltbot", tb.TempDir())
		host := tb.TempDir()
		write(tb, host, seed)
		os.Mkdir(rules[0].Legacy, 0o755)
		mount(tb, host, rules[0].Legacy, "")
		return rules
	}},
}

// layout is what a finished migration leaves: the links and the app's view.
type layout struct {
	legacyLink, targetLink, appDir string
	app                            state
	leftovers                      []string
}

func layoutOf(tb testing.TB, rules []Rule) layout {
	tb.Helper()
	l := layout{legacyLink: readlink(tb, rules[0].Legacy), targetLink: readlink(tb, rules[0].Target)}
	l.appDir, l.app = appView(tb, rules)
	for _, r := range rules {
		for _, p := range []string{intentPath(r.Target), stagingPath(r.Target)} {
			if _, err := os.Lstat(p); err == nil {
				l.leftovers = append(l.leftovers, p)
			}
		}
	}
	return l
}

// validApp: the app sees the seed, before or after the config file rename.
func validApp(s state) bool {
	if equal(s, seed) || equal(s, migrated(seed)) {
		return true
	}
	oc := state{}
	for k, v := range seed {
		if k == "clawdbot.json" {
			k = "openclaw.json"
		}
		oc[k] = v
	}
	return equal(s, oc)
}

// TestCrashAtEveryStep simulates kill -9 at every step boundary: a child
// process running Migrate exits at the n-th step; the app must then see a
// complete state (old or new), and the next Migrate must end in exactly the
// layout an uninterrupted run leaves.
func TestCrashAtEveryStep(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.root {
				dockertest.Root(t)
			}
			// Reference run, counting the steps.
			rules := sc.setup(t)
			var steps []string
			real := stepHook
			stepHook = func(s string) { steps = append(steps, s) }
			_, err := Migrate(context.Background(), Options{Rules: rules})
			stepHook = real
			if err != nil {
				t.Fatal(err)
			}
			want := layoutOf(t, rules)
			if !validApp(want.app) || len(want.leftovers) > 0 {
				t.Fatalf("reference run: got %+v, want the seed and no leftovers", want)
			}
			if len(steps) < 2 {
				t.Fatalf("got steps %v, want several", steps)
			}
			for n := 1; n <= len(steps); n++ {
				t.Run(steps[n-1], func(t *testing.T) {
					rules := sc.setup(t)
					cmd := childCmd(t, Options{Rules: rules}, envCrashAt+"="+itoa(n))
					out, err := cmd.CombinedOutput()
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.ExitCode() != crashCode {
						t.Fatalf("child: got %v (%s), want exit %d", err, out, crashCode)
					}
					if dir, s := appView(t, rules); !validApp(s) {
						t.Errorf("after a crash at step %d (%s): got app view %s = %v, want a complete state", n, steps[n-1], dir, s)
					}
					if _, err := Migrate(context.Background(), Options{Rules: rules}); err != nil {
						t.Fatalf("rerun: %v", err)
					}
					got := layoutOf(t, rules)
					// Paths differ per fixture: compare relative to the fixture.
					if got.legacyLink != want.legacyLink || got.targetLink != want.targetLink ||
						filepath.Base(got.appDir) != filepath.Base(want.appDir) || !equal(got.app, want.app) || len(got.leftovers) > 0 {
						t.Errorf("after a crash at step %d (%s) and a rerun: got %+v, want %+v", n, steps[n-1], got, want)
					}
				})
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestParallel: two processes migrate the same directory at once; exactly
// one does the work and the other finds it done. The first to lock holds the
// lock a moment so the second really waits (the assertion does not need it).
func TestParallel(t *testing.T) {
	tests := []struct {
		sc   scenario
		want string
	}{
		{scenarios[0], ActionRenamed},
		{scenarios[3], ActionCopied},
	}
	for _, tt := range tests {
		t.Run(tt.sc.name, func(t *testing.T) {
			if tt.sc.root {
				dockertest.Root(t)
			}
			rules := tt.sc.setup(t)
			var wg sync.WaitGroup
			results := make([][]Outcome, 2)
			errs := make([]error, 2)
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := childCmd(t, Options{Rules: rules}, envHold+"=100ms")
					var stderr strings.Builder
					cmd.Stderr = &stderr
					out, err := cmd.Output()
					if err != nil {
						errs[i] = errors.New(err.Error() + ": " + stderr.String())
						return
					}
					errs[i] = json.Unmarshal(out, &results[i])
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			got := []string{results[0][0].Action, results[1][0].Action}
			if !(eqStrings(got, []string{tt.want, ActionDone}) || eqStrings(got, []string{ActionDone, tt.want})) {
				t.Errorf("got actions %v, want one %s and one done", got, tt.want)
			}
			if got := read(t, rules[0].Target); !equal(got, migrated(seed)) {
				t.Errorf("got %v, want %v", got, migrated(seed))
			}
		})
	}
}

// TestLockWaitEndsWithContext: Migrate waiting for a lock held elsewhere
// returns ctx's error and changes nothing.
func TestLockWaitEndsWithContext(t *testing.T) {
	rules := scenarios[0].setup(t)
	held, err := acquire(context.Background(), lockPath(rules[0].Target, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer held.release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = Migrate(ctx, Options{Rules: rules})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if got := read(t, rules[0].Legacy); !equal(got, seed) {
		t.Errorf("got %v, want the legacy state untouched", got)
	}
}
