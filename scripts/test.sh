#!/bin/sh
# Runs every check of sanlock-msg. .ci/run runs this script with CI=true,
# where a test whose prerequisites are missing fails instead of skipping.
#
#   1. go.mod is tidy (go mod tidy -diff);
#   2. the client package (callback) links none of the daemon's packages;
#   3. go vet;
#   4. the systemd unit, as `make install` writes it, passes
#      systemd-analyze verify;
#   5. the Python client installs offline into a venv and its tests pass
#      against real daemons;
#   6. the demo runs and exits 0, as root (everything) and, when possible,
#      as nobody (a plain file, no sanlock, no fencing);
#   7. the whole Go test suite with the race detector, including the
#      interop tests against real sanlock (root, loop devices).
#
# Installs the Debian packages these need when they are missing.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)

case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH="$PATH:/usr/local/go/bin" ;;
esac
export PATH
if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: go not found (expected in /usr/local/go/bin)" >&2
	exit 1
fi
section() { printf '\n=== test.sh: %s\n' "$*"; }

missing=""
command -v sanlock >/dev/null 2>&1 || missing="$missing sanlock"
command -v sanlk-reset >/dev/null 2>&1 || missing="$missing sanlk-reset"
/usr/bin/python3 -c 'import sanlock' >/dev/null 2>&1 || missing="$missing python3-sanlock"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
/usr/bin/python3 -c 'import setuptools' >/dev/null 2>&1 || missing="$missing python3-setuptools"
/usr/bin/python3 -c 'import wheel' >/dev/null 2>&1 || missing="$missing python3-wheel"
if [ -n "$missing" ]; then
	section "installing:$missing"
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y $missing
fi

tmp=$(mktemp -d /var/tmp/sanlock-msg-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

section "go mod tidy -diff"
go mod tidy -diff

section "the client package links none of the daemon's packages"
bad=$(go list -deps ./callback | grep -E '^github.com/sanlock-msg/sanlock-msg/(daemon|delta|hostmsg|watchdog)(/|$)' || true)
if [ -n "$bad" ]; then
	echo "test.sh: FAIL: package callback (the client a VM manager imports) depends on daemon packages:" >&2
	echo "$bad" >&2
	echo "(go list -deps ./callback | grep sanlock-msg shows the chain; keep callback free of project imports)" >&2
	exit 1
fi
go list -deps ./callback | grep sanlock-msg

section "go vet"
go vet ./...

section "make install into a staging directory; systemd-analyze verify of the unit"
make --no-print-directory install DESTDIR="$tmp/root" PYTHON=/usr/bin/python3 >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; exit 1; }
bin="$tmp/root/usr/local/bin/sanlock-msg"
"$bin" version
# The unit names its binary by absolute path; verify the staged copy.
sed "s|/usr/local/bin/sanlock-msg|$bin|" "$tmp/root/usr/local/lib/systemd/system/sanlock-msg.service" >"$tmp/sanlock-msg.service"
MANPATH="$tmp/root/usr/local/share/man" systemd-analyze verify "$tmp/sanlock-msg.service"
echo "systemd-analyze verify: ok"

section "Python client: install offline into a venv, run its tests against real daemons"
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
# From $tmp, so that the tests import the installed package.
(cd "$tmp" && "$tmp/venv/bin/pip" install --no-build-isolation "$repo/python")
(cd "$tmp" && SANLOCK_MSG_BIN="$bin" "$tmp/venv/bin/python" -m unittest discover -s "$repo/python/tests" -v)

section "demo (as $(id -un))"
SANLOCK_MSG_BIN="$bin" ./scripts/demo.sh
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
	section "demo as nobody: a plain file, no loop device, no sanlock, no fencing"
	mkdir "$tmp/nobody"
	cp scripts/demo.sh "$bin" "$tmp/nobody/"
	chmod 0755 "$tmp" "$tmp/nobody"
	(cd /tmp && setpriv --reuid=nobody --regid=nogroup --clear-groups env -i PATH=/usr/bin:/bin HOME=/tmp \
		SANLOCK_MSG_BIN="$tmp/nobody/sanlock-msg" sh "$tmp/nobody/demo.sh")
elif [ "${CI:-}" = true ]; then
	echo "test.sh: cannot run the demo as nobody (needs root and setpriv)" >&2
	exit 1
fi

section "go test -race ./..."
go test -race -timeout 30m ./...
