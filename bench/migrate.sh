#!/bin/sh
# bench/migrate.sh — the downtime of a real `moltctl migrate` (migrate.Run) of a running
# compose service (busybox, user 1000:1000) whose bind-mounted directory holds the data
# set, with 1% of the files changed after the first pass (while the service still runs),
# beside, in one run on the same disk: moltctl's own full pass (target: downtime under 10%
# of it), a host `cp -a` of the tree, and the manual recipe (`docker compose stop`, busybox
# `cp -a` into a volume, compose file pointed at it, `docker compose up -d`).
# Downtime is from the stop to the service's container started on its volume (migrate's
# report, less the bench's own 1% rewrite), broken down by step from the progress events.
# Contestants alternate order between rounds; medians; the load average is printed.
#
# Usage: [ROUNDS=3] bench/migrate.sh [SET...]   SET: small (default: 100k files of 4 KiB in
# nested dirs), large (1 GiB in 64 MiB files), tiny (1,000 files: a run in a minute).
# Needs: root, docker, docker compose, go, a static /bin/busybox. Writes
# bench/results/migrate.txt. Work dir: $COPYBENCH_DIR (default /var/tmp/moltctl-copybench,
# shared with bench/copy.sh: the generated data sets are kept there).
set -eu
cd "$(dirname "$0")/.."
dir=${COPYBENCH_DIR:-/var/tmp/moltctl-copybench}
mkdir -p "$dir" bench/results
bin=$(mktemp -d "$dir/bin-XXXXXX")
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 go build -o "$bin/moltctl" ./cmd/moltctl
go build -o "$bin/migratebench" ./bench/migratebench
out=bench/results/migrate.txt
{
	echo "# bench/migrate.sh ${*:-small}, ROUNDS=${ROUNDS:-3}, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
	echo "# $(nproc) cores, $(df -T "$dir" | awk 'NR==2 {print $2}') under $dir (docker: $(df -T /var/lib/docker | awk 'NR==2 {print $1}'), data: $(df -T "$dir" | awk 'NR==2 {print $1}')), docker $(docker version -f '{{.Server.Version}}'), compose $(docker compose version --short), warm page cache, load average $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"
for set in ${*:-small}; do
	"$bin/migratebench" -dir "$dir" -helper "$bin/moltctl" -set "$set" -rounds "${ROUNDS:-3}" | tee -a "$out"
done
