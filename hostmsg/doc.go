// Package hostmsg is the sanlock-msg message protocol: exactly-once,
// ordered, acknowledged messages between hosts that share a lockspace,
// carried in the sector each host already rewrites to stay alive.
//
// It is a deterministic state machine in the style of etcd-io/raft's
// RawNode: no goroutines, no I/O, no clock. Its inputs are what the driver
// just read of every host's sector (Observe), the current time (an argument
// of every call), and the user's send requests (Send). Its outputs are the
// message part of our own sector to write next (Payload), the messages to
// deliver to local listeners and the sends that finished (Ready), and a
// reset request when a WD_RESET was accepted.
//
// # Protocol
//
// A message is identified by (sender host id, origin, seq), written
// HOST:ORIGIN:SEQ (MsgID): the origin is the sender generation it was first
// sent under. A sender puts one message at a time in its own sector: the
// sanlock event fields (target generation, code, data), one bitmap bit per
// target, and the 48-bit seq and 16 bits of the origin in the extension.
// A sender that restarts resends the messages its durable outbox still
// holds (Resend) under their original identity, before new ones. Receivers
// keep, per sender and origin, the last seq they processed, and deliver a
// message only if its seq is greater, so nothing is delivered twice and
// everything arrives in order. Each receiver answers in its own sector's
// ack table with (sender, origin, seq, status); acks are cumulative per
// sender and origin. A receiver's table survives its restart: the acquire
// of its next incarnation copies it (Config.Inherited), so a message it
// acked is not delivered again; entries that leave the table can be kept
// by the driver (Ready.Forgotten, Config.Remembered).
//
// A delivery that AwaitsAck is acked only once the driver calls Ack (after
// a listener's queue took it, or once an application acked it), or given
// back with Return (delivered again later, flagged Redelivered). While no
// listener has room (SetRoom), or for Config.ListenerGrace after the join
// while none is registered, new messages are left unprocessed on their
// senders' disks and our sector says we hold messages back. The sender keeps the message on disk until every target acked
// it, died, restarted (when a generation was named) or the send timed out;
// only then does it write the next one from its outbox, so nothing is ever
// clobbered. Targets that run plain sanlock cannot ack: they see the message
// as a host event, and the send ends "delivered, unacknowledged" once such a
// target has renewed twice after the message reached the disk. Events that
// plain sanlock hosts send are delivered once per episode (the span during
// which their bit for us stays set with the same values), not once per
// renewal as sanlock does.
//
// A message with the RESET code asks the target to reset itself through its
// watchdog: the target acks it "resetting", replies RESETTING to the sender
// (as sanlk-resetd does), and the driver stops feeding the watchdog.
//
// # Doorbells
//
// A receiver does not read every sender's sector to find its messages: a
// sender whose message is on disk rings the target's doorbell, a spare
// sector of the area, and the target, polling only its doorbell between
// renewals, reads the ringer's sector at once. A waiting sender reads only
// its targets' sectors. Rings are hints; renewal reads of the whole used
// area still find everything (doorbell.go has the rules).
//
// # Driver duties
//
// For each read, of the area or of some host sectors: call SetRoom and
// Observe (or ObserveArea for a read of the whole used part), then Ready;
// hand every Delivery to the listeners, and Ack (or Return) those that
// AwaitsAck as soon as that is decided; then call Payload and, if it is
// urgent or a renewal is due, write it in our sector and report the
// outcome with Written. Between renewals, read our doorbell and pass it to
// ObserveDoorbell, and do what Plan asks: read the sectors it names, scan
// the used area when the read budget allows, ring the doorbells of its
// Ring targets (reporting each with Rang), and come back at Plan.Next.
// When a turn reads nothing, call Tick so that timeouts still run. A
// Machine is not safe for concurrent use: the driver serialises calls.
package hostmsg
