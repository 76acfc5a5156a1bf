"""python3 -m sanlock_msg listen [--run-dir DIR] [--manual-ack] LOCKSPACE

Prints the messages a sanlock-msg daemon delivers for one lockspace, one
line each, polling the registration's file descriptor as an event loop
would. With --manual-ack each message is acked once its line is printed
and flushed. Exits 0 when the daemon ends the registration (the lockspace
was removed), 1 on errors, 2 on a bad command line.
"""

import argparse
import select
import sys

from . import client


def describe(rec):
    """Return a line describing one record."""
    kind = rec.get("type")
    if kind == "message":
        source = "id %s seq %d" % (rec.get("id", ""), rec.get("seq", 0))
        if rec.get("native"):
            source = "sanlock event"  # from a plain sanlock host: no seq, no ack
        if rec.get("redelivered"):
            source += " REDELIVERED"
        return "message from host %d generation %d: %s code %#x (%s) data %d [%s]" % (
            rec.get("from_host_id", 0), rec.get("from_generation", 0), source, rec.get("code", 0),
            ",".join(rec.get("codes") or []), rec.get("data", 0), rec.get("status", ""))
    if kind == "overflow":
        return "overflow: %d message(s) lost, this listener read too slowly" % rec.get("dropped", 0)
    if kind == "end":
        return "end: %s" % rec.get("reason", "")
    return "unknown record: %r" % dict(rec)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m sanlock_msg", description="sanlock-msg client")
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("listen", help="print the messages that arrive for a lockspace")
    lp.add_argument("--run-dir", help="the daemon's run directory (default: $%s, else %s)"
                    % (client.ENV_RUN_DIR, client.DEFAULT_RUN_DIR))
    lp.add_argument("--manual-ack", action="store_true",
                    help="ack each message only once its line is printed and flushed")
    lp.add_argument("lockspace")
    args = p.parse_args(argv)
    try:
        reg = client.listen(args.lockspace, run_dir=args.run_dir, manual_ack=args.manual_ack)
    except client.Error as e:
        print("sanlock_msg: register for %s: %s" % (args.lockspace, e), file=sys.stderr)
        return 1
    print("registered for lockspace %s" % args.lockspace, flush=True)
    poller = select.poll()
    poller.register(reg.fileno(), select.POLLIN)  # a real event loop polls its other fds too
    with reg:
        while True:
            poller.poll()
            try:
                for rec in reg.read():
                    print(describe(rec), flush=True)
                    if rec.ack_needed:
                        reg.ack(rec)
            except client.Error as e:
                print("sanlock_msg: %s" % e, file=sys.stderr)
                return 1
            if reg.ended:
                return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
