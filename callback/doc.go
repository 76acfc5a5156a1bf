// Package callback is the client side of the sanlock-msg daemon: a Client
// that sends requests on the daemon's unix socket (RUN_DIR/sanlock-msg.sock),
// Registrations that turn a connection into a poll(2)-able stream of
// message Records, and the wire types of the protocol. It imports no other
// package of sanlock-msg, so a VM manager that sends and listens does not
// link the lease loop, the message protocol or the watchdog (package
// daemon has those).
//
// # Protocol
//
// One JSON object per line in each direction (protocol.go): a Request with
// the protocol version V and an Op, answered by one Response with OK, and
// on failure a human-readable Error and a machine-readable Code. The
// Client numbers its requests and checks that each response echoes the
// number, and any failure of an exchange (a context that ends mid-request,
// an I/O error, a bad reply) closes its connection: later calls return
// ErrClosed, never another call's reply. It maps codes back to sentinel
// errors:
//
//	_, err := c.AddLockspace(ctx, "LS:2:/dev/sdb:0", callback.AddOptions{IOTimeout: time.Second})
//	if errors.Is(err, callback.ErrBusy) { ... }
//
// # Usage
//
//	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
//	if err != nil { ... } // wraps ErrNoDaemon when no daemon answers
//	defer c.Close()
//	ls, err := c.AddLockspace(ctx, "LS:2:/dev/sdb:0", callback.AddOptions{})
//	rep, err := c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{3}, Code: 0x10000, Wait: true})
//	reg, err := callback.Register(ctx, runDir, "LS") // reg.Fd() for poll(2), reg.Next(ctx) for records
//	st, err := c.Status(ctx)
//	hosts, err := c.HostStatus(ctx, "LS")
//
// A message's id (SendReply.ID, Record.ID) is HOST:GENERATION:SEQ. Send
// returns once the daemon has the message durably; Result tells its fate
// later, also after the daemon restarted:
//
//	r, err := c.Result(ctx, "LS", rep.ID) // r.State "pending" or "done"
//
// A registration with manual acks tells the sender "delivered" only once
// the application acked the record; records it leaves unacked come again
// to the next listener, flagged Redelivered, with the same ID:
//
//	reg, err := callback.RegisterWith(ctx, runDir, "LS", callback.RegisterOptions{ManualAck: true})
//	rec, err := reg.Next(ctx)
//	handle(rec) // dedup on rec.ID if rec.Redelivered
//	if rec.AckNeeded { err = reg.Ack(rec.ID) }
//
// State-changing ops need root, the daemon's uid, or its group; sending
// reset or reboot codes needs root.
package callback
