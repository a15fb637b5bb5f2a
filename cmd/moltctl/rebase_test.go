package main

import (
	"errors"
	"fmt"
	"github.com/spf13/cobra"
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
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--rebase"}, true},
		{[]string{"--rebase", "--rebase-conflicts", "image"}, true},
		{[]string{"--rebase", "--rebase-conflicts", "layer"}, true},
		{[]string{"--rebase", "--rebase-conflicts", "both"}, false},
		{[]string{"--rebase", "--rebase-conflicts", ""}, false},
		{[]string{"--rebase-conflicts", "layer"}, false}, // does nothing without --rebase
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var f rebaseFlags
			cmd := &cobra.Command{Use: "x"}
			f.register(cmd)
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := f.validate(cmd); (err == nil) != tc.ok {
				t.Errorf("%q: got %v, want ok=%v", tc.args, err, tc.ok)
			}
		})
	}
}
