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
// A sender puts one message at a time in its own sector: the sanlock event
// fields (target generation, code, data), one bitmap bit per target, and a
// 48-bit seq in the extension. Receivers deliver a seq only if it is greater
// than the last one they processed from that sender incarnation (host id and
// generation), so nothing is delivered twice to one receiver incarnation and
// everything arrives in order. Each receiver answers in its own sector's ack
// table with (sender, sender generation, seq, status); acks are cumulative
// per sender. The sender keeps the message on disk until every target acked
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
// For each read, of the area or of some host sectors: call Observe (or
// ObserveArea for a read of the whole used part), then Ready; hand every
// Delivery to the listeners before writing (the ack written next says
// "delivered"); then call Payload and, if it is urgent or a renewal is due,
// write it in our sector and report the outcome with Written. Between
// renewals, read our doorbell and pass it to ObserveDoorbell, and do what
// Plan asks: read the sectors it names, scan the used area when the read
// budget allows, ring the doorbells of its Ring targets (reporting each
// with Rang), and come back at Plan.Next. When a turn reads nothing, call
// Tick so that timeouts still run. A Machine is not safe for concurrent
// use: the driver serialises calls.
package hostmsg
