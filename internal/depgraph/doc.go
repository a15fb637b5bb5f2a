// Package depgraph has no code: its tests pin the import graph between the
// module's own packages (which package may import which) and the external
// modules the entrypoint build may depend on, so the layout keeps showing the
// architecture. A change that adds an edge fails the test until the edge is
// written down in depgraph_test.go, where a reviewer sees it. flags_test.go
// keeps command-line flags out of the libraries' error messages (cmd/moltctl
// adds them).
package depgraph
