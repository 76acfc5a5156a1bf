// Package daemon is the sanlock-msg daemon: the Daemon that holds host ids
// in lockspaces (package delta), runs the message protocol on each
// (package hostmsg), feeds the watchdog while they renew (package
// watchdog), and the Server that accepts clients on
// RUN_DIR/sanlock-msg.sock. Programs that only talk to a daemon import
// package callback, which links none of this.
//
// # Protocol
//
// One JSON object per line in each direction (callback/protocol.go): a
// Request with the protocol version V, an Op and an ID, answered by one
// Response that echoes the ID, with OK, and on failure a human-readable
// Error and a machine-readable Code. The parser (parse.go) is strict on
// syntax and lenient on content: every line gets one response line;
// unknown fields are ignored and unknown ops refused with
// CodeUnsupported, so that clients and daemons of different ages work
// together; a line that is not JSON or longer than callback.MaxLine also
// closes its connection. See docs/protocol.md.
//
// # Limits
//
// Connections are capped per uid and, for users other than root, in
// total; a connection over a cap, or one idle too long, gets an error line
// (CodeLimit) and is closed. The daemon goes on renewing whatever clients
// do: a listener that never reads only fills its own bounded queue.
//
// # Permissions
//
// The socket is mode 0660 and belongs to the configured group. On every
// connection the daemon reads the peer's credentials from the kernel
// (SO_PEERCRED and SO_PEERGROUPS, as they were at connect: not
// /proc/PID/status, which races with pid reuse); state-changing ops are allowed
// to root, to the daemon's own uid and to members of its group, and others
// get callback.ErrPermission. Read-only ops (status, host_status) are open
// to anyone who can connect.
//
// # Usage
//
// What `sanlock-msg daemon` runs:
//
//	d, err := daemon.New(daemon.Config{RunDir: "/run/sanlock-msg", Watchdog: "/dev/watchdog"})
//	if err != nil { ... }
//	err = d.Run(ctx) // until a shutdown op; ctx ending forces a shutdown
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
package daemon
