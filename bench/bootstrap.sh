#!/usr/bin/env bash
# Benchmark `moltctl bootstrap` from process start to the exec of CMD (`true`), as root:
#   (a) empty state directories            — beside plain `true`   (target: under 10 ms)
#   (b) N entries already owned by 1000    — beside `find DIR ! -user 1000` (target: ratio <= 1)
#   (c) N entries owned by root            — beside `chown -R 1000:1000 DIR` (target: ratio <= 1)
# Same run, same warm page cache; each figure is the median of RUNS runs.
# Usage: bench/bootstrap.sh [ENTRIES] [RUNS]   (defaults 100000, 5)
set -euo pipefail
N=${1:-100000}
RUNS=${2:-5}
[ "$(id -u)" = 0 ] || { echo "bench/bootstrap.sh: run as root" >&2; exit 1; }
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /var/tmp/moltctl-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/moltctl" ./cmd/moltctl
go build -o "$WORK/bootstrapmin" ./bench/bootstrapmin
BIN=$WORK/moltctl
export MOLTCTL_USER=1000:1000 MOLTCTL_HOME=$WORK/home
mkdir -p "$WORK/home"

now() { date +%s%N; }
# median of RUNS timings (ms) of: prep (untimed) then cmd (timed)
measure() {
	local prep=$1; shift
	local ts=()
	for _ in $(seq "$RUNS"); do
		eval "$prep"
		local t0; t0=$(now)
		"$@" >/dev/null 2>&1
		ts+=($(( ($(now) - t0) / 1000 )))
	done
	printf '%s\n' "${ts[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

# A tree of N entries: N/100 directories of 99 files each.
make_tree() {
	local d=$1 dirs=$(( N / 100 ))
	mkdir -p "$d"
	( cd "$d" && for i in $(seq "$dirs"); do mkdir "d$i"; (cd "d$i" && touch $(seq -f f%g 99)); done )
}

echo "moltctl bootstrap benchmark: N=$N entries, median of $RUNS runs, $(nproc) cores, $(uname -r), $(df -T "$WORK" | awk 'NR==2{print $2}')"

# (a)
A1=$WORK/a/state A2=$WORK/a/workspace
ta=$(measure "rm -rf $WORK/a" "$BIN" bootstrap --dirs "$A1:$A2" -- true)
ta2=$(measure ":" "$BIN" bootstrap --dirs "$A1:$A2" -- true)
tt=$(measure ":" true)
tm=$(MOLTCTL_DIRS="$A1:$A2" measure ":" "$WORK/bootstrapmin" -- true)
echo "(a) empty dirs, first start:  bootstrap $ta ms"
echo "(a) empty dirs, restart:      bootstrap $ta2 ms   bootstrap.Run alone (bench/bootstrapmin): $tm ms   plain true: $tt ms"

# (b)
B=$WORK/b
make_tree "$B"
chown -R 1000:1000 "$B"
tb=$(measure ":" "$BIN" bootstrap --dirs "$B" -- true)
tf=$(measure ":" find "$B" ! -user 1000)
echo "(b) $N owned entries:     bootstrap $tb ms   find ! -user: $tf ms   ratio $(ratio "$tb" "$tf")"

# (c)
C=$WORK/c
make_tree "$C"
tc=$(measure "chown -R 0:0 $C" "$BIN" bootstrap --dirs "$C" -- true)
tr=$(measure "chown -R 0:0 $C" chown -R 1000:1000 "$C")
echo "(c) $N root-owned entries: bootstrap $tc ms   chown -R:     $tr ms   ratio $(ratio "$tc" "$tr")"
