"""The sanlock-msg socket protocol, with the Python standard library only.

The daemon listens on RUN_DIR/sanlock-msg.sock (RUN_DIR: the argument,
else $SANLOCK_MSG_RUN_DIR, else /run/sanlock-msg). Each direction carries
one JSON object per line: a request {"v":1,"op":...}, answered by one
response {"v":1,"ok":true,...} or {"ok":false,"error":...,"code":...}.
After a "register" request is answered, the connection carries only
records from the daemon, one per line. docs/protocol.md has the details.
"""

import errno as _errno
import json
import os
import select
import socket

PROTOCOL_VERSION = 1
SOCKET_NAME = "sanlock-msg.sock"
DEFAULT_RUN_DIR = "/run/sanlock-msg"
ENV_RUN_DIR = "SANLOCK_MSG_RUN_DIR"
MAX_LINE = 64 << 10

# Message codes (the event bitfield). Applications use USER0..USER15.
RESET = 0x1  # WD_RESET: the target resets through its watchdog (root only)
RESETTING = 0x2
REBOOT = 0x4  # root only
REBOOTING = 0x8
USER0 = 1 << 16
SEQ_DATA = 1 << 32  # fire and forget: no ack


def user(n):
    """Return the code of application bit user<n>, 0 <= n <= 15."""
    if not 0 <= n <= 15:
        raise ValueError("user code %d: want 0..15" % n)
    return USER0 << n


def run_dir(path=None):
    """Return the run directory: path, else $SANLOCK_MSG_RUN_DIR, else
    /run/sanlock-msg."""
    return path or os.environ.get(ENV_RUN_DIR) or DEFAULT_RUN_DIR


class Error(Exception):
    """A failure reported by the daemon, or in talking to it.

    code is the protocol's machine-readable class ("permission", "exists",
    "not_joined", "busy", "invalid", "refused", "cancelled", "io",
    "internal"; "no_daemon" and "protocol" for failures on this side);
    op is the request's op. Subclasses match the codes, so callers can
    write `except sanlock_msg.NotJoined:`.
    """

    code = "internal"

    def __init__(self, message, code=None, op=None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.op = op


class PermissionDenied(Error):
    """The caller may not run this op (or send reset and reboot codes)."""
    code = "permission"


class Exists(Error):
    """The lockspace is already joined or being joined."""
    code = "exists"


class NotJoined(Error):
    """The daemon has no joined lockspace of that name."""
    code = "not_joined"


class Busy(Error):
    """The host id is held by a live host, or the outbox is full."""
    code = "busy"


class Invalid(Error):
    """The request or its arguments are wrong (target not live, ...)."""
    code = "invalid"


class Refused(Error):
    """The daemon refused (shutdown with lockspaces joined, resetting)."""
    code = "refused"


class Cancelled(Error):
    """The op was cancelled (lockspace removed, daemon stopping)."""
    code = "cancelled"


class StorageError(Error):
    """A storage error."""
    code = "io"


class NoDaemon(Error):
    """No daemon answers on the run directory's socket."""
    code = "no_daemon"


class ProtocolError(Error):
    """The daemon closed the connection or sent something unreadable."""
    code = "protocol"


_ERRORS = {c.code: c for c in (PermissionDenied, Exists, NotJoined, Busy, Invalid, Refused,
                                Cancelled, StorageError, NoDaemon, ProtocolError)}


def _error(message, code, op):
    return _ERRORS.get(code, Error)(message, code=code, op=op)


class Record(dict):
    """One record a registration delivers: the JSON object as a dict, with
    its fields also readable as attributes.

    type is "message", "overflow" (dropped messages were lost: this client
    read too slowly) or "end" (the registration ended: reason; the
    connection closes next). Messages have lockspace, from_host_id,
    from_generation, seq (0 for an event from a plain sanlock host), code,
    codes (names of its bits), data, generation (the target generation the
    sender named, 0 = any), native (an event from a plain sanlock host),
    status (the ack this host wrote) and time.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class SendResult:
    """The reply to a send.

    seq is the message's seq. With wait: done is True, ok says whether
    every target got it, targets lists one dict per target (host_id,
    generation, outcome: acked, delivered-unacknowledged, timeout,
    target-dead, target-left, target-restarted or cancelled; status when
    acked: delivered, no-listener, wrong-generation, resetting,
    reset-unavailable; ok; at), and error names the targets that did not
    get it and why. raw is the reply as the daemon sent it.
    """

    def __init__(self, raw):
        self.raw = raw
        self.seq = raw.get("seq", 0)
        self.done = raw.get("done", False)
        self.ok = raw.get("ok", False)
        self.targets = raw.get("targets") or []
        self.error = raw.get("error", "")

    def __repr__(self):
        return "SendResult(seq=%d, done=%r, ok=%r, targets=%r)" % (self.seq, self.done, self.ok, self.targets)


class _Lines:
    """Reads newline-terminated lines from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def pop(self):
        """Return the next complete line in the buffer, or None."""
        i = self.buf.find(b"\n")
        if i < 0:
            if len(self.buf) > MAX_LINE:
                raise ProtocolError("line longer than %d bytes from the daemon" % MAX_LINE)
            return None
        line, self.buf = self.buf[:i], self.buf[i + 1:]
        return line

    def fill(self):
        """Read what the socket has (blocking per its mode); False at EOF."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True


def _connect(path, op, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.path.join(path, SOCKET_NAME))
    except OSError as e:
        sock.close()
        raise NoDaemon("no daemon at %s: %s (is `sanlock-msg daemon` running with this run dir?)"
                       % (os.path.join(path, SOCKET_NAME), e.strerror or e), op=op) from None
    return sock


class Client:
    """A connection to the daemon of run_dir (see run_dir()).

    Each method sends one request and waits for its answer. timeout bounds
    each call in seconds (None: no bound; a send with wait can take up to
    the lockspace's host_dead). A call that timed out closes the
    connection, so a late answer is never taken for the next one's.
    Use it as a context manager, or call close().
    """

    def __init__(self, run_dir_path=None, timeout=None):
        self.run_dir = run_dir(run_dir_path)
        self.timeout = timeout
        self._sock = _connect(self.run_dir, "connect", timeout)
        self._lines = _Lines(self._sock)

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, op, **fields):
        """Send request op with fields; return the response dict, or raise
        Error (a subclass matching the response's code)."""
        if self._sock is None:
            raise ProtocolError("connection closed", op=op)
        req = {"v": PROTOCOL_VERSION, "op": op}
        req.update({k: v for k, v in fields.items() if v is not None})
        try:
            self._sock.sendall(json.dumps(req).encode() + b"\n")
            while True:
                line = self._lines.pop()
                if line is not None:
                    break
                if not self._lines.fill():
                    self.close()
                    raise ProtocolError("the daemon closed the connection", op=op)
        except socket.timeout:
            self.close()
            raise Error("%s: no answer within %ss" % (op, self.timeout), code="cancelled", op=op) from None
        except OSError as e:
            self.close()
            raise ProtocolError("%s: %s" % (op, e), op=op) from None
        try:
            resp = json.loads(line)
        except ValueError as e:
            self.close()
            raise ProtocolError("%s: bad response: %s" % (op, e), op=op) from None
        if not resp.get("ok"):
            raise _error(resp.get("error") or "failed", resp.get("code", "internal"), op)
        return resp

    def send(self, lockspace, targets, code, data=None, wait=False, timeout=None, generation=0, seq=0):
        """Send a message with code (a bitfield: USER0.., RESET, ...) to the
        host ids in targets (an int or a list) of lockspace.

        data is the 64-bit event data (None: the seq). Without wait, return
        as soon as the daemon queued it; with wait, once every target acked,
        died, restarted or the send timed out (timeout seconds; None: the
        lockspace's host_dead). generation names the target's incarnation
        (0: any; one target only); seq is the caller's (0: the daemon's).
        Return a SendResult; SendResult.ok says whether every target got it.
        """
        if isinstance(targets, int):
            targets = [targets]
        fields = {"name": _name(lockspace), "targets": list(targets), "code": code, "data": data,
                  "wait": bool(wait) or None, "generation": generation or None, "seq": seq or None}
        if timeout is not None:
            fields["timeout_ms"] = max(1, int(timeout * 1000))
        return SendResult(self.request("send", **fields).get("send") or {})

    def status(self):
        """Return the daemon's status as a dict (pid, version, run_dir,
        host_name, watchdog, lockspaces: the fields of `sanlock-msg status
        --json`)."""
        return self.request("status")["status"]

    def host_status(self, lockspace):
        """Return the hosts of lockspace as this daemon sees them: a list of
        dicts (host_id, generation, state: UNKNOWN FREE LIVE FAIL DEAD,
        host_name, io_timeout, runs, self, ...)."""
        return self.request("host_status", name=_name(lockspace)).get("hosts") or []


def _name(lockspace):
    if isinstance(lockspace, bytes):
        return lockspace.decode()
    return lockspace


class Registration:
    """A stream of Records for one lockspace, on its own connection.

    fileno() is the connection's descriptor: select, poll, epoll and
    asyncio's add_reader see it readable when records arrive; then read()
    returns them without blocking. Iterating blocks for each record and
    ends after the "end" record (the lockspace was removed). While at least
    one client is registered, the lockspace's messages are acked
    "delivered"; with none, "no-listener".
    """

    def __init__(self, lockspace, run_dir_path=None, timeout=None):
        self.lockspace = _name(lockspace)
        self._sock = _connect(run_dir(run_dir_path), "register", timeout)
        self._lines = _Lines(self._sock)
        self.ended = False
        try:
            self._register(timeout)
        except BaseException:
            self.close()
            raise
        self._sock.setblocking(False)

    def _register(self, timeout):
        req = {"v": PROTOCOL_VERSION, "op": "register", "name": self.lockspace}
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        # Read exactly the answer line, never a record after it: a record
        # left in our buffer would not wake a poller of fileno().
        line = b""
        while not line.endswith(b"\n"):
            peek = self._sock.recv(4096, socket.MSG_PEEK)
            if not peek:
                raise ProtocolError("register: the daemon closed the connection", op="register")
            i = peek.find(b"\n")
            n = len(peek) if i < 0 else i + 1
            line += self._sock.recv(n)
            if len(line) > MAX_LINE:
                raise ProtocolError("register: answer too long", op="register")
        resp = json.loads(line)
        if not resp.get("ok"):
            raise _error(resp.get("error") or "failed", resp.get("code", "internal"), "register")

    def fileno(self):
        """The connection's file descriptor, for select/poll/asyncio."""
        if self._sock is None:
            raise ValueError("registration closed")
        return self._sock.fileno()

    def read(self):
        """Return the records that have arrived, without blocking (an empty
        list if none). After poll says fileno() is readable it returns at
        least one record, or raises ProtocolError if the daemon closed the
        connection without an end record."""
        if self._sock is None or self.ended:
            return []
        eof = False
        try:
            while True:
                if not self._lines.fill():
                    eof = True
                    break
        except (BlockingIOError, InterruptedError):
            pass
        except ConnectionResetError:
            eof = True
        recs = []
        while True:
            line = self._lines.pop()
            if line is None:
                break
            rec = Record(json.loads(line))
            recs.append(rec)
            if rec.get("type") == "end":
                self.ended = True
                break
        if eof and not self.ended and not recs:
            raise ProtocolError("registration for %s: the daemon closed the connection" % self.lockspace,
                                op="register")
        return recs

    def __iter__(self):
        while not self.ended:
            recs = self.read()
            if not recs:
                select.select([self], [], [])
                continue
            for rec in recs:
                yield rec

    def close(self):
        """End the registration."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def send(lockspace, targets, code, data=None, wait=False, timeout=None, generation=0, seq=0, run_dir=None):
    """Client(run_dir).send(...) on a connection of its own."""
    with Client(run_dir) as c:
        return c.send(lockspace, targets, code, data=data, wait=wait, timeout=timeout,
                      generation=generation, seq=seq)


def listen(lockspace, run_dir=None):
    """Register for lockspace's messages: return a Registration."""
    return Registration(lockspace, run_dir)


def status(run_dir=None):
    """Client(run_dir).status() on a connection of its own."""
    with Client(run_dir) as c:
        return c.status()


def host_status(lockspace, run_dir=None):
    """Client(run_dir).host_status(lockspace) on a connection of its own."""
    with Client(run_dir) as c:
        return c.host_status(lockspace)


# Errnos of the protocol codes, for the python3-sanlock shim.
ERRNOS = {
    "permission": _errno.EPERM,
    "exists": _errno.EEXIST,
    "not_joined": _errno.ENOENT,
    "busy": _errno.EBUSY,
    "invalid": _errno.EINVAL,
    "refused": _errno.EBUSY,
    "cancelled": _errno.ECANCELED,
    "io": _errno.EIO,
    "no_daemon": _errno.ECONNREFUSED,
    "protocol": _errno.EPROTO,
    "internal": _errno.EIO,
}
