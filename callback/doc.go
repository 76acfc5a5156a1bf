// Package callback is the sanlock-msg daemon and its control socket: the
// Daemon that holds host ids in lockspaces (package delta) and feeds the
// watchdog while they renew (package watchdog), the Server that accepts
// clients on RUN_DIR/sanlock-msg.sock, and the Client library that the
// command-line verbs and other programs use to talk to it.
//
// # Protocol
//
// One JSON object per line in each direction (protocol.go): a Request with
// the protocol version V and an Op, answered by one Response with OK, and
// on failure a human-readable Error and a machine-readable Code. A line
// longer than MaxLine or that is not a JSON request closes that connection;
// the daemon keeps running. The Client maps codes back to sentinel errors:
//
//	_, err := c.AddLockspace(ctx, "LS:2:/dev/sdb:0", callback.AddOptions{IOTimeout: time.Second})
//	if errors.Is(err, callback.ErrBusy) { ... }
//
// # Permissions
//
// The socket is mode 0660 and belongs to the configured group. On every
// connection the daemon reads the peer's credentials (SO_PEERCRED and the
// supplementary groups in /proc/PID/status); state-changing ops are allowed
// to root, to the daemon's own uid and to members of its group, and others
// get ErrPermission. Read-only ops (status, host_status) are open to anyone
// who can connect.
//
// # Usage
//
// The daemon (what `sanlock-msg daemon` runs):
//
//	d, err := callback.New(callback.Config{RunDir: "/run/sanlock-msg", Watchdog: "/dev/watchdog"})
//	if err != nil { ... }
//	err = d.Run(ctx) // until a shutdown op; ctx ending forces a shutdown
//
// A client:
//
//	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
//	if err != nil { ... } // wraps ErrNoDaemon when no daemon answers
//	defer c.Close()
//	ls, err := c.AddLockspace(ctx, "LS:2:/dev/sdb:0", callback.AddOptions{})
//	st, err := c.Status(ctx)
//	hosts, err := c.HostStatus(ctx, "LS")
//	_, err = c.RemLockspace(ctx, "LS")
//	err = c.Shutdown(ctx, false, true) // refused (ErrRefused) while lockspaces are joined
//
// # Caveats
//
// add_lockspace blocks as sanlock's does: about 2·io_timeout on a free host
// id, plus the previous owner's host_dead (8·io_timeout + the watchdog
// timeout, 140 s at the defaults) when the host id was last written under
// another host name. A lockspace whose renewals fail stays listed as
// failed, and keeps its watchdog expiry, until it is removed: the host is
// expected to reset. A daemon run with a fake watchdog exits with status
// 137 when the fake fires, to simulate that reset.
package callback
