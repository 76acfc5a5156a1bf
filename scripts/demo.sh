#!/bin/sh
# A tour of sanlock-msg on one machine, in about half a minute (io_timeout
# 1): makes a lockspace on a loop device (a plain file when not root)
# exactly as `sanlock direct init` would, starts two sanlock-msg daemons
# (host 1 and host 2) that exchange acked messages through it while host 2
# listens, shows their counters as Prometheus metrics, lets a real sanlock
# daemon join as host 3 and trade events with them, and fences host 2 with
# WD_RESET through a fake watchdog.
#
# None of it needs sanlock except the sanlock part: as root, sanlock is
# installed with apt-get when missing; otherwise that part is skipped and
# the demo says why. Fencing needs root (only root may send WD_RESET).
# Everything it starts and makes is removed on exit.
#
# Usage: scripts/demo.sh [--no-sanlock]
#   --no-sanlock   skip the real-sanlock part (as on a machine without it)
# Environment: SANLOCK_MSG_BIN=PATH uses that binary instead of building
# one with go (then the repository is not needed).
set -eu
cd "$(dirname "$0")/.."

want_sanlock=yes
for a in "$@"; do
	case $a in
	--no-sanlock) want_sanlock=no ;;
	*) echo "usage: $0 [--no-sanlock]" >&2; exit 2 ;;
	esac
done

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
skipped=""
cleanup() {
	for r in r1 r2; do
		[ -S "$r/sanlock-msg.sock" ] && "$slm" shutdown --run-dir "$r" --force --wait --timeout 20s >/dev/null 2>&1
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
slm=true
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ -t 1 ]; then
	step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
else
	step() { printf '\n$ %s\n' "$*"; }
fi
run() { step "$*"; "$@"; }
say() { printf '(%s)\n' "$*"; }
root=no
[ "$(id -u)" = 0 ] && root=yes

if [ -n "${SANLOCK_MSG_BIN:-}" ]; then
	cp "$SANLOCK_MSG_BIN" "$work/sanlock-msg"
else
	echo "building sanlock-msg"
	go build -o "$work/sanlock-msg" ./cmd/sanlock-msg
fi
# Short names in what the demo prints: the binary on PATH, the rest in the
# work directory.
PATH="$work:$PATH"
slm=sanlock-msg
cd "$work"
echo "working in $work"

truncate -s 8M disk.img
dev=disk.img
if [ $root = yes ] && [ -e /dev/loop-control ] && loop=$(losetup -f --show --sector-size 512 disk.img 2>/dev/null); then
	dev="$loop"
	echo "shared disk: $dev (a loop device over disk.img)"
else
	loop=""
	echo "shared disk: $dev (a plain file: loop devices need root)"
fi

run "$slm" init -o 1 -s "DEMO:0:$dev:0"
run "$slm" dump -s "DEMO:0:$dev:0"
say "no host has joined yet, so dump lists no host; --all lists every sector"

step "two sanlock-msg daemons: host 1 (no watchdog) and host 2 (a fake watchdog that logs to a file)"
"$slm" daemon --run-dir "r1" --watchdog none -e demo-host1 >"d1.log" 2>&1 &
pids="$pids $!"
"$slm" daemon --run-dir "r2" --watchdog "fake:$work/watchdog2" -e demo-host2 >"d2.log" 2>&1 &
d2=$!
pids="$pids $d2"
for r in r1 r2; do
	i=0
	until [ -S "$r/sanlock-msg.sock" ]; do
		i=$((i + 1)); [ $i -lt 100 ] || { cat "d1.log" "d2.log"; exit 1; }
		sleep 0.1
	done
done
run "$slm" add-lockspace --run-dir "r1" -o 1 -s "DEMO:1:$dev:0"
run "$slm" add-lockspace --run-dir "r2" -o 1 -s "DEMO:2:$dev:0"

# live RUN_DIR HOST_ID: wait until that daemon sees the host LIVE.
live() {
	i=0
	until "$slm" host-status --run-dir "$1" -s DEMO --json | tr -d ' \n' | grep -q "\"host_id\":$2,[^}]*\"state\":\"LIVE\""; do
		i=$((i + 1)); [ $i -lt 200 ] || { echo "host $2 never LIVE from $1" >&2; exit 1; }
		sleep 0.1
	done
}

step "$slm listen --run-dir r2 -s DEMO &   (host 2 prints what arrives)"
"$slm" listen --run-dir "r2" -s DEMO >"listen2" 2>&1 &
pids="$pids $!"
live "r1" 2
live "r2" 1
run "$slm" host-status --run-dir "r1" -s DEMO
run "$slm" send --run-dir "r1" -s DEMO -i 2 -c user0 --data 42 --wait
run "$slm" send --run-dir "r1" -s DEMO -i 2 -c user1,user2 --wait
run "$slm" send --run-dir "r1" -s DEMO -i 2 -c 0x1000000 --seq 100 --wait
sleep 0.3
step "what host 2's listener printed (each message once, in order)"
cat "listen2"
run "$slm" read -s "DEMO:2:$dev:0"
say "host 2's sector carries the ack table: source host, its generation, seq, status"
step "$slm metrics --run-dir r1 | grep -E '^sanlock_msg_(renewals_total|messages_sent_total|message_target_outcomes_total|hosts)[{ ]'"
"$slm" metrics --run-dir r1 | grep -E '^sanlock_msg_(renewals_total|messages_sent_total|message_target_outcomes_total|hosts)[{ ]'

# The real-sanlock part.
if [ $want_sanlock = no ]; then
	skipped="$skipped
- a real sanlock daemon joining: skipped (--no-sanlock)"
elif [ $root = no ]; then
	skipped="$skipped
- a real sanlock daemon joining: skipped: not root (sanlock is installed with apt-get and shares a loop device as root)"
else
	if ! command -v sanlock >/dev/null 2>&1; then
		step "apt-get install -y sanlock   (sanlock is not installed)"
		if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q sanlock >"apt.log" 2>&1 ||
			{ apt-get update -q >>"apt.log" 2>&1 &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -q sanlock >>"apt.log" 2>&1; }; }; then
			tail -5 "apt.log"
		fi
	fi
	if ! command -v sanlock >/dev/null 2>&1; then
		skipped="$skipped
- a real sanlock daemon joining: skipped: sanlock could not be installed (apt-get failed; see above)"
	else
		step "a real sanlock daemon (unprivileged, no watchdog) joins as host 3"
		mkdir "run"
		SANLOCK_RUN_DIR="$work/run" SANLOCK_PRIVILEGED=0 sanlock daemon -D -w 0 -o 1 -e demo-host3 >"sanlock.log" 2>&1 &
		daemon=$!
		i=0
		until SANLOCK_RUN_DIR="$work/run" sanlock client status >/dev/null 2>&1; do
			i=$((i + 1))
			[ $i -lt 50 ] || { cat "sanlock.log"; exit 1; }
			sleep 0.2
		done
		run env SANLOCK_RUN_DIR="$work/run" sanlock client add_lockspace -o 1 -s "DEMO:3:$dev:0"
		live "r1" 3
		run "$slm" host-status --run-dir "r1" -s DEMO
		run env SANLOCK_RUN_DIR="$work/run" sanlock client set_event -s DEMO -i 2 -e 0x40 -d 77
		i=0
		until grep -q "sanlock event" "listen2"; do
			i=$((i + 1)); [ $i -lt 150 ] || break
			sleep 0.1
		done
		sleep 5 # sanlock keeps the event in its sector for 6 s: it is read again, not delivered again
		step "host 2 got sanlock's event once, although sanlock rewrote it at every renewal"
		cat "listen2"
		run "$slm" send --run-dir "r1" -s DEMO -i 3 -c 0x20 --data 9 --wait
		say "sanlock cannot ack: the send ends once host 3 renewed twice with it on disk"
		run sanlock direct dump "$dev:0"
	fi
fi

if [ $root = yes ]; then
	step "fencing: host 1 sends WD_RESET to host 2"
	run "$slm" send --run-dir "r1" -s DEMO -i 2 -c reset --wait
	i=0
	until grep -q fire "watchdog2" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 100 ] || break
		sleep 0.1
	done
	step "host 2's (fake) watchdog: keepalives stop, the timeout drops to 1 s, it fires"
	tail -4 "watchdog2"
	st=0
	wait "$d2" 2>/dev/null || st=$?
	echo "host 2's daemon exited with status $st (137: as if the machine had reset)"
	[ "$st" = 137 ] || { echo "demo: host 2's fake watchdog did not fire" >&2; cat "d2.log" >&2; exit 1; }
	run "$slm" host-status --run-dir "r1" -s DEMO
	say "host 1 will see host 2 DEAD 68 s after its last renewal; 'sanlock-msg reset' waits for that"
else
	skipped="$skipped
- fencing with WD_RESET: skipped: not root (the daemon accepts reset codes from root only)"
fi

echo
if [ -n "$skipped" ]; then
	echo "demo done; not shown:$skipped"
else
	echo "demo done"
fi
