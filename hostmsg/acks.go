package hostmsg

import (
	"slices"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// ensureAck makes sure our ack table holds an entry for the source and
// origin covering seq (it may have been evicted before the sender saw
// it).
func (m *Machine) ensureAck(now time.Time, host uint64, o16 uint16, seq uint64, st leader.AckStatus) {
	if !m.ackCovered(host, o16, seq) {
		m.setAck(now, host, o16, seq, st)
	}
}

// ackCovered reports whether our ack table holds an entry for the source
// and origin covering seq.
func (m *Machine) ackCovered(host uint64, o16 uint16, seq uint64) bool {
	for _, e := range m.acks {
		if e.ack.HostID == host && e.ack.Gen16 == o16 && e.ack.Seq >= seq {
			return true
		}
	}
	return false
}

// setAck records an ack in our table: it replaces the source's entry
// (whatever its origin: a sender needs one origin's ack from us at a
// time), else takes a free slot, else evicts an entry the sender no
// longer needs, or else the oldest one that has been on disk for
// AckHold. If every entry is still needed the ack waits in the wait list
// (first come, first placed), and takes the first entry that can be
// evicted (fillAcks); once on disk, its sender's doorbell is rung: its
// own reading schedule may be over by then. Entries that leave the table
// for another origin or host are reported in Ready.Forgotten.
func (m *Machine) setAck(now time.Time, host uint64, o16 uint16, seq uint64, st leader.AckStatus) {
	a := leader.Ack{HostID: host, Gen16: o16, Status: st, Seq: seq}
	if !m.placeAck(now, a, false) {
		for _, w := range m.ackWait {
			if w.HostID == host {
				*w = a
				return
			}
		}
		m.stats.AckDeferred++
		m.ackWait = append(m.ackWait, &a)
	}
}

// placeAck puts a in our table if it can (see setAck); waited says it
// comes from the wait list, so its sender is rung once it is on disk.
func (m *Machine) placeAck(now time.Time, a leader.Ack, waited bool) bool {
	for _, e := range m.acks {
		if e.ack.HostID == a.HostID {
			if e.ack.Gen16 != a.Gen16 {
				m.ready.Forgotten = append(m.ready.Forgotten, e.ack)
			}
			e.ack, e.written, e.ring = a, time.Time{}, waited
			m.changed()
			return true
		}
	}
	if len(m.acks) < leader.AckCapacity(m.cfg.SectorSize) {
		m.acks = append(m.acks, &ackEntry{ack: a, ring: waited})
		m.changed()
		return true
	}
	victim := m.ackVictim(now)
	if victim == nil {
		return false
	}
	m.stats.AckEvictions++
	m.ready.Forgotten = append(m.ready.Forgotten, victim.ack)
	victim.ack, victim.written, victim.ring = a, time.Time{}, waited
	m.changed()
	return true
}

// ackVictim returns the entry of a full table that a new ack may take: one
// whose sender no longer needs it, else the oldest one on disk for
// AckHold; nil if none.
func (m *Machine) ackVictim(now time.Time) *ackEntry {
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
	return victim
}

// fillAcks places waiting acks, first come first, while the table has
// room for them.
func (m *Machine) fillAcks(now time.Time) {
	n := 0
	for _, a := range m.ackWait {
		if !m.ackWanted(a) {
			continue // a later ack replaced it, or its sender left
		}
		if n == 0 && m.placeAck(now, *a, true) {
			continue
		}
		m.ackWait[n] = a
		n++
	}
	clear(m.ackWait[n:])
	m.ackWait = m.ackWait[:n]
}

// ackWanted reports whether a waiting ack is still to be written: its
// sender is alive, and the table holds no entry covering it.
func (m *Machine) ackWanted(a *leader.Ack) bool {
	if p := m.peers[a.HostID]; p == nil || p.state == PeerDead || p.state == PeerFree {
		return false
	}
	return !m.ackCovered(a.HostID, a.Gen16, a.Seq)
}

// ackWaitNext returns when the first waiting ack can take an entry (the
// oldest entry reaches AckHold on disk), or zero if none waits or no
// entry is on disk yet (a write comes first, and then Plan asks again).
func (m *Machine) ackWaitNext() time.Time {
	if len(m.ackWait) == 0 {
		return time.Time{}
	}
	var at time.Time
	for _, e := range m.acks {
		if e.written.IsZero() {
			continue
		}
		if t := e.written.Add(m.cfg.AckHold); at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at
}

// ackRings returns the senders to ring because an ack that waited is on
// disk now.
func (m *Machine) ackRings() []uint64 {
	var ids []uint64
	for _, e := range m.acks {
		if e.ring && !e.written.IsZero() {
			if p := m.peers[e.ack.HostID]; p != nil && p.ours && m.cfg.Doorbells > 0 {
				ids = append(ids, e.ack.HostID)
			}
		}
	}
	return ids
}

// rangAcks notes that the senders in targets were rung (or that ringing
// failed: rings are hints, and the sender's own schedule remains).
func (m *Machine) rangAcks(targets []uint64) {
	for _, e := range m.acks {
		if e.ring && !e.written.IsZero() && slices.Contains(targets, e.ack.HostID) {
			e.ring = false
		}
	}
}

// ackNeeded reports whether the sender of entry e may still be waiting for
// it: its current message is addressed to us and covered by e.
func (m *Machine) ackNeeded(e *ackEntry) bool {
	p := m.peers[e.ack.HostID]
	if p == nil || p.state == PeerDead || p.state == PeerFree {
		return false
	}
	return p.addrSeq != 0 && p.addrOrigin == e.ack.Gen16 && p.addrSeq <= e.ack.Seq
}
