#!/usr/bin/env bash
# Benchmark `moltctl bootstrap` from process start to the exec of CMD (`true`), as root:
#   (s) start-up, no state directories      — moltctl, its entrypoint build, bootstrap.Run alone,
#       Debian's gosu and util-linux's setpriv dropping to 1000:1000, and plain `true`, in rotation
#   (a) empty state directories            — beside plain `true`   (target: under 10 ms)
#   (b) N entries already owned by 1000    — beside `find DIR ! -user 1000` (target: ratio <= 1)
#   (c) N entries owned by root            — beside `chown -R 1000:1000 DIR` (target: ratio <= 1)
# (b) and (c) run the entrypoint build, as the gateway image does.
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
# Built as the Dockerfile builds them.
export CGO_ENABLED=0
go build -trimpath -ldflags "-s -w" -o "$WORK/moltctl" ./cmd/moltctl
go build -trimpath -ldflags "-s -w" -o "$WORK/entrypoint" ./cmd/moltctl/entrypoint
go build -trimpath -ldflags "-s -w" -o "$WORK/bootstrapmin" ./bench/bootstrapmin
BIN=$WORK/moltctl
EP=$WORK/entrypoint
GOSU=$(command -v gosu || true)
SETPRIV=$(command -v setpriv || true)
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
echo "binaries (stripped): moltctl $(stat -c %s "$BIN") B, entrypoint build $(stat -c %s "$EP") B${GOSU:+, gosu $(stat -c %s "$GOSU") B}"

# rotate NAME=CMD...: run every CMD once per round, RUNS*3 rounds (start-up is
# short and noisy), and print each one's median and its ratio to the last.
rotate() {
	local names=() cmds=() i r
	for nc in "$@"; do names+=("${nc%%=*}"); cmds+=("${nc#*=}"); done
	declare -A t
	for r in $(seq $((RUNS * 3))); do
		for i in "${!cmds[@]}"; do t[$i]+="$(usecs : ${cmds[$i]}) "; done
	done
	local base; base=$(printf '%s\n' ${t[$(( ${#cmds[@]} - 1 ))]} | median)
	for i in "${!cmds[@]}"; do
		local m; m=$(printf '%s\n' ${t[$i]} | median)
		printf '(s) %-34s %6.2f ms   x%.1f of %s\n' "${names[$i]}" "$(awk -v m="$m" 'BEGIN {print m/1000}')" "$(awk -v m="$m" -v b="$base" 'BEGIN {print m/b}')" "${names[-1]}"
	done
}
mkdir -p "$WORK/home"
export MOLTCTL_LEGACY=off
rotate "moltctl bootstrap=$BIN bootstrap --dirs= -- true" \
	"entrypoint build bootstrap=$EP bootstrap --dirs= -- true" \
	"bootstrap.Run alone (bootstrapmin)=env MOLTCTL_DIRS= $WORK/bootstrapmin -- true" \
	${GOSU:+"gosu 1000:1000=$GOSU 1000:1000 true"} \
	${SETPRIV:+"setpriv --reuid 1000 --regid 1000=$SETPRIV --reuid 1000 --regid 1000 --clear-groups true"} \
	"true=true"
unset MOLTCTL_LEGACY
echo
echo "case                             bootstrap  |  baseline  |  bootstrap/baseline"

A=$WORK/a
pair "(a) empty dirs, first start   " "rm -rf $A" "$BIN bootstrap --dirs $A/state:$A/workspace -- true" ":" "true"
pair "(a) empty dirs, restart       " ":" "$BIN bootstrap --dirs $A/state:$A/workspace -- true" ":" "true"
pair "(a) restart, entrypoint build " ":" "$EP bootstrap --dirs $A/state:$A/workspace -- true" ":" "true"
export MOLTCTL_DIRS=$A/state:$A/workspace
pair "(a) bootstrap.Run alone       " ":" "$WORK/bootstrapmin -- true" ":" "true"
unset MOLTCTL_DIRS

B=$WORK/b
make_tree "$B"
chown -R 1000:1000 "$B"
pair "(b) $N owned, vs find   " ":" "$EP bootstrap --dirs $B -- true" ":" "find $B ! -user 1000"

C=$WORK/c
make_tree "$C"
pair "(c) $N root-owned, vs chown -R" "chown -R 0:0 $C" "$EP bootstrap --dirs $C -- true" "chown -R 0:0 $C" "chown -R 1000:1000 $C"
