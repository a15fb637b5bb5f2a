#!/bin/sh
# bench/rebase.sh — moltctl remount --rebase (the service's image changed) beside a plain
# moltctl remount (image unchanged) and compose's own recreate, in the same run, for writable
# layers of the given sizes in MiB (default: 1 100; add 1024 for the 1 GiB case).
# Each case starts from a fresh container of the image tag (rebase needs a container created
# from the image itself), fills /fill with N MiB from /dev/urandom and adds a few small files.
# The image is ~2 MiB (busybox) plus a 200 MiB file, so a cost that followed the image's size
# would show at 1 MiB. Prints end-to-end ms of each, and rebase/remount.
# Usage: bench/rebase.sh [SIZE_MIB...]     Needs: docker, docker compose v2+, go.
set -eu
cd "$(dirname "$0")/.."
sizes=${*:-1 100}
. bench/lib.sh
bench_setup rbbench
base=$busybox
img=moltctl-bench/$p
mkdir "$work/img"
dd if=/dev/urandom of="$work/img/big" bs=1M count=200 2>/dev/null
printf 'FROM %s\nCOPY big /big\nLABEL v=1\n' $base | docker build -q -t $img:v1 -f - "$work/img" >/dev/null
printf 'FROM %s\nLABEL v=2\n' $img:v1 | docker build -q -t $img:v2 - >/dev/null
cat >"$work/compose.yaml" <<YAML
services:
  web:
    image: $img:cur
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    environment: {GEN: "0"}
YAML
bench_cleanup_extra() { docker rmi $img:cur $img:v1 $img:v2 >/dev/null 2>&1 || true; }
gen=0
bump() { gen=$((gen + 1)); sed -i "s/GEN: \"[0-9]*\"/GEN: \"$gen\"/" "$work/compose.yaml"; }
fresh() {
	docker tag $img:v1 $img:cur
	dc up -d --force-recreate web >/dev/null 2>&1
	dc exec -T web sh -c "dd if=/dev/urandom of=/fill bs=1M count=$1 2>/dev/null; mkdir -p /opt/t; echo x > /opt/t/a; rm /bin/vi; chown 1000 /opt/t/a; sync"
}
printf '%-8s %10s %10s %10s %10s\n' size_mib compose_ms remount_ms rebase_ms rebase/rem
for s in $sizes; do
	fresh "$s"
	bump
	a=$(now); dc up -d --force-recreate web >/dev/null 2>&1; b=$(now)
	c_ms=$(((b - a) / 1000000))
	fresh "$s"
	bump
	a=$(now); "$work/moltctl" -p $p -f "$work/compose.yaml" remount web --wait-timeout 1ms >/dev/null; b=$(now)
	r_ms=$(((b - a) / 1000000))
	fresh "$s"
	docker tag $img:v2 $img:cur
	a=$(now); "$work/moltctl" -p $p -f "$work/compose.yaml" remount web --rebase --wait-timeout 1ms >/dev/null; b=$(now)
	rb_ms=$(((b - a) / 1000000))
	awk -v s="$s" -v c="$c_ms" -v r="$r_ms" -v rb="$rb_ms" 'BEGIN { printf "%-8s %10d %10d %10d %10.2f\n", s, c, r, rb, rb/r }'
done
