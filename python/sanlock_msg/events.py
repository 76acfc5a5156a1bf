"""python3-sanlock's event calls, served by sanlock-msg.

Code written for sanlock host events moves over by changing an import:

    from sanlock_msg import events as sanlock   # was: import sanlock

    fd = sanlock.reg_event("LS")
    sanlock.set_event("LS", 2, 0, 0x10000, data=42, flags=sanlock.SETEV_CUR_GENERATION)
    ...poll(fd)...
    for ev in sanlock.get_event(fd):
        print(ev["from_host_id"], ev["from_generation"], ev["event"], ev["data"])
    sanlock.end_event(fd, "LS")

The functions take the same arguments and return the same shapes as
python3-sanlock's (lockspace names as str or bytes), and raise
SanlockException with an errno on failure. What differs, because
sanlock-msg's messages are not sanlock's events:

- Each message is delivered once, in order, and acked; sanlock delivers an
  event at every renewal that still sees it (about three times).
- set_event never fails with EBUSY: a second event is queued behind the
  first instead of replacing it, so SETEV_REPLACE_EVENT changes nothing.
- SETEV_CLEAR_EVENT and SETEV_CLEAR_HOSTID do nothing (no event is sent):
  a message leaves the sender's sector by itself once its targets acked it.
- SETEV_ALL_HOSTS sends one message to every LIVE host but this one.
- set_event with generation 0 and SETEV_CUR_GENERATION names the target's
  current generation, read from the daemon's host_status.
- A "generation" of 0 in get_event's dicts (the sender named no
  generation) is reported as this host's current generation.
- When the listener reads too slowly, the lost messages are reported on
  the "sanlock_msg" logger (sanlock drops them silently).
- The daemon is the sanlock-msg daemon of $SANLOCK_MSG_RUN_DIR (default
  /run/sanlock-msg), not sanlock.
"""

import errno
import logging
import os
import threading

from . import client

# Flags of set_event, with python3-sanlock's values.
SETEV_CUR_GENERATION = 1
SETEV_CLEAR_HOSTID = 2
SETEV_CLEAR_EVENT = 4
SETEV_REPLACE_EVENT = 8
SETEV_ALL_HOSTS = 16

# Host states of get_hosts, with python3-sanlock's values.
HOST_UNKNOWN = 1
HOST_FREE = 2
HOST_LIVE = 3
HOST_FAIL = 4
HOST_DEAD = 5

_HOST_STATES = {"UNKNOWN": HOST_UNKNOWN, "FREE": HOST_FREE, "LIVE": HOST_LIVE, "FAIL": HOST_FAIL,
                "DEAD": HOST_DEAD}

log = logging.getLogger("sanlock_msg")


class SanlockException(Exception):
    """A failure, as python3-sanlock raises it: args are (errno, message,
    strerror) and errno is the error number."""

    def __init__(self, err, message):
        super().__init__(err, message, os.strerror(err))

    @property
    def errno(self):
        return self.args[0]


def _raise(e, what):
    raise SanlockException(client.ERRNOS.get(e.code, errno.EIO), "%s: %s" % (what, e)) from None


class _Listener:
    """What reg_event returned: a registration and this host's identity."""

    def __init__(self, reg, host_id, generation):
        self.reg = reg
        self.host_id = host_id
        self.generation = generation


_lock = threading.Lock()
_listeners = {}  # fd -> _Listener


def _name(lockspace):
    return lockspace.decode() if isinstance(lockspace, bytes) else lockspace


def _ourselves(c, name):
    for ls in c.status().get("lockspaces") or []:
        if ls.get("name") == name:
            return ls.get("host_id", 0), ls.get("generation", 0)
    raise client.NotJoined("lockspace %s is not joined" % name, op="status")


def reg_event(lockspace):
    """reg_event(lockspace) -> int
    Register an event listener for lockspace and return an open file
    descriptor for waiting for lockspace events. When the file descriptor
    becomes readable, use get_event to get pending events. When done,
    unregister it with end_event."""
    name = _name(lockspace)
    try:
        with client.Client() as c:
            host_id, generation = _ourselves(c, name)
        reg = client.Registration(name)
    except client.Error as e:
        _raise(e, "Unable to register event fd")
    fd = reg.fileno()
    with _lock:
        _listeners[fd] = _Listener(reg, host_id, generation)
    return fd


def get_event(fd):
    """get_event(fd) -> list
    Get the list of lockspace events that arrived, without blocking. Each
    event is a dict: from_host_id, from_generation (the sender), host_id
    (this host), generation (this host's generation the event was set
    for), event and data."""
    with _lock:
        lst = _listeners.get(fd)
    if lst is None:
        raise SanlockException(errno.EBADF, "Unable to get events: fd %d is not registered" % fd)
    if lst.reg.ended:
        raise SanlockException(errno.ENOTCONN, "Unable to get events: the registration for %s ended"
                               % lst.reg.lockspace)
    try:
        recs = lst.reg.read()
    except client.Error as e:
        _raise(e, "Unable to get events")
    events = []
    for r in recs:
        kind = r.get("type")
        if kind == "message":
            events.append({"from_host_id": r.get("from_host_id", 0), "from_generation": r.get("from_generation", 0),
                           "host_id": lst.host_id, "generation": r.get("generation") or lst.generation,
                           "event": r.get("code", 0), "data": r.get("data", 0)})
        elif kind == "overflow":
            log.warning("lockspace %s: %d event(s) lost: the listener read too slowly", lst.reg.lockspace,
                        r.get("dropped", 0))
        elif kind == "end":
            log.warning("lockspace %s: registration ended: %s", lst.reg.lockspace, r.get("reason", ""))
    return events


def set_event(lockspace, host_id, generation, event, data=0, flags=0):
    """set_event(lockspace, host_id, generation, event, data=0, flags=0)
    Send event (a code bitfield) with data to host_id of lockspace. The
    event is queued and written at the daemon's next poll; this call does
    not wait for it to be read. See the module's documentation for the
    flags."""
    name = _name(lockspace)
    if flags & (SETEV_CLEAR_EVENT | SETEV_CLEAR_HOSTID):
        return None  # messages leave the sector once acked: nothing to clear
    if event == 0:
        raise SanlockException(errno.EINVAL, "Unable to set event: event 0")
    try:
        with client.Client() as c:
            targets = [host_id]
            if flags & SETEV_ALL_HOSTS:
                targets = [h["host_id"] for h in c.host_status(name) if h.get("state") == "LIVE" and not h.get("self")]
                if not targets:
                    raise SanlockException(errno.ENOENT, "Unable to set event: no other LIVE host in %s" % name)
                generation = 0
            elif generation == 0 and flags & SETEV_CUR_GENERATION:
                for h in c.host_status(name):
                    if h.get("host_id") == host_id:
                        generation = h.get("generation", 0)
            c.send(name, targets, event, data=data, generation=generation)
    except client.Error as e:
        _raise(e, "Unable to set event")
    return None


def end_event(fd, lockspace):
    """end_event(fd, lockspace)
    Unregister an event listener for lockspace registered with reg_event."""
    with _lock:
        lst = _listeners.pop(fd, None)
    if lst is None:
        raise SanlockException(errno.EBADF, "Unable to unregister event fd: fd %d is not registered" % fd)
    if lst.reg.lockspace != _name(lockspace):
        with _lock:
            _listeners[fd] = lst
        raise SanlockException(errno.EINVAL, "Unable to unregister event fd: fd %d is registered for %s, not %s"
                               % (fd, lst.reg.lockspace, _name(lockspace)))
    lst.reg.close()


def get_hosts(lockspace, host_id=0):
    """get_hosts(lockspace, host_id=0) -> list
    Return the hosts of lockspace (only host_id if given) as dicts:
    host_id, generation, timestamp, io_timeout and flags (HOST_FREE,
    HOST_LIVE, HOST_FAIL, HOST_DEAD or HOST_UNKNOWN)."""
    try:
        hosts = client.host_status(_name(lockspace))
    except client.Error as e:
        _raise(e, "Unable to get hosts")
    return [{"host_id": h["host_id"], "generation": h.get("generation", 0), "timestamp": h.get("timestamp", 0),
             "io_timeout": h.get("io_timeout", 0), "flags": _HOST_STATES.get(h.get("state"), HOST_UNKNOWN)}
            for h in hosts if host_id in (0, h["host_id"])]
