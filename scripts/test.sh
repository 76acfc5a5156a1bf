#!/bin/sh
# Runs every check of sanlock-msg: go vet and the whole test suite with the
# race detector, including the interop tests against real sanlock (which
# need root for loop devices). Installs the Debian packages the tests need
# when they are missing. .ci/run runs this script with CI=true, where a test
# whose prerequisites are missing fails instead of skipping.
set -eu
cd "$(dirname "$0")/.."

case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) PATH="$PATH:/usr/local/go/bin" ;;
esac
export PATH
if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: go not found (expected in /usr/local/go/bin)" >&2
	exit 1
fi

missing=""
command -v sanlock >/dev/null 2>&1 || missing="$missing sanlock"
command -v sanlk-reset >/dev/null 2>&1 || missing="$missing sanlk-reset"
/usr/bin/python3 -c 'import sanlock' >/dev/null 2>&1 || missing="$missing python3-sanlock"
if [ -n "$missing" ]; then
	echo "test.sh: installing:$missing"
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y sanlock python3-sanlock sanlk-reset
fi

go vet ./...
go test -race -timeout 30m ./...
