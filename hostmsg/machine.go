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
	// TargetsDone are targets of our sends that just got their outcome
	// (each finished send's Result lists them again).
	TargetsDone []TargetDone
	// Forgotten are ack entries that just left our table (evicted for
	// another sender, or replaced by one for a newer origin of the same
	// sender). A driver that keeps them (Config.Remembered of the next
	// incarnation) closes the window where a restart forgets them.
	Forgotten []leader.Ack
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
	AckDeferred              int64 // acks that waited for a free entry (their sender is rung once one is written)
	HeldBack                 int64 // messages left on their sender's disk for a while: no listener room, or the join grace
	Returned                 int64 // deliveries the driver gave back (Return); they are delivered again
	Redelivered              int64 // deliveries of a message handed out before
	Inherited                int64 // ack entries carried forward from our previous incarnation
}

// Machine is the message protocol of one lockspace membership. It is not
// safe for concurrent use.
type Machine struct {
	cfg Config

	lastSeq uint64
	orders  uint64    // last outMsg.order given
	outbox  []*outMsg // queued, not yet in our sector, in queue order
	cur     *outMsg   // the message in our sector, or nil
	// parked holds messages taken out of our sector because every target
	// they still wait for stopped renewing, so that messages to other
	// hosts are not held up behind them; each goes back on disk when a
	// target renews again, and ends when it is DEAD or times out.
	parked []*outMsg
	// expired are resent messages whose deadline passed while we were
	// down: the first Observe settles them from the acks on disk.
	expired   []*outMsg
	peers     map[uint64]*peer
	heldBy    map[uint64]struct{} // senders whose message we hold back
	listeners int
	room      int       // deliveries the driver can take now; < 0: no limit
	start     time.Time // first Observe: the listener grace counts from it
	holding   bool      // our sector says we hold messages back
	acks      []*ackEntry
	ackWait   []*leader.Ack // acks waiting for an entry, in arrival order (acks.go)
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
	// addrSeq and addrOrigin identify its current message if that
	// message is addressed to us (addrSeq 0 if none); used to tell
	// whether our ack for it is still needed.
	addrSeq    uint64
	addrOrigin uint16
	// acks are its ack table entries for messages from us (one per
	// origin of ours it acked).
	acks []leader.Ack
	// holding: its sector says it holds messages back.
	holding bool

	// receive side: per origin of its messages (low 16 bits), the
	// state of the few most recent ones.
	rx     map[uint16]*rxState
	held   uint64   // seq of its message we are holding back (0: none)
	native *episode // current native event episode, if any
}

// rxState is what we did with the messages of one sender and origin.
type rxState struct {
	seq uint64 // highest seq taken (handed out or decided)
	// acked/status is the cumulative ack: every ackable message up to
	// acked was decided, the last one with status.
	acked  uint64
	status leader.AckStatus
	// open are the ackable messages taken after acked, in seq order,
	// not all decided yet (the ack waits for the driver's Ack).
	open []*openMsg
	// handed is the highest seq ever handed to the driver, so that a
	// message given back and delivered again is flagged Redelivered.
	handed uint64
	used   time.Time
}

type openMsg struct {
	seq    uint64
	prev   uint64 // rxState.seq before it was taken
	done   bool
	status leader.AckStatus // 0 with done: dropped without an ack
}

// maxOrigins is how many origins per sender a receiver remembers: a
// restarted sender resends its old origin's messages and then sends new
// ones, and may restart again meanwhile.
const maxOrigins = 4

type episode struct{ gen, tgen, code, data uint64 }

type outMsg struct {
	Message
	origin    uint64 // generation it was first sent under
	order     uint64 // queue order
	held      bool   // Hold: not yet committed
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
	gen      uint64 // 0: not seen yet (a resent message)
	done     bool
	heldBack bool
	res      TargetResult
	lastTS   uint64
	renewals int
	rangAt   time.Time // when its doorbell was last rung for this message
}

type ackEntry struct {
	ack     leader.Ack
	written time.Time // when it first reached the disk; zero if not yet
	ring    bool      // it waited for its entry: ring its sender once it is on disk
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
	m := &Machine{cfg: cfg, peers: make(map[uint64]*peer), room: -1}
	if cfg.Doorbells > 0 {
		m.bell.slot = int((cfg.HostID - 1) / uint64(cfg.Doorbells))
	}
	m.inherit(cfg.Remembered, false)
	m.inherit(cfg.Inherited, true)
	for _, id := range cfg.Handed {
		if id.Host == 0 || id.Host == cfg.HostID {
			continue
		}
		pp := m.peer(id.Host)
		rx := pp.rx[uint16(id.Origin)]
		if rx == nil {
			rx = &rxState{}
			pp.rx[uint16(id.Origin)] = rx
		}
		rx.handed = max(rx.handed, id.Seq)
	}
	return m, nil
}

// inherit seeds the receive state with ack entries of an earlier
// incarnation; with table, the entries also go into our ack table, as
// the acquire wrote them.
func (m *Machine) inherit(acks []leader.Ack, table bool) {
	for _, a := range acks {
		if a.HostID == 0 || a.HostID == m.cfg.HostID {
			continue
		}
		pp := m.peer(a.HostID)
		rx := pp.rx[a.Gen16]
		if rx == nil {
			rx = &rxState{}
			pp.rx[a.Gen16] = rx
		}
		if a.Seq > rx.acked {
			rx.seq, rx.acked, rx.status, rx.handed = a.Seq, a.Seq, a.Status, a.Seq
		}
		if table {
			m.acks = append(m.acks, &ackEntry{ack: a})
			m.stats.Inherited++
		}
	}
	for _, pp := range m.peers {
		for len(pp.rx) > maxOrigins && pp.evictRx(nil) {
		}
	}
}

// peer returns the state kept for host id, creating it.
func (m *Machine) peer(id uint64) *peer {
	pp := m.peers[id]
	if pp == nil {
		pp = &peer{id: id, rx: make(map[uint16]*rxState)}
		m.peers[id] = pp
	}
	return pp
}

// Config returns the configuration in use (defaults applied).
func (m *Machine) Config() Config { return m.cfg }

// Stats returns the counters.
func (m *Machine) Stats() Stats { return m.stats }

// SetListeners tells the machine how many clients listen for messages;
// with none, messages are acked "no-listener" and not delivered (after
// Config.ListenerGrace).
func (m *Machine) SetListeners(n int) { m.listeners = n }

// SetRoom tells the machine how many more messages the listeners can take
// now (the most any one listener's queue has room for); negative means no
// limit, the default. With listeners but no room, a new message is left
// unprocessed on its sender's disk (back-pressure: the sender keeps
// waiting) and our sector says we hold messages back.
func (m *Machine) SetRoom(n int) { m.room = n }

// Ready returns and clears the pending work.
func (m *Machine) Ready() Ready {
	rd := m.ready
	m.ready = Ready{}
	return rd
}

// HasReady reports whether Ready has anything.
func (m *Machine) HasReady() bool {
	return len(m.ready.Deliveries) > 0 || len(m.ready.Results) > 0 || m.ready.Reset != nil || len(m.ready.Forgotten) > 0 ||
		len(m.ready.TargetsDone) > 0
}

// Busy reports whether messages are flowing: a message is queued or in
// flight, a write is pending, or there was traffic within ActiveWindow.
// (Drivers poll by Plan: its Fast and Next.)
func (m *Machine) Busy(now time.Time) bool {
	// Holding messages back is not busy: the idle poll retakes them, and
	// the driver wakes the loop when a listener registers.
	return m.cur != nil || len(m.outbox) > 0 || len(m.parked) > 0 || m.dirty() ||
		now.Sub(m.lastActive) < m.cfg.ActiveWindow
}

// Resetting reports whether a WD_RESET was accepted.
func (m *Machine) Resetting() bool { return m.reset != nil }

// ResetWritten reports whether a sector carrying our "resetting" ack and
// reply has reached the disk.
func (m *Machine) ResetWritten() bool { return m.reset != nil && m.reset.written }

// Pending returns the number of sends not finished (in flight and queued).
func (m *Machine) Pending() int {
	n := len(m.outbox) + len(m.parked) + len(m.expired)
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
		p.Ext.Seq, p.Ext.Origin = o.seq, uint16(o.origin)
	}
	if m.reset != nil {
		p.Ext.Flags |= leader.ExtFlagResetting
	}
	if m.holding {
		p.Ext.Flags |= leader.ExtFlagHolding
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
