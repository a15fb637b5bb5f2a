#!/usr/bin/env bash
# Benchmark `moltctl bootstrap` from process start to the exec of CMD (`true`), as root:
#   (a) empty state directories            — beside plain `true`   (target: under 10 ms)
#   (b) N entries already owned by 1000    — beside `find DIR ! -user 1000` (target: ratio <= 1)
#   (c) N entries owned by root            — beside `chown -R 1000:1000 DIR` (target: ratio <= 1)
# Same run, same warm page cache. Runs of bootstrap and of its baseline alternate (A B A B …)
# so that load from other processes hits both alike; each figure is the median of RUNS runs
# and the ratio is the median of the per-pair ratios.
# Usage: bench/bootstrap.sh [ENTRIES] [RUNS]   (defaults 100000, 7)
set -euo pipefail
N=${1:-100000}
RUNS=${2:-7}
[ "$(id -u)" = 0 ] || { echo "bench/bootstrap.sh: run as root" >&2; exit 1; }
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /var/tmp/moltctl-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/moltctl" ./cmd/moltctl
go build -o "$WORK/bootstrapmin" ./bench/bootstrapmin
BIN=$WORK/moltctl
export MOLTCTL_USER=1000:1000 MOLTCTL_HOME=$WORK/home
mkdir -p "$WORK/home"

# usecs PREP CMD...: run PREP (untimed), then time CMD; prints microseconds.
usecs() {
	local prep=$1; shift
	eval "$prep"
	local t0; t0=$(date +%s%N)
	"$@" >/dev/null 2>&1
	echo $(( ($(date +%s%N) - t0) / 1000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.2f", m}'; }

# pair NAME PREP_A "CMD_A" PREP_B "CMD_B": alternate A and B RUNS times; print
# "NAME: A ms  B ms  ratio" with medians.
pair() {
	local name=$1 prepa=$2 cmda=$3 prepb=$4 cmdb=$5 as=() bs=() rs=()
	for _ in $(seq "$RUNS"); do
		local a b
		a=$(usecs "$prepa" $cmda)
		b=$(usecs "$prepb" $cmdb)
		as+=("$a") bs+=("$b") rs+=("$(awk -v a="$a" -v b="$b" 'BEGIN {print a/b}')")
	done
	printf '%s  %s ms  |  %s ms  |  ratio %s\n' "$name" \
		"$(printf '%s\n' "${as[@]}" | awk '{print $1/1000}' | median)" \
		"$(printf '%s\n' "${bs[@]}" | awk '{print $1/1000}' | median)" \
		"$(printf '%s\n' "${rs[@]}" | median)"
}

# A tree of N entries: N/100 directories of 99 files each.
make_tree() {
	local d=$1 dirs=$(( N / 100 ))
	mkdir -p "$d"
	( cd "$d" && for i in $(seq "$dirs"); do mkdir "d$i"; (cd "d$i" && touch $(seq -f f%g 99)); done )
}

echo "moltctl bootstrap benchmark: N=$N entries, $RUNS alternating runs, $(nproc) cores, $(uname -r), $(df -T "$WORK" | awk 'NR==2{print $2}'), load $(cut -d' ' -f1 /proc/loadavg)"
echo "case                             bootstrap  |  baseline  |  bootstrap/baseline"

A=$WORK/a
pair "(a) empty dirs, first start   " "rm -rf $A" "$BIN bootstrap --dirs $A/state:$A/workspace -- true" ":" "true"
pair "(a) empty dirs, restart       " ":" "$BIN bootstrap --dirs $A/state:$A/workspace -- true" ":" "true"
export MOLTCTL_DIRS=$A/state:$A/workspace
pair "(a) bootstrap.Run alone       " ":" "$WORK/bootstrapmin -- true" ":" "true"
unset MOLTCTL_DIRS

B=$WORK/b
make_tree "$B"
chown -R 1000:1000 "$B"
pair "(b) $N owned, vs find   " ":" "$BIN bootstrap --dirs $B -- true" ":" "find $B ! -user 1000"

C=$WORK/c
make_tree "$C"
pair "(c) $N root-owned, vs chown -R" "chown -R 0:0 $C" "$BIN bootstrap --dirs $C -- true" "chown -R 0:0 $C" "chown -R 1000:1000 $C"
