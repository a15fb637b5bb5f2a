#!/bin/sh
# bench/migrate.sh — the downtime of a real `moltctl migrate` (migrate.Run) of a running
# compose service whose bind-mounted directory holds the data set, with 1% of the files
# changed after the first pass (while the service still runs), beside moltctl's own full
# pass (target: downtime under 10% of it) and the manual recipe (`docker compose stop`,
# busybox `cp -a` into a volume, `docker compose start`), in one run on the same disk.
# Downtime is from the stop to the service's container started on its volume (migrate's
# report), and is broken down by step from the progress events.
# Usage: [ROUNDS=3] bench/migrate.sh [small|large|tiny]   Needs: docker, compose, go, root.
# Work dir: $COPYBENCH_DIR (default /var/tmp/moltctl-copybench, shared with bench/copy.sh:
# the generated data sets are kept there).
set -eu
cd "$(dirname "$0")/.."
set=${1:-small}
dir=${COPYBENCH_DIR:-/var/tmp/moltctl-copybench}
mkdir -p "$dir" bench/results
CGO_ENABLED=0 go build -o bench/results/moltctl-static ./cmd/moltctl
img=moltctl-test/busybox:1
if ! docker image inspect $img >/dev/null 2>&1; then
	go test ./internal/volumes -run 'TestEngineCreate$' -count=1 >/dev/null # Busybox builds it
	docker image inspect $img >/dev/null 2>&1 || { echo "bench: no $img" >&2; exit 1; }
fi
echo "migrate bench: $(nproc) cores, $(df -T "$dir" | awk 'NR==2 {print $2}') under $dir, docker $(docker version -f '{{.Server.Version}}'), compose $(docker compose version --short), warm cache"
go run ./bench/migratebench -dir "$dir" -helper bench/results/moltctl-static -busybox $img -set "$set" -rounds "${ROUNDS:-3}" | tee "bench/results/migrate-$set.txt"
