package bootstrapcmd

import (
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/bootstrap"
	"github.com/moltctl/moltctl/internal/perms"
)

func TestReport(t *testing.T) {
	long := "/s/" + strings.Repeat("d/", 400)
	for _, tc := range []struct {
		name string
		e    bootstrap.Event
		want string
	}{
		{"one entry", bootstrap.Event{Kind: bootstrap.EventOwnership, Dir: "/s", Stats: perms.Stats{Entries: 1, Changed: 1}},
			`moltctl bootstrap: "/s": changed the owner of 1 of 1 entry` + "\n"},
		{"a newline cannot forge a line", bootstrap.Event{Kind: bootstrap.EventOwnership, Dir: "/s", Stats: perms.Stats{Entries: 3,
			Skipped: []perms.Skip{{Path: "/s/x\nmoltctl bootstrap: all good", Reason: perms.SkipHardlink}}, SkippedTotal: 1}},
			`moltctl bootstrap: "/s": left 1 entry alone (hardlinked elsewhere), e.g. "/s/x\nmoltctl bootstrap: all good"; chown it by hand if the app needs it (it has other names, maybe outside)` + "\n"},
		{"mount hint, one line per reason", bootstrap.Event{Kind: bootstrap.EventOwnership, Dir: "/s", Stats: perms.Stats{Entries: 9,
			Skipped:      []perms.Skip{{Path: "/s/m", Reason: perms.SkipMount}, {Path: "/s/c", Reason: perms.SkipNoAccess}, {Path: "/s/n", Reason: perms.SkipMount}},
			SkippedTotal: 3}},
			`moltctl bootstrap: "/s": left 2 entries alone (mount point), e.g. "/s/m"; to have a mount's ownership fixed too, list it in MOLTCTL_DIRS` + "\n" +
				`moltctl bootstrap: "/s": left 1 entry alone (root may not open it without CAP_DAC_OVERRIDE; its contents are left to the user), e.g. "/s/c"` + "\n"},
		{"long path shortened", bootstrap.Event{Kind: bootstrap.EventOwnership, Dir: "/s", Stats: perms.Stats{Entries: 2,
			Skipped: []perms.Skip{{Path: long, Reason: perms.SkipChanged}}, SkippedTotal: 5}},
			`moltctl bootstrap: "/s": left at least 1 entry alone (changed during the walk), e.g. "` + long[:120] + `"…"` + long[len(long)-120:] + `" (803 bytes); the next start fixes it` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			report(&b, tc.e, false)
			if got := b.String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
