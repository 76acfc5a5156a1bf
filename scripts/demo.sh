#!/bin/sh
# A tour of sanlock-msg on one machine, in about half a minute: builds the
# binary, makes a lockspace on a loop device (a sparse file when not root)
# exactly as `sanlock direct init` would, starts two sanlock-msg daemons
# (host 1 and host 2) that exchange acked messages through it, lets a real
# sanlock daemon join as host 3 and exchange events with them, and finally
# fences host 2 with WD_RESET through a fake watchdog. Everything it starts
# and makes is removed on exit.
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
pids=""
cleanup() {
	for r in r1 r2; do
		[ -S "$work/$r/sanlock-msg.sock" ] && "$work/sanlock-msg" shutdown --run-dir "$work/$r" --force --wait >/dev/null 2>&1
	done
	if [ -n "$daemon" ]; then
		SANLOCK_RUN_DIR="$work/run" sanlock client shutdown -f 1 -w 1 >/dev/null 2>&1 || true
		sleep 1
		kill "$daemon" 2>/dev/null || true
	fi
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
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

run "$slm" read -s "DEMO:1:$dev:0"

step "two sanlock-msg daemons: host 1 (no watchdog) and host 2 (a fake watchdog that logs to a file)"
"$slm" daemon --run-dir "$work/r1" --state-dir "$work/s1" --watchdog none -e demo-host1 >"$work/d1.log" 2>&1 &
pids="$pids $!"
"$slm" daemon --run-dir "$work/r2" --state-dir "$work/s2" --watchdog "fake:$work/watchdog2" -e demo-host2 >"$work/d2.log" 2>&1 &
d2=$!
pids="$pids $d2"
for r in r1 r2; do
	i=0
	until [ -S "$work/$r/sanlock-msg.sock" ]; do
		i=$((i + 1)); [ $i -lt 50 ] || { cat "$work/d1.log" "$work/d2.log"; exit 1; }
		sleep 0.1
	done
done
run "$slm" add-lockspace --run-dir "$work/r1" -o 1 -s "DEMO:1:$dev:0"
run "$slm" add-lockspace --run-dir "$work/r2" -o 1 -s "DEMO:2:$dev:0"

step "$slm listen --run-dir $work/r2 -s DEMO &   (host 2 prints what arrives)"
"$slm" listen --run-dir "$work/r2" -s DEMO >"$work/listen2" 2>&1 &
pids="$pids $!"
sleep 3 # let each host see the other renew once (UNKNOWN -> LIVE)
run "$slm" send --run-dir "$work/r1" -s DEMO -i 2 -c user0 --data 42 --wait
run "$slm" send --run-dir "$work/r1" -s DEMO -i 2 -c user1,user2 --wait
run "$slm" send --run-dir "$work/r1" -s DEMO -i 2 -c 0x1000000 --seq 100 --wait
sleep 0.3
step "what host 2's listener printed (each message once, in order)"
cat "$work/listen2"
run "$slm" read -s "DEMO:2:$dev:0"
step "(host 2's sector carries the ack table: source host, its generation, seq, status)"

if ! command -v sanlock >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
	echo
	echo "(install sanlock and run as root to see a real sanlock daemon join and exchange events)"
else
	step "a real sanlock daemon (unprivileged, no watchdog) joins as host 3"
	mkdir "$work/run"
	SANLOCK_RUN_DIR="$work/run" SANLOCK_PRIVILEGED=0 sanlock daemon -D -w 0 -o 1 -e demo-host3 >"$work/sanlock.log" 2>&1 &
	daemon=$!
	i=0
	until SANLOCK_RUN_DIR="$work/run" sanlock client status >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 50 ] || { cat "$work/sanlock.log"; exit 1; }
		sleep 0.2
	done
	run env SANLOCK_RUN_DIR="$work/run" sanlock client add_lockspace -o 1 -s "DEMO:3:$dev:0"
	sleep 3
	run "$slm" host-status --run-dir "$work/r1" -s DEMO
	run env SANLOCK_RUN_DIR="$work/run" sanlock client set_event -s DEMO -i 2 -e 0x40 -d 77
	sleep 7 # sanlock writes it at its next renewal and keeps it for 6 s
	step "host 2 got sanlock's event once, although sanlock rewrote it at every renewal"
	cat "$work/listen2"
	run "$slm" send --run-dir "$work/r1" -s DEMO -i 3 -c 0x20 --data 9 --wait
	step "(sanlock cannot ack: the send ends once host 3 renewed twice with it on disk)"
	run sanlock direct dump "$dev:0"
fi

step "fencing: host 1 sends WD_RESET to host 2"
run "$slm" send --run-dir "$work/r1" -s DEMO -i 2 -c reset --wait
sleep 1.5
step "host 2's (fake) watchdog: keepalives stop, the timeout drops to 1 s, it fires"
tail -4 "$work/watchdog2"
wait "$d2" 2>/dev/null || echo "host 2's daemon exited with status $? (137: as if the machine had reset)"
run "$slm" host-status --run-dir "$work/r1" -s DEMO
step "(host 1 will see host 2 DEAD 68 s after its last renewal; 'sanlock-msg reset' waits for that)"
