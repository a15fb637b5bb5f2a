// Command moltctl makes Docker Compose deployments of stateful apps safe to migrate
// and to reconfigure: migrate, remount, bootstrap, status. Installed as
// docker-moltctl in a docker CLI plugin directory it is also `docker moltctl`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(runMain(os.Args)) }

// runMain is main without the exit: argv as the process got it (argv[0] tells the
// docker CLI plugin from the standalone command), the process's stdout and
// stderr, cancelled by SIGINT and SIGTERM.
func runMain(argv []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if isPlugin(argv[0]) {
		return executePlugin(ctx, argv[1:], os.Stdout, os.Stderr)
	}
	return execute(ctx, argv[1:], os.Stdout, os.Stderr)
}
