package hostmsg

import (
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Payload is the message part of our sector: event fields, bitmap and
// extension. The driver adds it to the leader record it writes.
type Payload struct {
	WriteID, WriteGeneration, WriteTimestamp uint64
	Bitmap                                   leader.Bitmap
	Ext                                      *leader.Extension
}

// Ready is the work the driver must do after Observe or Send.
type Ready struct {
	// Deliveries go to every listener registered for the lockspace, in
	// order, before the next sector write (whose acks say "delivered").
	Deliveries []Delivery
	// Results are sends that finished.
	Results []Result
	// Reset, if set, is a WD_RESET just accepted: stop feeding the
	// watchdog now; once ResetWritten reports the "resetting" ack on
	// disk, shorten the watchdog timeout so the host resets at once.
	Reset *Reset
}

// Stats counts what a Machine did.
type Stats struct {
	Sent, SendOK, SendFailed int64 // sends finished
	Delivered                int64 // messages handed to listeners
	NoListener               int64 // messages consumed with no listener
	NativeDelivered          int64 // events from plain sanlock hosts delivered
	Duplicates               int64 // reads of a message already processed
	WrongGeneration          int64 // messages for another incarnation of us
	BadExt                   int64 // peer sectors ignored: extension CRC/version failed
	BadSector                int64 // peer sectors ignored: leader checks failed
	AckEvictions             int64 // ack entries evicted from a full table
	AckDeferred              int64 // acks that waited for a free entry
}

// Machine is the message protocol of one lockspace membership. It is not
// safe for concurrent use.
type Machine struct {
	cfg Config

	lastSeq uint64
	outbox  []*outMsg // queued, not yet in our sector, in seq order
	cur     *outMsg   // the message in our sector, or nil
	// parked holds messages taken out of our sector because every target
	// they still wait for stopped renewing, so that messages to other
	// hosts are not held up behind them; each goes back on disk when a
	// target renews again, and ends when it is DEAD or times out.
	parked    []*outMsg
	peers     map[uint64]*peer
	listeners int
	acks      []*ackEntry
	reset     *resetState

	bell bellState // our doorbell (doorbell.go)

	changes    uint64    // bumped on every change of the payload
	written    uint64    // value of changes last written to disk
	snap       *snapshot // what the last Payload returned
	lastActive time.Time
	ready      Ready
	stats      Stats
}

type peer struct {
	id    uint64
	state PeerState
	gen   uint64 // owner generation last seen in a valid sector
	ts    uint64 // timestamp last seen
	io    uint16 // io_timeout in its record
	// changed is when its timestamp last changed (local time).
	changed time.Time
	ext     bool // its last valid sector had our extension
	ours    bool // its last valid sector had our marker: it reads doorbells
	// observed is when its sector was last read (whatever it held).
	observed time.Time
	// addrSeq is the seq of its current message if that message is
	// addressed to us (0 if none); used to tell whether our ack for it
	// is still needed.
	addrSeq uint64
	// ackSeq/ackStatus: its ack table entry for us (our incarnation).
	hasAck    bool
	ackSeq    uint64
	ackStatus leader.AckStatus

	// receive side, per source incarnation rxGen
	rxGen       uint64
	rxSeq       uint64 // last seq processed
	ackedSeq    uint64 // last ackable seq processed, and its status
	ackedStatus leader.AckStatus
	native      *episode // current native event episode, if any
}

type episode struct{ gen, tgen, code, data uint64 }

type outMsg struct {
	Message
	seq       uint64
	data      uint64
	unackable bool
	reply     bool // our RESETTING reply: no Result is reported
	queuedAt  time.Time
	deadline  time.Time
	sentAt    time.Time // reached the disk this time in our sector
	firstSent time.Time // first reached the disk
	targets   []*target
}

type target struct {
	id       uint64
	gen      uint64
	done     bool
	res      TargetResult
	lastTS   uint64
	renewals int
	rangAt   time.Time // when its doorbell was last rung for this message
}

type ackEntry struct {
	ack     leader.Ack
	written time.Time // when it first reached the disk; zero if not yet
}

type resetState struct {
	first   Reset
	reply   *outMsg
	written bool // a sector with the reset state reached the disk
}

type snapshot struct {
	changes uint64
	cur     *outMsg
	acks    map[*ackEntry]leader.Ack
	reset   bool
}

// New returns a Machine for the membership described by cfg.
func New(cfg Config) (*Machine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg, peers: make(map[uint64]*peer)}
	if cfg.Doorbells > 0 {
		m.bell.slot = int((cfg.HostID - 1) / uint64(cfg.Doorbells))
	}
	return m, nil
}

// Config returns the configuration in use (defaults applied).
func (m *Machine) Config() Config { return m.cfg }

// Stats returns the counters.
func (m *Machine) Stats() Stats { return m.stats }

// SetListeners tells the machine how many clients listen for messages;
// with none, messages are acked "no-listener" and not delivered.
func (m *Machine) SetListeners(n int) { m.listeners = n }

// Ready returns and clears the pending work.
func (m *Machine) Ready() Ready {
	rd := m.ready
	m.ready = Ready{}
	return rd
}

// HasReady reports whether Ready has anything.
func (m *Machine) HasReady() bool {
	return len(m.ready.Deliveries) > 0 || len(m.ready.Results) > 0 || m.ready.Reset != nil
}

// Busy reports whether messages are flowing: a message is queued or in
// flight, a write is pending, or there was traffic within ActiveWindow.
// (Drivers poll by Plan: its Fast and Next.)
func (m *Machine) Busy(now time.Time) bool {
	return m.cur != nil || len(m.outbox) > 0 || len(m.parked) > 0 || m.dirty() || now.Sub(m.lastActive) < m.cfg.ActiveWindow
}

// Resetting reports whether a WD_RESET was accepted.
func (m *Machine) Resetting() bool { return m.reset != nil }

// ResetWritten reports whether a sector carrying our "resetting" ack and
// reply has reached the disk.
func (m *Machine) ResetWritten() bool { return m.reset != nil && m.reset.written }

// Pending returns the number of sends not finished (in flight and queued).
func (m *Machine) Pending() int {
	n := len(m.outbox) + len(m.parked)
	if m.cur != nil && !m.cur.reply {
		n++
	}
	return n
}

func (m *Machine) dirty() bool { return m.written != m.changes }

func (m *Machine) changed() { m.changes++ }

// Payload returns what our sector must carry now, and whether it differs
// from what was last written (the driver should then write at once rather
// than wait for the next renewal).
func (m *Machine) Payload(now time.Time) (Payload, bool) {
	p := Payload{Ext: &leader.Extension{Version: leader.ExtVersion}}
	snap := &snapshot{changes: m.changes, cur: m.cur, acks: make(map[*ackEntry]leader.Ack, len(m.acks)), reset: m.reset != nil}
	if o := m.cur; o != nil {
		p.WriteID, p.WriteGeneration, p.WriteTimestamp = o.TargetGeneration, o.Code, o.data
		for _, t := range o.targets {
			if !t.done {
				p.Bitmap.Set(t.id)
			}
		}
		p.Ext.Seq = o.seq
	}
	if m.reset != nil {
		p.Ext.Flags |= leader.ExtFlagResetting
	}
	for _, e := range m.acks {
		p.Ext.Acks = append(p.Ext.Acks, e.ack)
		snap.acks[e] = e.ack
	}
	m.snap = snap
	return p, m.dirty()
}

// Written reports the outcome of writing the payload Payload last
// returned. A failed write leaves everything pending for the next one.
func (m *Machine) Written(now time.Time, err error) {
	snap := m.snap
	m.snap = nil
	if err != nil || snap == nil {
		return
	}
	if snap.changes > m.written {
		m.written = snap.changes
	}
	for e, a := range snap.acks {
		if e.ack == a && e.written.IsZero() {
			e.written = now
		}
	}
	if o := snap.cur; o != nil && o == m.cur && o.sentAt.IsZero() {
		o.sentAt = now
		if o.firstSent.IsZero() {
			o.firstSent = now
		}
		for _, t := range o.targets {
			if p := m.peers[t.id]; p != nil {
				t.lastTS = p.ts
			}
		}
	}
	if snap.reset && m.reset != nil {
		m.reset.written = true
	}
}

func stateName(s PeerState) string {
	switch s {
	case PeerUnknown:
		return "UNKNOWN"
	case PeerFree:
		return "FREE"
	case PeerLive:
		return "LIVE"
	case PeerFail:
		return "FAIL"
	case PeerDead:
		return "DEAD"
	}
	return fmt.Sprintf("state %d", int(s))
}

// String names the state as sanlock does.
func (s PeerState) String() string { return stateName(s) }
