package hostmsg

import (
	"fmt"
	"slices"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Observe takes one read: the host sectors read, any subset of the area
// (ours included; it is skipped). It delivers new messages addressed to us,
// records acks for our messages, and finishes sends.
func (m *Machine) Observe(now time.Time, peers []Peer) {
	if m.start.IsZero() {
		m.start = now
	}
	for i := range peers {
		p := &peers[i]
		m.seen(now, p.HostID)
		if p.HostID == m.cfg.HostID {
			continue
		}
		pp := m.update(now, p)
		if pp != nil {
			m.receive(now, p, pp)
		}
	}
	if holding := len(m.heldBy) > 0; holding != m.holding {
		m.holding = holding
		m.changed()
	}
	if len(m.expired) > 0 {
		m.settleExpired(now)
	}
	m.progress(now)
}

// Tick applies timeouts without a read (the driver may call it when a read
// fails, so sends still time out).
func (m *Machine) Tick(now time.Time) { m.progress(now) }

// update records what a sector says about its owner and returns the peer,
// or nil if the sector must not be acted on.
func (m *Machine) update(now time.Time, p *Peer) *peer {
	pp := m.peer(p.HostID)
	pp.state = p.State
	s := p.Sector
	if s == nil {
		return nil
	}
	pp.observed = now
	if p.Bad {
		if s.Record.Timestamp != 0 || s.Record.OwnerID != 0 {
			m.stats.BadSector++
		}
		return nil
	}
	r := &s.Record
	pp.ours = s.Ours()
	if r.Timestamp != pp.ts || pp.changed.IsZero() {
		pp.changed = now
	}
	pp.gen, pp.ts, pp.io = r.OwnerGeneration, r.Timestamp, r.IOTimeout
	if s.ExtErr != nil {
		m.stats.BadExt++
		return nil
	}
	pp.ext = s.Ext != nil
	pp.addrSeq, pp.addrOrigin, pp.acks, pp.holding = 0, 0, pp.acks[:0], false
	if s.Ext != nil {
		if s.Bitmap.Test(m.cfg.HostID) {
			pp.addrSeq, pp.addrOrigin = s.Ext.Seq, s.Ext.Origin
		}
		for _, a := range s.Ext.Acks {
			if a.HostID == m.cfg.HostID {
				pp.acks = append(pp.acks, a)
			}
		}
		pp.holding = s.Ext.Flags&leader.ExtFlagHolding != 0
	}
	return pp
}

// ackFor returns the peer's ack entry for our messages of origin o16.
func (pp *peer) ackFor(o16 uint16) (leader.Ack, bool) {
	for _, a := range pp.acks {
		if a.Gen16 == o16 {
			return a, true
		}
	}
	return leader.Ack{}, false
}

// fullOrigin recovers the generation whose low 16 bits are o16 from the
// sender's current generation gen: the latest one not above gen.
func fullOrigin(gen uint64, o16 uint16) uint64 {
	back := uint64(uint16(gen) - o16)
	if back > gen {
		return uint64(o16)
	}
	return gen - back
}

// rxFor returns the receive state for the peer's origin o16, creating it
// (and forgetting the least recently used origin beyond maxOrigins).
func (pp *peer) rxFor(now time.Time, o16 uint16) *rxState {
	rx := pp.rx[o16]
	if rx == nil {
		rx = &rxState{used: now}
		pp.rx[o16] = rx
		for len(pp.rx) > maxOrigins && pp.evictRx(rx) {
		}
	}
	rx.used = now
	return rx
}

// evictRx forgets the least recently used origin other than keep that
// has nothing open, and reports whether it found one.
func (pp *peer) evictRx(keep *rxState) bool {
	var victim uint16
	var oldest *rxState
	for o, rx := range pp.rx {
		if rx != keep && len(rx.open) == 0 && (oldest == nil || rx.used.Before(oldest.used)) {
			victim, oldest = o, rx
		}
	}
	if oldest == nil {
		return false
	}
	delete(pp.rx, victim)
	return true
}

// receive takes the message in p's sector if it is addressed to us and
// new.
func (m *Machine) receive(now time.Time, p *Peer, pp *peer) {
	s := p.Sector
	r := &s.Record
	if r.OwnerID != p.HostID || r.Timestamp == 0 || !s.Bitmap.Test(m.cfg.HostID) {
		pp.native = nil // an episode ends when the bit goes away
		m.setHeld(pp, 0)
		return
	}
	code := r.WriteGeneration
	if code == 0 {
		// A bit without an event is a sanlock resource request.
		m.setHeld(pp, 0)
		return
	}
	gen := r.OwnerGeneration
	if s.Ext == nil {
		ep := episode{gen: gen, tgen: r.WriteID, code: code, data: r.WriteTimestamp}
		if pp.native != nil && *pp.native == ep {
			m.stats.Duplicates++
			return
		}
		d := Delivery{From: p.HostID, FromGen: gen, TargetGeneration: r.WriteID, Code: code,
			Data: r.WriteTimestamp, Native: true}
		if !m.accept(now, &d) {
			m.hold(pp, 1)
			return
		}
		m.setHeld(pp, 0)
		pp.native = &ep
		return
	}
	seq := s.Ext.Seq
	if seq == 0 {
		m.setHeld(pp, 0)
		return
	}
	o16 := s.Ext.Origin
	rx := pp.rxFor(now, o16)
	ackable := code&leader.EventSeqData == 0
	if seq <= rx.seq {
		m.setHeld(pp, 0)
		m.stats.Duplicates++
		if ackable && rx.acked >= seq {
			m.ensureAck(now, p.HostID, o16, rx.acked, rx.status)
		}
		return
	}
	d := Delivery{From: p.HostID, FromGen: gen, Origin: fullOrigin(gen, o16), Seq: seq, TargetGeneration: r.WriteID,
		Code: code, Data: r.WriteTimestamp, Redelivered: seq <= rx.handed}
	if !m.accept(now, &d) {
		m.hold(pp, seq)
		return
	}
	m.setHeld(pp, 0)
	if d.Redelivered {
		m.stats.Redelivered++
	}
	prev := rx.seq
	rx.seq = seq
	if d.Status == leader.StatusDelivered && !d.AwaitsAck {
		rx.handed = max(rx.handed, seq) // seq-data: nothing to ack
	}
	if !ackable {
		return
	}
	if d.AwaitsAck {
		rx.handed = max(rx.handed, seq)
		rx.open = append(rx.open, &openMsg{seq: seq, prev: prev})
		return
	}
	rx.open = append(rx.open, &openMsg{seq: seq, prev: prev, done: true, status: d.Status})
	m.settle(now, p.HostID, o16, rx)
}

// setHeld records that pp's message seq is held back (0: none), keeping
// m.heldBy, the set of such senders, so that no pass over every peer is
// needed per read or per plan.
func (m *Machine) setHeld(pp *peer, seq uint64) {
	pp.held = seq
	if seq == 0 {
		delete(m.heldBy, pp.id)
		return
	}
	if m.heldBy == nil {
		m.heldBy = make(map[uint64]struct{})
	}
	m.heldBy[pp.id] = struct{}{}
}

// hold leaves a message unprocessed on its sender's disk for now, counting
// it once.
func (m *Machine) hold(pp *peer, seq uint64) {
	if pp.held != seq {
		m.stats.HeldBack++
	}
	m.setHeld(pp, seq)
}

// accept decides what happens to a new message: it sets d's status and
// queues it for the listeners, or returns false to leave it on its
// sender's disk for now (no listener room; or no listener yet, within the
// grace after the join).
func (m *Machine) accept(now time.Time, d *Delivery) bool {
	d.At = now
	if d.TargetGeneration != 0 && d.TargetGeneration != m.cfg.Generation {
		m.lastActive = now
		m.stats.WrongGeneration++
		d.Status = leader.StatusWrongGeneration
		return true
	}
	reset := d.Code&leader.EventReset != 0
	// A WD_RESET never waits for a listener: a fence must not depend on
	// one.
	if !reset {
		if m.listeners == 0 && m.cfg.ListenerGrace > 0 && now.Sub(m.start) < m.cfg.ListenerGrace {
			return false
		}
		if m.listeners > 0 && m.room == 0 {
			return false
		}
	}
	m.lastActive = now
	d.Status = leader.StatusDelivered
	if m.listeners == 0 {
		d.Status = leader.StatusNoListener
	}
	if reset {
		if m.cfg.CanReset {
			d.Status = leader.StatusResetting
			m.startReset(now, *d)
		} else {
			d.Status = leader.StatusResetUnavailable
		}
	}
	if m.listeners == 0 {
		m.stats.NoListener++
		return true
	}
	if m.room > 0 {
		m.room--
	}
	d.AwaitsAck = d.Status == leader.StatusDelivered && !d.Native && d.Code&leader.EventSeqData == 0
	m.stats.Delivered++
	if d.Native {
		m.stats.NativeDelivered++
	}
	m.ready.Deliveries = append(m.ready.Deliveries, *d)
	return true
}

// openOf finds the open delivery id.
func (m *Machine) openOf(id MsgID) (*rxState, int, error) {
	pp := m.peers[id.Host]
	if pp != nil {
		if rx := pp.rx[uint16(id.Origin)]; rx != nil {
			for i, o := range rx.open {
				if o.seq == id.Seq && !o.done {
					return rx, i, nil
				}
			}
		}
	}
	return nil, 0, fmt.Errorf("%w: %s is not awaiting an ack", ErrUnknown, id)
}

// Ack records that a delivery that AwaitsAck was handled (st is normally
// StatusDelivered): its ack goes into our table once every earlier
// message of the same sender and origin is decided too.
func (m *Machine) Ack(now time.Time, id MsgID, st leader.AckStatus) error {
	rx, i, err := m.openOf(id)
	if err != nil {
		return err
	}
	rx.open[i].done, rx.open[i].status = true, st
	m.lastActive = now
	m.settle(now, id.Host, uint16(id.Origin), rx)
	return nil
}

// Return gives back a delivery that AwaitsAck and that no listener kept
// (the client that had it went away without acking). If its sender still
// shows it, it is delivered again, with Redelivered set, at a later
// Observe; if the sender has moved on (its send timed out) it is dropped.
func (m *Machine) Return(now time.Time, id MsgID) error {
	rx, i, err := m.openOf(id)
	if err != nil {
		return err
	}
	m.stats.Returned++
	// The message is still on its sender's disk: read it again now.
	if m.bell.ringers == nil {
		m.bell.ringers = make(map[uint64]time.Time)
	}
	m.bell.ringers[id.Host] = now
	o := rx.open[i]
	if rx.seq == o.seq {
		rx.seq = o.prev
		rx.open = slices.Delete(rx.open, i, i+1)
	} else {
		o.done = true // a later message was taken: this one is gone
	}
	m.lastActive = now
	m.settle(now, id.Host, uint16(id.Origin), rx)
	return nil
}

// Unacked returns the ids of deliveries awaiting an Ack.
func (m *Machine) Unacked() []MsgID {
	var ids []MsgID
	for _, pp := range m.peers {
		for o16, rx := range pp.rx {
			for _, o := range rx.open {
				if !o.done {
					ids = append(ids, MsgID{Host: pp.id, Origin: fullOrigin(pp.gen, o16), Seq: o.seq})
				}
			}
		}
	}
	return ids
}

// settle advances the cumulative ack past the decided messages at the
// front of rx.open and writes it to our table.
func (m *Machine) settle(now time.Time, host uint64, o16 uint16, rx *rxState) {
	moved := false
	for len(rx.open) > 0 && rx.open[0].done {
		o := rx.open[0]
		rx.open = rx.open[1:]
		if o.status != leader.StatusNone {
			rx.acked, rx.status, moved = o.seq, o.status, true
		}
	}
	if moved {
		m.setAck(now, host, o16, rx.acked, rx.status)
	}
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
	// The reply may use the reserved seqs: no caller can have used them.
	seq, err := m.nextSeq(0, true)
	if err != nil {
		seq = leader.MaxSeq // only privileged sends got this far: reuse the last
	}
	m.lastSeq = seq
	reply := &outMsg{
		Message: Message{Targets: []uint64{d.From}, TargetGeneration: d.FromGen, Code: leader.EventResetting, HasData: true},
		origin:  m.cfg.Generation, seq: seq, reply: true, queuedAt: now, deadline: now.Add(100 * 365 * 24 * time.Hour),
		targets: []*target{{id: d.From, gen: d.FromGen}},
	}
	m.reset = &resetState{first: r, reply: reply}
	m.cur = reply
	m.changed()
}
