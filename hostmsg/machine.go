package hostmsg

import (
	"fmt"
	"slices"
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
	return &Machine{cfg: cfg, peers: make(map[uint64]*peer)}, nil
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

// Busy reports whether the driver should poll at its fast rate: a message
// is queued or in flight, a write is pending, or there was traffic within
// ActiveWindow.
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

// Send queues a message and returns its seq. The message goes to disk at
// the next write once every earlier message has finished; its Result comes
// out of Ready.
func (m *Machine) Send(now time.Time, msg Message) (uint64, error) {
	if m.reset != nil {
		return 0, ErrResetting
	}
	if msg.Code == 0 {
		return 0, ErrNoCode
	}
	targets := slices.Clone(msg.Targets)
	slices.Sort(targets)
	targets = slices.Compact(targets)
	if len(targets) == 0 {
		return 0, ErrNoTarget
	}
	if msg.TargetGeneration != 0 && len(targets) > 1 {
		return 0, ErrMultiTargetGen
	}
	o := &outMsg{Message: msg, queuedAt: now, unackable: msg.Code&leader.EventSeqData != 0}
	for _, id := range targets {
		if id == m.cfg.HostID {
			return 0, fmt.Errorf("%w (host %d)", ErrSelf, id)
		}
		if id < 1 || id > uint64(m.cfg.MaxHosts) {
			return 0, fmt.Errorf("%w: %d, valid 1..%d", ErrTargetRange, id, m.cfg.MaxHosts)
		}
		p := m.peers[id]
		if p == nil || (p.state != PeerLive && p.state != PeerUnknown) {
			state := "never seen"
			if p != nil {
				state = stateName(p.state)
			}
			return 0, fmt.Errorf("%w: host %d is %s", ErrTargetNotLive, id, state)
		}
		if o.CurrentGeneration && o.TargetGeneration == 0 && len(targets) == 1 {
			o.TargetGeneration = p.gen
		}
		if o.TargetGeneration != 0 && p.gen != o.TargetGeneration {
			return 0, fmt.Errorf("%w: host %d is at generation %d, not %d", ErrGeneration, id, p.gen, o.TargetGeneration)
		}
		o.targets = append(o.targets, &target{id: id, gen: p.gen})
	}
	seq := msg.Seq
	switch {
	case seq == 0:
		seq = m.lastSeq + 1
	case seq <= m.lastSeq:
		return 0, fmt.Errorf("%w: %d <= %d", ErrSeq, seq, m.lastSeq)
	}
	if seq > leader.MaxSeq {
		return 0, fmt.Errorf("%w: %d exceeds 48 bits", ErrSeq, seq)
	}
	if len(m.outbox) >= m.cfg.MaxOutbox {
		return 0, fmt.Errorf("%w: %d sends queued", ErrOutboxFull, len(m.outbox))
	}
	timeout := msg.Timeout
	if timeout <= 0 {
		timeout = m.cfg.SendTimeout
	}
	m.lastSeq = seq
	o.seq, o.data, o.deadline = seq, msg.Data, now.Add(timeout)
	if !msg.HasData {
		o.data = seq
	}
	m.outbox = append(m.outbox, o)
	m.lastActive = now
	m.promote(now)
	return seq, nil
}

// promote puts the next message in our sector if it is free: the parked
// or queued message with the lowest seq that is not waiting only for hosts
// that stopped renewing, and that shares no waiting target with an
// earlier message (so each receiver still gets its messages in seq order).
func (m *Machine) promote(now time.Time) {
	if m.cur != nil {
		return
	}
	cands := make([]*outMsg, 0, len(m.parked)+len(m.outbox))
	cands = append(cands, m.parked...)
	cands = append(cands, m.outbox...)
	slices.SortFunc(cands, func(a, b *outMsg) int { return cmpSeq(a.seq, b.seq) })
	blocked := map[uint64]bool{}
	for _, o := range cands {
		free := true
		for _, t := range o.targets {
			if !t.done && blocked[t.id] {
				free = false
			}
		}
		if free && !m.stalled(now, o) {
			m.cur = o
			m.parked = slices.DeleteFunc(m.parked, func(x *outMsg) bool { return x == o })
			m.outbox = slices.DeleteFunc(m.outbox, func(x *outMsg) bool { return x == o })
			m.changed()
			return
		}
		for _, t := range o.targets {
			if !t.done {
				blocked[t.id] = true
			}
		}
	}
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// stalled reports whether every target o still waits for has stopped
// renewing: no timestamp change for two of its renewal intervals. It is a
// scheduling hint only; liveness decisions use the driver's host states.
func (m *Machine) stalled(now time.Time, o *outMsg) bool {
	waiting := false
	for _, t := range o.targets {
		if t.done {
			continue
		}
		waiting = true
		p := m.peers[t.id]
		if p == nil {
			return false
		}
		io := time.Duration(max(p.io, 1)) * time.Second
		if now.Sub(p.changed) <= 2*(2*io+500*time.Millisecond) {
			return false
		}
	}
	return waiting
}

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

// Observe takes one read of the area: every host sector in the range read
// (ours included; it is skipped). It delivers new messages addressed to us,
// records acks for our message, and finishes sends.
func (m *Machine) Observe(now time.Time, peers []Peer) {
	for i := range peers {
		p := &peers[i]
		if p.HostID == m.cfg.HostID {
			continue
		}
		pp := m.update(now, p)
		if pp != nil {
			m.receive(now, p, pp)
		}
	}
	m.progress(now)
}

// Tick applies timeouts without a read (the driver may call it when a read
// fails, so sends still time out).
func (m *Machine) Tick(now time.Time) { m.progress(now) }

// update records what a sector says about its owner and returns the peer,
// or nil if the sector must not be acted on.
func (m *Machine) update(now time.Time, p *Peer) *peer {
	pp := m.peers[p.HostID]
	if pp == nil {
		pp = &peer{id: p.HostID}
		m.peers[p.HostID] = pp
	}
	pp.state = p.State
	s := p.Sector
	if s == nil {
		return nil
	}
	if p.Bad {
		if s.Record.Timestamp != 0 || s.Record.OwnerID != 0 {
			m.stats.BadSector++
		}
		return nil
	}
	r := &s.Record
	if r.Timestamp != pp.ts || pp.changed.IsZero() {
		pp.changed = now
	}
	pp.gen, pp.ts, pp.io = r.OwnerGeneration, r.Timestamp, r.IOTimeout
	if s.ExtErr != nil {
		m.stats.BadExt++
		return nil
	}
	pp.ext = s.Ext != nil
	pp.addrSeq, pp.hasAck = 0, false
	if s.Ext != nil {
		if s.Bitmap.Test(m.cfg.HostID) {
			pp.addrSeq = s.Ext.Seq
		}
		if a, ok := s.Ext.FindAck(m.cfg.HostID, m.cfg.Generation); ok {
			pp.hasAck, pp.ackSeq, pp.ackStatus = true, a.Seq, a.Status
		}
	}
	return pp
}

// receive delivers the message in p's sector if it is addressed to us and
// new.
func (m *Machine) receive(now time.Time, p *Peer, pp *peer) {
	s := p.Sector
	r := &s.Record
	if r.OwnerID != p.HostID || r.Timestamp == 0 || !s.Bitmap.Test(m.cfg.HostID) {
		pp.native = nil // an episode ends when the bit goes away
		return
	}
	code := r.WriteGeneration
	if code == 0 {
		// A bit without an event is a sanlock resource request.
		return
	}
	gen := r.OwnerGeneration
	if s.Ext == nil {
		ep := episode{gen: gen, tgen: r.WriteID, code: code, data: r.WriteTimestamp}
		if pp.native != nil && *pp.native == ep {
			m.stats.Duplicates++
			return
		}
		pp.native = &ep
		m.accept(now, Delivery{From: p.HostID, FromGen: gen, TargetGeneration: r.WriteID, Code: code,
			Data: r.WriteTimestamp, Native: true})
		return
	}
	seq := s.Ext.Seq
	if seq == 0 {
		return
	}
	if pp.rxGen != gen {
		// A new sender incarnation: its seqs start over.
		pp.rxGen, pp.rxSeq, pp.ackedSeq, pp.ackedStatus = gen, 0, 0, 0
	}
	ackable := code&leader.EventSeqData == 0
	if seq <= pp.rxSeq {
		m.stats.Duplicates++
		if ackable && pp.ackedSeq >= seq {
			m.ensureAck(now, p.HostID, gen, pp.ackedSeq, pp.ackedStatus)
		}
		return
	}
	st := m.accept(now, Delivery{From: p.HostID, FromGen: gen, Seq: seq, TargetGeneration: r.WriteID,
		Code: code, Data: r.WriteTimestamp})
	pp.rxSeq = seq
	if ackable {
		pp.ackedSeq, pp.ackedStatus = seq, st
		m.setAck(now, p.HostID, gen, seq, st)
	}
}

// accept decides a new message's status, delivers it and starts a reset.
func (m *Machine) accept(now time.Time, d Delivery) leader.AckStatus {
	m.lastActive = now
	d.At = now
	if d.TargetGeneration != 0 && d.TargetGeneration != m.cfg.Generation {
		m.stats.WrongGeneration++
		return leader.StatusWrongGeneration
	}
	d.Status = leader.StatusDelivered
	if m.listeners == 0 {
		d.Status = leader.StatusNoListener
	}
	if d.Code&leader.EventReset != 0 {
		if m.cfg.CanReset {
			d.Status = leader.StatusResetting
			m.startReset(now, d)
		} else {
			d.Status = leader.StatusResetUnavailable
		}
	}
	if m.listeners == 0 {
		m.stats.NoListener++
		return d.Status
	}
	m.stats.Delivered++
	if d.Native {
		m.stats.NativeDelivered++
	}
	m.ready.Deliveries = append(m.ready.Deliveries, d)
	return d.Status
}

// startReset latches a WD_RESET: every send is cancelled and our sector
// carries a RESETTING reply to each requester, as sanlk-resetd replies.
func (m *Machine) startReset(now time.Time, d Delivery) {
	if m.reset != nil {
		o := m.reset.reply
		for _, t := range o.targets {
			if t.id == d.From {
				return
			}
		}
		// Several requesters: one reply to all, for any generation.
		o.targets = append(o.targets, &target{id: d.From, gen: d.FromGen})
		o.TargetGeneration = 0
		m.changed()
		return
	}
	r := Reset{From: d.From, FromGen: d.FromGen, Seq: d.Seq, Native: d.Native, At: now}
	m.ready.Reset = &r
	if m.cur != nil && !m.cur.reply {
		m.cancel(now, m.cur)
	}
	for _, o := range append(m.outbox, m.parked...) {
		m.cancel(now, o)
	}
	m.outbox, m.parked = nil, nil
	m.lastSeq++
	reply := &outMsg{
		Message: Message{Targets: []uint64{d.From}, TargetGeneration: d.FromGen, Code: leader.EventResetting, HasData: true},
		seq:     m.lastSeq, reply: true, queuedAt: now, deadline: now.Add(100 * 365 * 24 * time.Hour),
		targets: []*target{{id: d.From, gen: d.FromGen}},
	}
	m.reset = &resetState{first: r, reply: reply}
	m.cur = reply
	m.changed()
}

func (m *Machine) cancel(now time.Time, o *outMsg) {
	for _, t := range o.targets {
		if !t.done {
			m.finishTarget(now, t, OutcomeCancelled, 0)
		}
	}
	m.finish(now, o)
}

// Stop cancels every send (the lockspace is being left) and returns their
// results.
func (m *Machine) Stop(now time.Time) []Result {
	if m.cur != nil && !m.cur.reply {
		m.cancel(now, m.cur)
	}
	m.cur = nil
	for _, o := range append(m.outbox, m.parked...) {
		m.cancel(now, o)
	}
	m.outbox, m.parked = nil, nil
	return m.Ready().Results
}

// progress advances our messages with what the last read showed, applies
// timeouts, parks a message whose targets all stopped renewing, and moves
// on to the next message.
func (m *Machine) progress(now time.Time) {
	// Queued and parked sends can end without being on disk.
	m.outbox = m.expire(now, m.outbox, false)
	m.parked = m.expire(now, m.parked, true)
	o := m.cur
	if o != nil {
		left := 0
		for _, t := range o.targets {
			if t.done {
				continue
			}
			m.advanceTarget(now, o, t)
			if !t.done && !now.Before(o.deadline) {
				m.finishTarget(now, t, OutcomeTimeout, 0)
			}
			if !t.done {
				left++
			}
		}
		switch {
		case left == 0 && o.reply:
			// The reply stays on disk until the reset: requesters that
			// poll late still find it.
		case left == 0:
			m.finish(now, o)
			m.cur = nil
			m.changed() // clear the message from our sector
		case !o.reply && len(m.outbox) > 0 && m.stalled(now, o):
			o.sentAt = time.Time{}
			m.parked = append(m.parked, o)
			m.cur = nil
			m.changed()
		}
	}
	m.promote(now)
}

// expire ends the messages in list that are not on disk but whose targets
// died or left, or whose deadline passed, and returns the others.
func (m *Machine) expire(now time.Time, list []*outMsg, checkTargets bool) []*outMsg {
	kept := list[:0]
	for _, o := range list {
		left := 0
		for _, t := range o.targets {
			if t.done {
				continue
			}
			if checkTargets {
				if p := m.peers[t.id]; p != nil && (p.state == PeerDead || p.state == PeerFree) {
					out := OutcomeDead
					if p.state == PeerFree {
						out = OutcomeLeft
					}
					m.finishTarget(now, t, out, 0)
					continue
				}
			}
			if !now.Before(o.deadline) {
				m.finishTarget(now, t, OutcomeTimeout, 0)
				continue
			}
			left++
		}
		if left == 0 {
			m.finish(now, o)
			continue
		}
		kept = append(kept, o)
	}
	return kept
}

// advanceTarget checks one target of our current message.
func (m *Machine) advanceTarget(now time.Time, o *outMsg, t *target) {
	p := m.peers[t.id]
	if p == nil {
		return
	}
	switch p.state {
	case PeerDead:
		m.finishTarget(now, t, OutcomeDead, 0)
		return
	case PeerFree:
		m.finishTarget(now, t, OutcomeLeft, 0)
		return
	}
	if p.gen != t.gen {
		if o.TargetGeneration != 0 {
			m.finishTarget(now, t, OutcomeRestarted, 0)
			return
		}
		// Any incarnation will do: wait for the new one.
		t.gen, t.renewals, t.lastTS = p.gen, 0, p.ts
	}
	if o.sentAt.IsZero() {
		return
	}
	if p.ext && !o.unackable {
		if p.hasAck && p.ackSeq >= o.seq {
			st := p.ackStatus
			if p.ackSeq > o.seq {
				st = leader.StatusDelivered
			}
			m.finishTarget(now, t, OutcomeAcked, st)
		}
		return
	}
	// Plain sanlock target, or a message that is not acked: done once the
	// target renewed twice after the message reached the disk (its second
	// renewal's read surely came after our write).
	if p.ts != t.lastTS {
		t.renewals++
		t.lastTS = p.ts
	}
	if t.renewals >= 2 {
		m.finishTarget(now, t, OutcomeUnacked, 0)
	}
}

func (m *Machine) finishTarget(now time.Time, t *target, out Outcome, st leader.AckStatus) {
	t.done = true
	t.res = TargetResult{HostID: t.id, Generation: t.gen, Outcome: out, Status: st, At: now}
	if p := m.peers[t.id]; p != nil && out != OutcomeRestarted {
		t.res.Generation = p.gen
	}
	m.changed() // the target's bit goes away
}

// finish reports a send whose targets are all done.
func (m *Machine) finish(now time.Time, o *outMsg) {
	if o.reply {
		return
	}
	r := Result{Seq: o.seq, Code: o.Code, Data: o.data, QueuedAt: o.queuedAt, SentAt: o.firstSent, DoneAt: now}
	for _, t := range o.targets {
		r.Targets = append(r.Targets, t.res)
	}
	m.stats.Sent++
	if r.Err() == nil {
		m.stats.SendOK++
	} else {
		m.stats.SendFailed++
	}
	m.ready.Results = append(m.ready.Results, r)
}

// ensureAck makes sure our ack table holds an entry for the source
// incarnation covering seq (it may have been evicted before the sender
// saw it).
func (m *Machine) ensureAck(now time.Time, host, gen, seq uint64, st leader.AckStatus) {
	for _, e := range m.acks {
		if e.ack.Matches(host, gen) && e.ack.Seq >= seq {
			return
		}
	}
	m.setAck(now, host, gen, seq, st)
}

// setAck records an ack in our table, evicting an entry the sender no
// longer needs, or else the oldest one that has been on disk for AckHold.
// If every entry is still needed the ack waits (ensureAck retries it).
func (m *Machine) setAck(now time.Time, host, gen, seq uint64, st leader.AckStatus) {
	a := leader.Ack{HostID: host, Gen16: uint16(gen), Status: st, Seq: seq}
	for _, e := range m.acks {
		if e.ack.HostID == host {
			e.ack, e.written = a, time.Time{}
			m.changed()
			return
		}
	}
	if len(m.acks) < leader.AckCapacity(m.cfg.SectorSize) {
		m.acks = append(m.acks, &ackEntry{ack: a})
		m.changed()
		return
	}
	var victim *ackEntry
	for _, e := range m.acks {
		if !m.ackNeeded(e) && (victim == nil || e.written.Before(victim.written)) {
			victim = e
		}
	}
	if victim == nil {
		for _, e := range m.acks {
			if !e.written.IsZero() && now.Sub(e.written) >= m.cfg.AckHold &&
				(victim == nil || e.written.Before(victim.written)) {
				victim = e
			}
		}
	}
	if victim == nil {
		m.stats.AckDeferred++
		return
	}
	m.stats.AckEvictions++
	victim.ack, victim.written = a, time.Time{}
	m.changed()
}

// ackNeeded reports whether the sender of entry e may still be waiting for
// it: its current message is addressed to us and covered by e.
func (m *Machine) ackNeeded(e *ackEntry) bool {
	p := m.peers[e.ack.HostID]
	if p == nil || p.state == PeerDead || p.state == PeerFree || uint16(p.gen) != e.ack.Gen16 {
		return false
	}
	return p.addrSeq != 0 && p.addrSeq <= e.ack.Seq
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
