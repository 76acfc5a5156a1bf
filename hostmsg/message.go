package hostmsg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Errors returned by Send.
var (
	ErrSelf           = errors.New("hostmsg: cannot send to ourselves")
	ErrNoTarget       = errors.New("hostmsg: no target host")
	ErrTargetRange    = errors.New("hostmsg: target host id out of range")
	ErrTargetNotLive  = errors.New("hostmsg: target host not live")
	ErrGeneration     = errors.New("hostmsg: target generation mismatch")
	ErrSeq            = errors.New("hostmsg: seq not greater than the last one sent")
	ErrSeqWindow      = errors.New("hostmsg: seq too far ahead of the last one sent")
	ErrSeqExhausted   = errors.New("hostmsg: seqs exhausted for this membership")
	ErrOutboxFull     = errors.New("hostmsg: outbox full")
	ErrResetting      = errors.New("hostmsg: this host is resetting")
	ErrNoCode         = errors.New("hostmsg: code 0 is not a message")
	ErrStopped        = errors.New("hostmsg: lockspace left")
	ErrMultiTargetGen = errors.New("hostmsg: a target generation needs a single target")
	ErrOrigin         = errors.New("hostmsg: resent message's origin is not an earlier generation")
	ErrUnknown        = errors.New("hostmsg: no such message")
)

// SeqReserve is the top of the 48-bit seq space that only privileged sends
// (Message.Privileged: root's WD_RESET) and our RESETTING replies may use,
// so that no caller can use up the seqs a fence needs.
const SeqReserve = 1 << 32

// DefaultSeqWindow bounds how far ahead of the last seq a caller's seq may
// jump (Config.SeqWindow).
const DefaultSeqWindow = 1 << 20

// MsgID identifies a message in a lockspace: the sender's host id, the
// generation the message was first sent under (its origin: a message
// resent after the sender restarted keeps it) and its seq. It is written
// HOST:ORIGIN:SEQ.
type MsgID struct {
	Host, Origin, Seq uint64
}

// String formats the id as HOST:ORIGIN:SEQ.
func (id MsgID) String() string { return fmt.Sprintf("%d:%d:%d", id.Host, id.Origin, id.Seq) }

// ParseMsgID parses HOST:ORIGIN:SEQ.
func ParseMsgID(s string) (MsgID, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return MsgID{}, fmt.Errorf("hostmsg: message id %q: want HOST:GENERATION:SEQ", s)
	}
	var n [3]uint64
	for i, x := range f {
		v, err := strconv.ParseUint(x, 10, 64)
		if err != nil || v == 0 {
			return MsgID{}, fmt.Errorf("hostmsg: message id %q: want HOST:GENERATION:SEQ, positive numbers", s)
		}
		n[i] = v
	}
	if n[0] > leader.MaxHostID || n[2] > leader.MaxSeq {
		return MsgID{}, fmt.Errorf("hostmsg: message id %q out of range", s)
	}
	return MsgID{Host: n[0], Origin: n[1], Seq: n[2]}, nil
}

// Message is a send request.
type Message struct {
	// Targets are the host ids to send to (one bitmap bit each).
	Targets []uint64
	// TargetGeneration, if non-zero, names the target incarnation: a
	// target that restarted rejects the message and the send fails with
	// OutcomeRestarted. 0 means any incarnation. Only with one target.
	TargetGeneration uint64
	// CurrentGeneration, with TargetGeneration 0 and one target, names the
	// target's generation as last read (sanlock's CUR_GENERATION flag): a
	// reset meant for this incarnation can never hit the next one.
	CurrentGeneration bool
	// Code is the event code bitfield (leader.Event*); must not be 0.
	Code uint64
	// Data is carried in the event data field; if HasData is false the
	// seq is written there instead, so plain sanlock receivers still see a
	// distinct value per message.
	Data    uint64
	HasData bool
	// Seq, if non-zero, is the caller's seq; it must be greater than every
	// seq sent before in this lockspace membership and fit in 48 bits.
	Seq uint64
	// Timeout bounds the send from the Send call (queue time included);
	// 0 takes Config.SendTimeout.
	Timeout time.Duration
	// Privileged sends (root's WD_RESET) may use the seqs of SeqReserve.
	Privileged bool
	// Hold queues the message but keeps it off disk until Commit (the
	// driver first makes it durable); Abandon drops it. Later messages to
	// the same targets wait behind it.
	Hold bool
}

// Resent is a message an earlier incarnation of ours accepted and did not
// finish, sent again under its original identity (Resend).
type Resent struct {
	// Message holds the targets still waiting for it, the code, the
	// target generation and the data (HasData true; Seq, Timeout, Hold
	// are ignored).
	Message
	// Origin and Seq are its identity: the generation it was first sent
	// under and its seq there.
	Origin, Seq uint64
	// QueuedAt is when it was first accepted; Deadline when it times out.
	QueuedAt, Deadline time.Time
	// Expired: the deadline passed while we were down. The message is not
	// written again; the first read of the area decides each target's
	// outcome from what is on disk: acked if its ack table already acks
	// the message (it took it from our sector before we died), else
	// timeout.
	Expired bool
}

// Outcome says how a send ended for one target.
type Outcome int

// Outcomes.
const (
	// OutcomeAcked: the target acked; Status says what it did.
	OutcomeAcked Outcome = iota + 1
	// OutcomeUnacked: the target cannot ack (plain sanlock, or SEQ_DATA)
	// and renewed twice after the message reached the disk.
	OutcomeUnacked
	// OutcomeTimeout: the send timed out before the target answered.
	OutcomeTimeout
	// OutcomeDead: the target became DEAD.
	OutcomeDead
	// OutcomeLeft: the target released its host id (FREE).
	OutcomeLeft
	// OutcomeRestarted: the target has a new generation and the message
	// named the old one.
	OutcomeRestarted
	// OutcomeCancelled: we stopped sending (our host is resetting, or the
	// lockspace was left).
	OutcomeCancelled
	// OutcomeProcessed: the target had already acked a later message of
	// ours (of the same origin), so it processed this one, but what it did
	// with it is no longer on disk. Only a message resent after a restart
	// that lost its per-target outcomes can end so.
	OutcomeProcessed
)

var outcomeNames = map[Outcome]string{
	OutcomeAcked: "acked", OutcomeUnacked: "delivered-unacknowledged", OutcomeTimeout: "timeout",
	OutcomeDead: "target-dead", OutcomeLeft: "target-left", OutcomeRestarted: "target-restarted",
	OutcomeCancelled: "cancelled", OutcomeProcessed: "processed-status-unknown",
}

// String names the outcome.
func (o Outcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return fmt.Sprintf("outcome-%d", int(o))
}

// TargetResult is how a send ended for one target.
type TargetResult struct {
	HostID uint64
	// Generation is the target's generation when the send ended.
	Generation uint64
	Outcome    Outcome
	// Status is the target's ack status (OutcomeAcked only).
	Status leader.AckStatus
	// At is when the outcome was observed.
	At time.Time
	// HeldBack reports that the target said, while we waited, that it was
	// holding messages back (no listener with room, or just joined).
	HeldBack bool
}

// OK reports whether the target got the message and accepted it: acked
// "delivered" or "resetting", or, for targets that cannot ack, delivered
// unacknowledged.
func (t TargetResult) OK() bool {
	switch t.Outcome {
	case OutcomeAcked:
		return t.Status == leader.StatusDelivered || t.Status == leader.StatusResetting
	case OutcomeUnacked:
		return true
	}
	return false
}

// String describes the result, e.g. "host 2: acked (delivered)".
func (t TargetResult) String() string {
	if t.Outcome == OutcomeAcked {
		return fmt.Sprintf("host %d: acked (%s)", t.HostID, t.Status)
	}
	if t.HeldBack && t.Outcome == OutcomeTimeout {
		return fmt.Sprintf("host %d: %s (it held the message back: its listeners had no room, or none was registered yet)", t.HostID, t.Outcome)
	}
	return fmt.Sprintf("host %d: %s", t.HostID, t.Outcome)
}

// TargetDone reports that one target of a send has its outcome, before
// the whole send finishes (a driver with a durable outbox records it, so
// that a resend after a restart goes only to the targets still waiting).
type TargetDone struct {
	Origin, Seq uint64
	Target      TargetResult
}

// Result is a finished send.
type Result struct {
	// Origin and Seq identify the message (with our host id).
	Origin   uint64
	Seq      uint64
	Code     uint64
	Data     uint64
	Targets  []TargetResult
	QueuedAt time.Time // Send was called
	SentAt   time.Time // the message first reached the disk (zero if never)
	DoneAt   time.Time
}

// String lists every target's outcome, e.g. "host 2: acked (delivered);
// host 3: target-dead".
func (r *Result) String() string {
	parts := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		parts[i] = t.String()
	}
	return strings.Join(parts, "; ")
}

// Err returns nil if every target is OK, else an error naming each target
// that is not.
func (r *Result) Err() error {
	var bad []string
	for _, t := range r.Targets {
		if !t.OK() {
			bad = append(bad, t.String())
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("hostmsg: message %d:%d: %s", r.Origin, r.Seq, strings.Join(bad, "; "))
}

// Delivery is a message for the local listeners.
type Delivery struct {
	From    uint64 // sender host id
	FromGen uint64 // sender's current generation (its sector's)
	// Origin is the generation the message was first sent under (FromGen
	// unless the sender restarted and resent it); 0 for native events.
	Origin uint64
	// Seq is the sender's seq; 0 for events from plain sanlock hosts.
	Seq uint64
	// TargetGeneration is the generation the sender named (0 = any).
	TargetGeneration uint64
	Code             uint64
	Data             uint64
	// Native reports an event from a plain sanlock host (no seq, no ack).
	Native bool
	// Status is the ack status the message gets (or would get, for
	// native senders, which cannot read acks).
	Status leader.AckStatus
	// AwaitsAck: the ack (Status) is written only once the driver calls
	// Ack with ID, or the message is given back with Return.
	AwaitsAck bool
	// Redelivered: this receiver incarnation handed the message to the
	// driver before (it was given back with Return).
	Redelivered bool
	At          time.Time
}

// ID returns the message's identity (zero Seq for native events).
func (d Delivery) ID() MsgID { return MsgID{Host: d.From, Origin: d.Origin, Seq: d.Seq} }

// Reset reports an accepted WD_RESET.
type Reset struct {
	From, FromGen uint64
	Seq           uint64 // 0 for a plain sanlock sender
	Native        bool
	At            time.Time
}

// String describes the reset for logs and the reset marker.
func (r Reset) String() string {
	kind := "sanlock-msg"
	if r.Native {
		kind = "sanlock event"
	}
	return fmt.Sprintf("WD_RESET from host %d generation %d (%s, seq %d)", r.From, r.FromGen, kind, r.Seq)
}
