#!/bin/sh
# bench/up.sh — `moltctl up` beside `docker compose up -d`, in the same run, on a
# five-service project in which one service's config changed and that service has a
# writable layer (compose recreates it and discards the layer; moltctl up remounts it).
# Rounds alternate which command goes first. --wait-timeout 1ms: the remount's
# keep-running check is left out, as compose has none.
# Usage: bench/up.sh [ROUNDS]     Needs: docker, docker compose v2+, go.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-3}
. bench/lib.sh
bench_setup upbench
img=$busybox
{
	echo "services:"
	for s in a b c d e; do
		cat <<YAML
  $s:
    image: $img
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    environment: {GEN: "0"}
YAML
	done
} >"$work/compose.yaml"
gen=0
# bump changes the config of service a only.
bump() { gen=$((gen + 1)); sed -i "0,/GEN: \"[0-9]*\"/s//GEN: \"$gen\"/" "$work/compose.yaml"; }
fill() { dc exec -T a sh -c "echo $gen > /layer.txt"; }
dc up -d >/dev/null 2>&1
printf '%-6s %12s %12s %8s %s\n' round compose_ms moltctl_ms ratio 'layer kept by compose/moltctl'
i=0
while [ $i -lt "$rounds" ]; do
	i=$((i + 1))
	for who in $( [ $((i % 2)) -eq 1 ] && echo "compose moltctl" || echo "moltctl compose"); do
		fill
		bump
		a=$(now)
		if [ "$who" = compose ]; then
			dc up -d >/dev/null 2>&1
			c_ms=$((($(now) - a) / 1000000))
			c_kept=$(dc exec -T a cat /layer.txt 2>/dev/null || echo lost)
		else
			"$work/moltctl" -p $p -f "$work/compose.yaml" up --json --wait-timeout 1ms >/dev/null
			m_ms=$((($(now) - a) / 1000000))
			m_kept=$(dc exec -T a cat /layer.txt 2>/dev/null || echo lost)
		fi
	done
	printf '%-6s %12s %12s %8s %s\n' $i $c_ms $m_ms "$(echo "scale=2; $m_ms / $c_ms" | bc)" "$c_kept/$m_kept"
done
# Nothing changed: both only find everything current.
a=$(now); dc up -d >/dev/null 2>&1; c_ms=$((($(now) - a) / 1000000))
a=$(now); "$work/moltctl" -p $p -f "$work/compose.yaml" up --json >/dev/null; m_ms=$((($(now) - a) / 1000000))
printf '%-6s %12s %12s %8s\n' noop $c_ms $m_ms "$(echo "scale=2; $m_ms / $c_ms" | bc)"
