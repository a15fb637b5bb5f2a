// Command moltctl makes Docker Compose deployments of stateful apps safe to migrate
// and to reconfigure: migrate, remount, bootstrap, status.
package main

import "os"

func main() { os.Exit(execute(os.Args[1:])) }
