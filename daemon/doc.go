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
// Request with the protocol version V and an Op, answered by one Response
// with OK, and on failure a human-readable Error and a machine-readable
// Code. A line longer than callback.MaxLine or that is not a JSON request
// closes that connection; the daemon keeps running.
//
// # Permissions
//
// The socket is mode 0660 and belongs to the configured group. On every
// connection the daemon reads the peer's credentials (SO_PEERCRED and the
// supplementary groups in /proc/PID/status); state-changing ops are allowed
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
