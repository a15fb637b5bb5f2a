package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newRemountCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remount",
		Short: "(not yet implemented)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("remount: not yet implemented")
		},
	}
}
