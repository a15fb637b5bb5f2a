#!/bin/sh
# bench/remount.sh — moltctl remount beside `docker compose up -d --force-recreate`, in
# the same run, for writable layers of the given sizes in MiB (default: 1 100; add 1024
# for the 1 GiB case, which is kept out of the normal test run).
# Prints end-to-end time, downtime (the container's die → start events) and commit time,
# and the ratios remount/compose and remount/(compose + commit).
# Usage: bench/remount.sh [SIZE_MIB...]     Needs: docker, docker compose v2+, go.
set -eu
cd "$(dirname "$0")/.."
sizes=${*:-1 100}
. bench/lib.sh
bench_setup rmbench
img=$busybox
cat >"$work/compose.yaml" <<YAML
services:
  web:
    image: $img
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    environment: {GEN: "0"}
YAML
gen=0
bump() { gen=$((gen + 1)); sed -i "s/GEN: \"[0-9]*\"/GEN: \"$gen\"/" "$work/compose.yaml"; }
fill() { dc exec -T web sh -c "rm -f /fill; dd if=/dev/urandom of=/fill bs=1M count=$1 2>/dev/null; sync"; }
# downtime SINCE UNTIL: ms from the first die to the next start event of the project.
downtime() {
	docker events --since "$1" --until "$2" --filter label=com.docker.compose.project=$p \
		--filter event=die --filter event=start --format '{{.TimeNano}} {{.Action}}' |
		awk '$2=="die" && !d {d=$1} $2=="start" && d {print int(($1-d)/1e6); exit}'
}
dc up -d >/dev/null 2>&1
printf '%-8s %10s %10s %10s %10s %10s %10s %8s %10s\n' size_mib compose_ms c_down_ms remount_ms r_down_ms commit_ms ratio_e2e ratio_dn 'r/(c+cm)'
for s in $sizes; do
	# compose's own recreate (discards the layer)
	fill "$s"
	bump
	t0=$(date +%s.%N); a=$(now)
	dc up -d --force-recreate web >/dev/null 2>&1
	b=$(now); t1=$(date +%s.%N)
	c_ms=$(((b - a) / 1000000)); c_down=$(downtime "$t0" "$t1")
	# moltctl remount (keeps the layer)
	fill "$s"
	bump
	t0=$(date +%s.%N); a=$(now)
	out=$("$work/moltctl" -p $p -f "$work/compose.yaml" remount web --json --wait-timeout 1ms)
	b=$(now); t1=$(date +%s.%N)
	r_ms=$(((b - a) / 1000000)); r_down=$(downtime "$t0" "$t1")
	commit_ms=$(echo "$out" | sed -n 's/.*"commit_ns": \([0-9]*\).*/\1/p' | awk '{print int($1/1e6)}')
	awk -v s="$s" -v c="$c_ms" -v cd="$c_down" -v r="$r_ms" -v rd="$r_down" -v cm="$commit_ms" 'BEGIN {
		printf "%-8s %10d %10d %10d %10d %10d %10.2f %8.2f %10.2f\n", s, c, cd, r, rd, cm, r/c, rd/(cd>0?cd:1), r/(c+cm) }'
done
