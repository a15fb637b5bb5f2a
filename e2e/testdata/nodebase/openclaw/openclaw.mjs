#!/usr/bin/env node
# Stand-in for the openclaw app (npm package openclaw, entry openclaw.mjs), run by the
# stand-in node with sh. Like the real app it takes its state directory from
# OPENCLAW_STATE_DIR, else ~/.openclaw when it exists, else the first legacy directory
# that exists (read in place, never renamed), else ~/.openclaw. The gateway writes to
# its state directory and to the workspace ~/clawd, serves /healthz on 127.0.0.1:18789
# and stays up; it exits 1 like the real app's EACCES crash when it cannot write.
# `status`, `--version` and `--help` are the CLI.
set -u
here=$(dirname "$(readlink -f "$0")")
version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$here/package.json")
port=18789

state_dir() {
	if [ -n "${OPENCLAW_STATE_DIR:-}" ]; then
		echo "$OPENCLAW_STATE_DIR"
		return
	fi
	for d in .openclaw .clawdbot .moltbot .moldbot; do
		if [ -e "$HOME/$d" ]; then
			echo "$HOME/$d"
			return
		fi
	done
	echo "$HOME/.openclaw"
}

config_file() {
	for f in openclaw.json clawdbot.json moltbot.json moldbot.json; do
		if [ -f "$1/$f" ]; then
			echo "$1/$f"
			return
		fi
	done
	echo none
}

eacces() {
	echo "Error: EACCES: permission denied, open '$1'" >&2
	exit 1
}

gateway() {
	dir=$(state_dir)
	ws=$HOME/clawd
	mkdir -p "$dir/logs" "$dir/cron" 2>/dev/null || eacces "$dir/logs"
	echo "gateway started pid=$$ uid=$(id -u) gid=$(id -g)" >>"$dir/logs/gateway.log" 2>/dev/null || eacces "$dir/logs/gateway.log"
	echo "[]" >"$dir/cron/runs.json" 2>/dev/null || eacces "$dir/cron/runs.json"
	echo "heartbeat $(date)" >"$ws/HEARTBEAT.md" 2>/dev/null || eacces "$ws/HEARTBEAT.md"
	www=$(mktemp -d) || exit 1
	echo '{"ok":true}' >"$www/healthz"
	httpd -f -p "127.0.0.1:$port" -h "$www" &
	httpd=$!
	trap 'kill "$httpd" 2>/dev/null; exit 0' TERM INT
	echo "openclaw $version (stand-in) gateway listening on 127.0.0.1:$port, state $dir, config $(config_file "$dir")"
	while kill -0 "$httpd" 2>/dev/null; do
		sleep 1 &
		wait $!
	done
	echo "gateway: http server exited" >&2
	exit 1
}

status() {
	dir=$(state_dir)
	echo "openclaw $version (stand-in)"
	echo "state: $dir"
	echo "config: $(config_file "$dir")"
	echo "workspace: $HOME/clawd"
	echo "user: uid=$(id -u) gid=$(id -g) home=$HOME"
	if wget -q -O /dev/null "http://127.0.0.1:$port/healthz"; then
		echo "gateway: running"
	else
		echo "gateway: not reachable"
	fi
}

case "${1-}" in
--version | -V) echo "$version" ;;
--help | -h | help) echo "Usage: openclaw [command] (stand-in: gateway, status, --version)" ;;
gateway) gateway ;;
status) status ;;
*)
	echo "openclaw stand-in: unknown command '${1-}' (gateway, status, --version)" >&2
	exit 1
	;;
esac
