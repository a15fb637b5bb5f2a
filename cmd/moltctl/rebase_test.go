package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/remount"
)

func TestRebaseAdvice(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"image changed", fmt.Errorf("container x: %w", remount.ErrImageChanged), "--rebase"},
		{"other", errors.New("boom"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rebaseAdvice(tc.err)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("rebaseAdvice(%v): got %q, want it to name %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestRebaseFlagsValidate(t *testing.T) {
	for _, tc := range []struct {
		conflicts string
		ok        bool
	}{{"image", true}, {"layer", true}, {"both", false}, {"", false}} {
		t.Run(tc.conflicts, func(t *testing.T) {
			err := (&rebaseFlags{conflicts: tc.conflicts}).validate()
			if (err == nil) != tc.ok {
				t.Errorf("--rebase-conflicts %q: got %v, want ok=%v", tc.conflicts, err, tc.ok)
			}
		})
	}
}
