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
import time

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
    "not_found", "unsupported", "limit", "internal"; "no_daemon" and
    "protocol" for failures on this side);
    op is the request's op. Subclasses match the codes, so callers can
    write `except sanlock_msg.NotJoined:`. msg_id is set when a send with
    wait failed after the daemon had accepted the message (the daemon went
    away, or the call timed out): the message is durable, and
    result(lockspace, msg_id) tells its fate later.
    """

    code = "internal"
    msg_id = None

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


class NotFound(Error):
    """result: the daemon knows no message of that id (never accepted by
    it, or older than the results it keeps)."""
    code = "not_found"


class Unsupported(Error):
    """The daemon does not know the op or the protocol version: it is older
    than this client."""
    code = "unsupported"


class Limit(Error):
    """A daemon limit was reached (too many connections, or this one was
    idle too long); the daemon closed the connection."""
    code = "limit"


class NoDaemon(Error):
    """No daemon answers on the run directory's socket."""
    code = "no_daemon"


class ProtocolError(Error):
    """The daemon closed the connection or sent something unreadable."""
    code = "protocol"


_ERRORS = {c.code: c for c in (PermissionDenied, Exists, NotJoined, Busy, Invalid, Refused,
                                Cancelled, StorageError, NotFound, Unsupported, Limit, NoDaemon, ProtocolError)}


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
    status (the ack this host wrote) and time; and, except for native
    events, id (the message's identity, "HOST:GENERATION:SEQ", the same in
    every delivery of it) and origin (the generation in id).

    The flags redelivered (this host handed the same id to a listener
    before: a manual-ack listener went away without acking it, or the
    daemon crashed before its ack reached the disk) and ack_needed (a
    manual-ack registration must ack this id) read as False when the
    daemon left them out, as it does when they are false.
    """

    _FLAGS = ("redelivered", "ack_needed", "native")

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            if name in self._FLAGS:
                return False
            raise AttributeError(name) from None


class SendResult:
    """The reply to a send, or to result.

    id is the message's identity, "HOST:GENERATION:SEQ" (our host id, the
    generation it was first sent under: origin, and its seq); result()
    takes it, and the receivers' records carry it. Without wait, a send
    returns once the message is durable in the daemon's state directory:
    from then on it is delivered or reported failed, also across a crash
    of the daemon. With wait: done is True, ok says whether every target
    got it, targets lists one dict per target (host_id, generation,
    outcome: acked, delivered-unacknowledged, timeout, target-dead,
    target-left, target-restarted, cancelled or processed-status-unknown;
    status when acked: delivered, no-listener, wrong-generation,
    resetting, reset-unavailable; held_back; ok; at), and error names the
    targets that did not get it and why. From result(), state is
    "pending" (targets: the outcomes so far) or "done". raw is the reply
    as the daemon sent it.
    """

    def __init__(self, raw):
        self.raw = raw
        self.id = raw.get("id", "")
        self.seq = raw.get("seq", 0)
        self.origin = raw.get("origin", 0)
        self.state = raw.get("state", "")
        self.done = raw.get("done", False)
        self.ok = raw.get("ok", False)
        self.targets = raw.get("targets") or []
        self.error = raw.get("error", "")

    def __repr__(self):
        return "SendResult(id=%r, seq=%d, done=%r, ok=%r, targets=%r)" % (
            self.id, self.seq, self.done, self.ok, self.targets)


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
    except PermissionError as e:
        sock.close()
        raise PermissionDenied("cannot connect to the daemon's socket %s: %s; %s"
                               % (os.path.join(path, SOCKET_NAME), e.strerror or e,
                                  _access_hint(os.path.join(path, SOCKET_NAME))), op=op) from None
    except OSError as e:
        sock.close()
        raise NoDaemon("no daemon at %s: %s (is `sanlock-msg daemon` running with this run dir?)"
                       % (os.path.join(path, SOCKET_NAME), e.strerror or e), op=op) from None
    return sock


def _access_hint(sock_path):
    """Say who may open sock_path: its owner, group and mode, or those of
    the first directory on its way this user may not enter."""
    import grp
    import pwd
    import stat

    def owned(st):
        try:
            user = "%s (%d)" % (pwd.getpwuid(st.st_uid).pw_name, st.st_uid)
        except KeyError:
            user = str(st.st_uid)
        return "owned by user %s, group %s, mode %04o" % (user, group(st), stat.S_IMODE(st.st_mode))

    def group(st):
        try:
            return grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            return str(st.st_gid)

    who = "this process runs as uid %d gid %d" % (os.getuid(), os.getgid())
    d = os.path.dirname(os.path.abspath(sock_path))
    while os.path.dirname(d) != d:
        parent = os.path.dirname(d)
        try:
            os.stat(d)
        except PermissionError:
            try:
                return "directory %s is %s, and %s; run as root or as a user who may enter it" % (
                    parent, owned(os.stat(parent)), who)
            except OSError:
                pass
        except OSError:
            pass
        d = parent
    try:
        st = os.stat(sock_path)
    except OSError:
        return who
    g = group(st)
    return ("the socket is %s, and %s; run as root, as its owner, or as a member of group %s "
            "(usermod -aG %s USER, then log in again), or start the daemon with another --group "
            "or --socket-mode" % (owned(st), who, g, g))


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
        return self._request(op, fields)

    def _request(self, op, fields, interim=None):
        """request(op, **fields); interim(resp), if given, is called with
        each successful response and returns True for a first answer that
        another follows (send's report_accept)."""
        if self._sock is None:
            raise ProtocolError("connection closed", op=op)
        req = {"v": PROTOCOL_VERSION, "op": op}
        req.update({k: v for k, v in fields.items() if v is not None})
        self._io(op, lambda: self._sock.sendall(json.dumps(req).encode() + b"\n"))
        while True:
            line = self._io(op, self._line)
            try:
                resp = json.loads(line)
            except ValueError as e:
                self.close()
                raise ProtocolError("%s: bad response: %s" % (op, e), op=op) from None
            if not resp.get("ok"):
                raise _error(resp.get("error") or "failed", resp.get("code", "internal"), op)
            if interim is None or not interim(resp):
                return resp

    def _line(self):
        """Read one response line (blocking, per the socket's timeout)."""
        while True:
            line = self._lines.pop()
            if line is not None:
                return line
            if not self._lines.fill():
                raise EOFError

    def _io(self, op, fn):
        """Run fn, an exchange on the socket; any failure closes the
        connection, so that a late answer is never taken for another."""
        try:
            return fn()
        except socket.timeout:
            self.close()
            raise Cancelled("%s: no answer within %ss" % (op, self.timeout), op=op) from None
        except EOFError:
            self.close()
            raise ProtocolError("the daemon closed the connection", op=op) from None
        except OSError as e:
            self.close()
            raise ProtocolError("%s: %s" % (op, e), op=op) from None

    def send(self, lockspace, targets, code, data=None, wait=False, timeout=None, generation=0, seq=0,
             on_accept=None):
        """Send a message with code (a bitfield: USER0.., RESET, ...) to the
        host ids in targets (an int or a list) of lockspace.

        data is the 64-bit event data (None: the seq). Without wait, return
        as soon as the daemon has the message durably (SendResult.id is its
        id); with wait, once every target acked, died, restarted or the
        send timed out (timeout seconds; None: the lockspace's host_dead).
        With wait, on_accept(SendResult) is called as soon as the message
        is durable, before the result; if the daemon goes away (or this
        client's timeout passes) after that, the Error raised has msg_id
        set: ask result() later. generation names the target's incarnation
        (0: any; one target only); seq is the caller's (0: the daemon's).
        Return a SendResult; SendResult.ok says whether every target got it.
        """
        if isinstance(targets, int):
            targets = [targets]
        name = _name(lockspace)
        fields = {"name": name, "targets": list(targets), "code": code, "data": data,
                  "wait": bool(wait) or None, "report_accept": bool(wait) or None,
                  "generation": generation or None, "seq": seq or None}
        if timeout is not None:
            fields["timeout_ms"] = max(1, int(timeout * 1000))
        accepted = []

        def interim(resp):
            r = resp.get("send") or {}
            if not r.get("accepted"):
                return False
            accepted.append(SendResult(r))
            if on_accept is not None:
                on_accept(accepted[0])
            return True

        try:
            return SendResult(self._request("send", fields, interim if wait else None).get("send") or {})
        except Error as e:
            if not accepted:
                raise
            msg_id = accepted[0].id
            err = type(e)("%s before message %s finished; it was accepted durably and the daemon sends it again "
                          "once it rejoins lockspace %s: ask for its fate with result(%r, %r) "
                          "(sanlock-msg result -s %s %s)" % (e, msg_id, name, name, msg_id, name, msg_id),
                          code=e.code, op="send")
            err.msg_id = msg_id
            raise err from None

    def result(self, lockspace, msg_id, wait=False, timeout=None):
        """Return what became of message msg_id ("HOST:GENERATION:SEQ", as
        send returned it in SendResult.id) that this daemon accepted in
        lockspace (None: look in every lockspace), from its durable
        outbox: also after the daemon restarted. A SendResult with state
        "done" (ok, targets, error as a send with wait returns them) or
        "pending" (the outcomes so far). With wait, poll until it is done,
        for at most timeout seconds (None: no limit; then Error with code
        "cancelled"). An id the daemon does not know raises NotFound.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            r = SendResult(self.request("result", name=_name(lockspace) if lockspace else None,
                                        msg_id=msg_id).get("send") or {})
            if not wait or r.state != "pending":
                return r
            if deadline is not None and time.monotonic() >= deadline:
                raise Cancelled("result: message %s still pending after %ss" % (msg_id, timeout), op="result")
            time.sleep(0.2)

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
    "delivered"; with none, "no-listener". The lockspace may still be
    joining: a restarting host's listeners can register first.

    With manual_ack, a message is acked "delivered" to its sender only once
    this client calls ack() for its record (those with ack_needed), after
    handling it (written, stored); records not acked when the registration
    ends are delivered again to the next listener, with the same id and
    redelivered set. Without it, a message is acked once the daemon has
    written it to this client's connection.
    """

    def __init__(self, lockspace, run_dir_path=None, timeout=None, manual_ack=False):
        self.lockspace = _name(lockspace)
        self.manual_ack = bool(manual_ack)
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
        if self.manual_ack:
            req["manual_ack"] = True
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

    def ack(self, rec):
        """Ack a message of a manual-ack registration: rec is its Record
        (one with ack_needed) or its id. The daemon then acks it
        "delivered" to its sender. Ack only what was handled: an
        unacked record is delivered again after this client goes away."""
        if not self.manual_ack:
            raise ValueError("ack: this registration acks automatically (listen with manual_ack=True)")
        msg_id = rec.get("id") if isinstance(rec, dict) else rec
        if not msg_id:
            raise ValueError("ack: a record without an id (an event from a plain sanlock host) needs no ack")
        if self._sock is None:
            raise ProtocolError("ack %s: registration closed" % msg_id, op="ack")
        line = json.dumps({"op": "ack", "id": msg_id}).encode() + b"\n"
        # The daemon reads acks as they come; a bounded blocking write
        # never leaves half a line behind.
        self._sock.settimeout(10)
        try:
            self._sock.sendall(line)
        except OSError as e:
            self.close()
            raise ProtocolError("ack %s: %s" % (msg_id, e), op="ack") from None
        finally:
            if self._sock is not None:
                self._sock.setblocking(False)

    def close(self):
        """End the registration."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def send(lockspace, targets, code, data=None, wait=False, timeout=None, generation=0, seq=0, run_dir=None,
         on_accept=None):
    """Client(run_dir).send(...) on a connection of its own."""
    with Client(run_dir) as c:
        return c.send(lockspace, targets, code, data=data, wait=wait, timeout=timeout,
                      generation=generation, seq=seq, on_accept=on_accept)


def result(lockspace, msg_id, wait=False, timeout=None, run_dir=None):
    """Client(run_dir).result(...) on a connection of its own."""
    with Client(run_dir) as c:
        return c.result(lockspace, msg_id, wait=wait, timeout=timeout)


def listen(lockspace, run_dir=None, manual_ack=False):
    """Register for lockspace's messages: return a Registration (with
    manual_ack, ack each record with Registration.ack)."""
    return Registration(lockspace, run_dir, manual_ack=manual_ack)


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
    "not_found": _errno.ENOENT,
    "unsupported": _errno.EOPNOTSUPP,
    "limit": _errno.EAGAIN,
    "no_daemon": _errno.ECONNREFUSED,
    "protocol": _errno.EPROTO,
    "internal": _errno.EIO,
}
