// Command bootstrapmin is bench/bootstrap.sh's yardstick: bootstrap.Run alone,
// configured only by MOLTCTL_USER, MOLTCTL_DIRS (colon-separated),
// MOLTCTL_LEGACY and MOLTCTL_HOME, without the rest of moltctl linked in. The
// difference to `moltctl bootstrap` is the start-up cost (package initialisation)
// of moltctl's other dependencies.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/moltctl/moltctl/internal/bootstrap"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	o := bootstrap.Options{User: os.Getenv("MOLTCTL_USER"), Legacy: os.Getenv("MOLTCTL_LEGACY"), Home: os.Getenv("MOLTCTL_HOME"), Command: args}
	if v, ok := os.LookupEnv("MOLTCTL_DIRS"); ok {
		o.Dirs = []string{}
		for _, d := range strings.Split(v, ":") {
			if d != "" {
				o.Dirs = append(o.Dirs, d)
			}
		}
	}
	err := bootstrap.Run(context.Background(), o)
	fmt.Fprintf(os.Stderr, "bootstrapmin: %v\n", err)
	os.Exit(1)
}
