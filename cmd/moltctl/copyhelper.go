package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newCopyHelperCmd is the hidden command that runs inside moltctl's helper container.
func newCopyHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "copy-helper",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("copy-helper: not yet implemented")
		},
	}
}
