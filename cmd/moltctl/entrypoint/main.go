// Command entrypoint is moltctl built for an image's ENTRYPOINT: the gateway
// image installs it as /usr/local/bin/moltctl and runs `moltctl bootstrap`.
// It has moltctl's bootstrap and version commands and nothing else, so a
// container start pays for none of the compose and engine packages'
// initialisation (compose-go's JSON schema alone took 4 ms per start).
// For migrate, remount, status and up use the full moltctl.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/cmd/moltctl/internal/bootstrapcmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	root := &cobra.Command{
		Use:           "moltctl",
		Short:         "moltctl's image entrypoint build: bootstrap only (migrate, remount, status and up are in the full moltctl)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(bootstrapcmd.New(), &cobra.Command{
		Use:   "version",
		Short: "Print moltctl's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "moltctl %s (%s, %s/%s, entrypoint build)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	})
	// The full moltctl's other commands, hidden: they say where to run them.
	for _, name := range []string{"migrate", "remount", "status", "up"} {
		root.AddCommand(&cobra.Command{
			Use:                name,
			Hidden:             true,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return fmt.Errorf("%s is not in this build (the image entrypoint's, bootstrap only): run it with moltctl on the host, or with the moltctl image (docker build --target moltctl)", cmd.Name())
			},
		})
	}
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "moltctl: %v\n", err)
		var ee *bootstrapcmd.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.Code)
		}
		os.Exit(1)
	}
}
