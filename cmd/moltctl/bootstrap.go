package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/cmd/moltctl/internal/bootstrapcmd"
)

// newBootstrapCmd is bootstrapcmd's command (shared with the gateway image's
// entrypoint build, cmd/moltctl/entrypoint), its exit codes mapped to moltctl's.
func newBootstrapCmd() *cobra.Command {
	cmd := bootstrapcmd.New()
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		var ee *bootstrapcmd.ExitError
		if errors.As(err, &ee) {
			return &exitCodeError{code: ee.Code, err: ee.Err}
		}
		return err
	}
	return cmd
}
