#!/bin/sh
# bench/copy.sh — moltctl's volume copy (volumes.Copy through the helper container)
# beside host `cp -a` (the physical baseline) and the busybox recipe
# `docker run --rm -v SRC:/from -v VOL:/to busybox cp -a /from/. /to/`, in one run on
# the same disk (cp -a too writes into a fresh volume's directory), on (a) 1 GiB in
# 64 MiB files and (b) 100k files of 4 KiB in nested
# dirs; then moltctl's delta pass after 1% of the files changed, against its full pass.
# Conditions: WARM page cache (every contestant starts right after the source was read
# in full; caches are never dropped — the machine is shared), `sync` before each timed
# run and not timed, wall time including container start for both docker contestants.
# Usage: [ROUNDS=3] bench/copy.sh [large,small]   (median of ROUNDS runs)   Needs: docker, go, root (reads root-owned files).
# Work dir: $COPYBENCH_DIR (default /var/tmp/moltctl-copybench: the same disk as
# /var/lib/docker here); the generated sources are kept there for the next run.
set -eu
cd "$(dirname "$0")/.."
sets=${1:-large,small}
dir=${COPYBENCH_DIR:-/var/tmp/moltctl-copybench}
mkdir -p "$dir" bench/results
CGO_ENABLED=0 go build -o bench/results/moltctl-static ./cmd/moltctl
img=moltctl-test/busybox:1
if ! docker image inspect $img >/dev/null 2>&1; then
	go test ./internal/volumes -run 'TestEngineCreate$' -count=1 >/dev/null # Busybox builds it
	docker image inspect $img >/dev/null 2>&1 || { echo "bench: no $img" >&2; exit 1; }
fi
echo "copy bench: $(nproc) cores, $(df -T "$dir" | awk 'NR==2 {print $2}') under $dir, docker $(docker version -f '{{.Server.Version}}'), warm cache"
go run ./bench/copybench -dir "$dir" -helper bench/results/moltctl-static -busybox $img -sets "$sets" -rounds "${ROUNDS:-1}" | tee bench/results/copy.txt
