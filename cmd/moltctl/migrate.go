package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newMigrateCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "(not yet implemented)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("migrate: not yet implemented")
		},
	}
}
