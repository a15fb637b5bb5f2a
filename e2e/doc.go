// Package e2e builds the product's images from the repository's Dockerfile and runs
// them with the repository's docker-compose.yml on the real Docker Engine and the real
// docker compose CLI: the moltctl image, and the moltbot gateway started through
// `moltctl bootstrap` on fresh volumes, on a root-owned volume and with a bind-mounted
// legacy state directory.
//
// No registry is reachable in CI, so the Dockerfile's base images are replaced through
// its build args by local stand-ins built from testdata: a Go toolchain image imported
// from the host's GOROOT (the Go stage then builds offline from a vendor/ directory),
// and a node base made of a static busybox, a node user and node/npm stand-ins whose
// `npm install -g openclaw@VERSION` installs a stand-in app. The package holds only
// tests; with CI=true a missing engine or compose CLI fails them.
package e2e
