package hostmsg

import (
	"errors"
	"fmt"
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
	ErrOutboxFull     = errors.New("hostmsg: outbox full")
	ErrResetting      = errors.New("hostmsg: this host is resetting")
	ErrNoCode         = errors.New("hostmsg: code 0 is not a message")
	ErrStopped        = errors.New("hostmsg: lockspace left")
	ErrMultiTargetGen = errors.New("hostmsg: a target generation needs a single target")
)

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
)

var outcomeNames = map[Outcome]string{
	OutcomeAcked: "acked", OutcomeUnacked: "delivered-unacknowledged", OutcomeTimeout: "timeout",
	OutcomeDead: "target-dead", OutcomeLeft: "target-left", OutcomeRestarted: "target-restarted",
	OutcomeCancelled: "cancelled",
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
	return fmt.Sprintf("host %d: %s", t.HostID, t.Outcome)
}

// Result is a finished send.
type Result struct {
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
	return fmt.Errorf("hostmsg: seq %d: %s", r.Seq, strings.Join(bad, "; "))
}

// Delivery is a message for the local listeners.
type Delivery struct {
	From    uint64 // sender host id
	FromGen uint64 // sender generation
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
	At     time.Time
}

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
