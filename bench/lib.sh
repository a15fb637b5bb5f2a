# bench/lib.sh — the prelude the remount, up and rebase benches share; sourced, not run.
# bench_setup PREFIX: a work dir ($work, removed on exit with the project, its snapshots
# and whatever bench_cleanup_extra removes), a project name ($p), a private state dir,
# moltctl built at $work/moltctl, and the busybox test image ($busybox). Defines dc (docker
# compose on $work/compose.yaml) and now (ns).
bench_setup() {
	work=$(mktemp -d)
	p=$1$$
	export MOLTCTL_STATE_DIR="$work/state"
	go build -o "$work/moltctl" ./cmd/moltctl
	busybox=moltctl-test/busybox:1
	if ! docker image inspect $busybox >/dev/null 2>&1; then
		go test ./internal/remount -run TestSnapshotTag -count=1 >/dev/null # any test; Busybox builds it
		docker image inspect $busybox >/dev/null 2>&1 || { echo "bench: no $busybox (run the remount tests once)" >&2; exit 1; }
	fi
	trap bench_cleanup EXIT
}
dc() { docker compose -p $p -f "$work/compose.yaml" "$@"; }
bench_cleanup_extra() { :; }
bench_cleanup() {
	dc down -v -t 0 >/dev/null 2>&1 || true
	docker images -q --filter label=io.moltctl.snapshot.project=$p | xargs -r docker rmi -f >/dev/null 2>&1 || true
	bench_cleanup_extra
	rm -rf "$work"
}
now() { date +%s%N; }
