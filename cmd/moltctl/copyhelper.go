package main

import (
	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/helperfs"
)

// newCopyHelperCmd is the hidden command that runs inside moltctl's helper
// container: `moltctl copy-helper REQUEST` (see helperfs.Main).
func newCopyHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "copy-helper REQUEST",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return helperfs.Main(cmd.Context(), args, cmd.OutOrStdout())
		},
	}
}
