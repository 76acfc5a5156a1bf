"""Client for the sanlock-msg daemon, with the Python standard library only.

sanlock-msg sends messages between hosts that share a block device,
through a sanlock-compatible lockspace, and fences hosts through their
watchdog. This package talks to the local daemon's socket:

    import sanlock_msg

    r = sanlock_msg.send("LS", [2], sanlock_msg.USER0, data=42, wait=True)
    r.id, r.ok, r.targets    # per target: acked delivered, timeout, ...
    sanlock_msg.result("LS", r.id)      # its fate, also after a daemon restart

    reg = sanlock_msg.listen("LS", manual_ack=True)  # reg.fileno() for select/poll/asyncio
    for rec in reg.read():              # after poll: never blocks
        print(rec.id, rec.redelivered, rec.codes, rec.data)
        reg.ack(rec)                    # only now is the sender told "delivered"

    sanlock_msg.status()                # the daemon and its lockspaces
    sanlock_msg.host_status("LS")       # every host of LS as the daemon sees it

sanlock_msg.events has the shapes of python3-sanlock's event calls
(reg_event, get_event, set_event, end_event). The daemon's run directory
is the run_dir argument, else $SANLOCK_MSG_RUN_DIR, else /run/sanlock-msg.
"""

from .client import (  # noqa: F401
    DEFAULT_RUN_DIR,
    ENV_RUN_DIR,
    PROTOCOL_VERSION,
    REBOOT,
    REBOOTING,
    RESET,
    RESETTING,
    SEQ_DATA,
    USER0,
    Busy,
    Cancelled,
    Client,
    Error,
    Exists,
    Invalid,
    Limit,
    NoDaemon,
    NotFound,
    NotJoined,
    PermissionDenied,
    ProtocolError,
    Record,
    Refused,
    Registration,
    SendResult,
    StorageError,
    Unsupported,
    host_status,
    listen,
    result,
    run_dir,
    send,
    status,
    user,
)

__version__ = "0.2.0"
