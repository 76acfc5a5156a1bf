package hostmsg

import (
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Observe takes one read: the host sectors read, any subset of the area
// (ours included; it is skipped). It delivers new messages addressed to us,
// records acks for our message, and finishes sends.
func (m *Machine) Observe(now time.Time, peers []Peer) {
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
