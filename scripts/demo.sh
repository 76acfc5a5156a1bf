#!/bin/sh
# A tour of sanlock-msg on one machine: builds the binary, makes a lockspace
# image on a loop device (a sparse file when not root), initialises it
# exactly as `sanlock direct init` would, and reads it back. It grows as
# features land. Everything it makes is removed on exit.
set -eu
cd "$(dirname "$0")/.."

case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH="$PATH:/usr/local/go/bin" ;;
esac
export PATH

# /var/tmp rather than /tmp: lockspace I/O uses O_DIRECT, which some tmpfs
# versions refuse.
work=$(mktemp -d /var/tmp/sanlock-msg-demo.XXXXXX)
loop=""
daemon=""
cleanup() {
	if [ -n "$daemon" ]; then
		SANLOCK_RUN_DIR="$work/run" sanlock client shutdown -f 1 -w 1 >/dev/null 2>&1 || true
		sleep 1
		kill "$daemon" 2>/dev/null || true
	fi
	[ -z "$loop" ] || losetup -d "$loop"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ -t 1 ]; then
	step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
else
	step() { printf '\n$ %s\n' "$*"; }
fi
run() { step "$*"; "$@"; }

echo "building sanlock-msg"
go build -o "$work/sanlock-msg" ./cmd/sanlock-msg
slm="$work/sanlock-msg"

truncate -s 8M "$work/disk.img"
dev="$work/disk.img"
if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ]; then
	loop=$(losetup -f --show --sector-size 512 "$work/disk.img")
	dev="$loop"
	echo "shared disk: $dev (a loop device over $work/disk.img)"
else
	echo "shared disk: $dev (not root: a plain file instead of a loop device)"
fi

run "$slm" init -o 1 -s "DEMO:0:$dev:0"
run "$slm" dump -s "DEMO:0:$dev:0"
step "(no host has joined yet, so dump lists no host; --all lists every sector)"
run "$slm" read -s "DEMO:1:$dev:0"
step "$slm dump --json --all -s DEMO:0:$dev:0 | head -30"
"$slm" dump --json --all -s "DEMO:0:$dev:0" | head -30

if ! command -v sanlock >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
	echo
	echo "(install sanlock and run as root to see a real sanlock daemon join and send an event)"
	exit 0
fi

step "sanlock reads our area like its own"
sanlock direct read_leader -s "DEMO:1:$dev:0" | head -12

step "a real sanlock daemon (unprivileged, no watchdog) joins as host 1 and sends event 5 to host 2"
mkdir "$work/run"
SANLOCK_RUN_DIR="$work/run" SANLOCK_PRIVILEGED=0 sanlock daemon -D -w 0 -o 1 -e demo-host1 >"$work/sanlock.log" 2>&1 &
daemon=$!
i=0
until SANLOCK_RUN_DIR="$work/run" sanlock client status >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 50 ] || { cat "$work/sanlock.log"; exit 1; }
	sleep 0.2
done
run env SANLOCK_RUN_DIR="$work/run" sanlock client add_lockspace -o 1 -s "DEMO:1:$dev:0"
run env SANLOCK_RUN_DIR="$work/run" sanlock client set_event -s DEMO -i 2 -e 5 -d 77
sleep 3

run "$slm" dump -s "DEMO:0:$dev:0"
run "$slm" read -s "DEMO:1:$dev:0"
run sanlock direct dump "$dev:0"
