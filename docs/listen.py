#!/usr/bin/python3
"""Print the messages a sanlock-msg daemon delivers for one lockspace.

Usage: listen.py [RUN_DIR] LOCKSPACE

An example of the register op with nothing but the Python 3 standard
library: it connects to RUN_DIR/sanlock-msg.sock (RUN_DIR defaults to
$SANLOCK_MSG_RUN_DIR, else /run/sanlock-msg), registers for LOCKSPACE,
then polls the socket like any other fd of an event loop and prints one
line per record. It exits 0 when the daemon ends the registration (the
lockspace was removed), 1 on errors, 2 on a bad command line.

The protocol is described in docs/protocol.md: one JSON object per line
each way; after the daemon's {"ok":true,...} answer the connection only
carries records from the daemon, each one line, of type "message",
"overflow" (messages were lost because this client read too slowly) or
"end" (the connection closes next).
"""

import json
import os
import select
import socket
import sys

SOCKET_NAME = "sanlock-msg.sock"
DEFAULT_RUN_DIR = "/run/sanlock-msg"


def describe(rec):
    """Return a line describing one record, or None for unknown types."""
    kind = rec.get("type")
    if kind == "message":
        source = "seq %d" % rec["seq"]
        if rec.get("native"):
            source = "sanlock event"  # from a plain sanlock host: no seq, no ack
        return "message from host %d generation %d: %s code %#x (%s) data %d [%s]" % (
            rec["from_host_id"], rec["from_generation"], source, rec["code"],
            ",".join(rec.get("codes") or []), rec["data"], rec.get("status", ""))
    if kind == "overflow":
        return "overflow: %d message(s) lost, this listener read too slowly" % rec["dropped"]
    if kind == "end":
        return "end: %s" % rec.get("reason", "")
    return None


class Lines:
    """Split the bytes read from a socket into lines."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data

    def pop(self):
        """Return the next complete line, or None."""
        line, sep, rest = self.buf.partition(b"\n")
        if not sep:
            return None
        self.buf = rest
        return line


def register(sock, lockspace, lines):
    """Send the register request and read the daemon's answer."""
    req = {"v": 1, "op": "register", "name": lockspace}
    sock.sendall(json.dumps(req).encode() + b"\n")
    while True:
        line = lines.pop()
        if line is not None:
            break
        data = sock.recv(4096)
        if not data:
            raise RuntimeError("the daemon closed the connection")
        lines.feed(data)
    resp = json.loads(line)
    if not resp.get("ok"):
        raise RuntimeError("%s (%s)" % (resp.get("error"), resp.get("code")))


def main(argv):
    if len(argv) == 2:
        run_dir = os.environ.get("SANLOCK_MSG_RUN_DIR") or DEFAULT_RUN_DIR
        lockspace = argv[1]
    elif len(argv) == 3:
        run_dir, lockspace = argv[1], argv[2]
    else:
        print("usage: listen.py [RUN_DIR] LOCKSPACE", file=sys.stderr)
        return 2

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lines = Lines()
    try:
        sock.connect(os.path.join(run_dir, SOCKET_NAME))
        register(sock, lockspace, lines)
    except (OSError, RuntimeError, ValueError) as e:
        print("listen.py: register for %s: %s" % (lockspace, e), file=sys.stderr)
        return 1
    print("registered for lockspace %s" % lockspace, flush=True)

    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        # Records that came with the answer, or with the last read.
        line = lines.pop()
        while line is not None:
            rec = json.loads(line)
            text = describe(rec)
            print(text if text else "unknown record: %s" % line.decode(), flush=True)
            if rec.get("type") == "end":
                return 0
            line = lines.pop()
        # A real event loop registers its other fds here too.
        for _fd, _events in poller.poll():
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                print("listen.py: %s" % e, file=sys.stderr)
                return 1
            if not data:
                print("listen.py: the daemon closed the connection", file=sys.stderr)
                return 1
            lines.feed(data)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(0)
