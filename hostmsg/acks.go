package hostmsg

import (
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// ensureAck makes sure our ack table holds an entry for the source and
// origin covering seq (it may have been evicted before the sender saw
// it).
func (m *Machine) ensureAck(now time.Time, host uint64, o16 uint16, seq uint64, st leader.AckStatus) {
	for _, e := range m.acks {
		if e.ack.HostID == host && e.ack.Gen16 == o16 && e.ack.Seq >= seq {
			return
		}
	}
	m.setAck(now, host, o16, seq, st)
}

// setAck records an ack in our table: it replaces the source's entry
// (whatever its origin: a sender needs one origin's ack from us at a
// time), else takes a free slot, else evicts an entry the sender no
// longer needs, or else the oldest one that has been on disk for
// AckHold. If every entry is still needed the ack waits (ensureAck
// retries it). Entries that leave the table for another origin or host
// are reported in Ready.Forgotten.
func (m *Machine) setAck(now time.Time, host uint64, o16 uint16, seq uint64, st leader.AckStatus) {
	a := leader.Ack{HostID: host, Gen16: o16, Status: st, Seq: seq}
	for _, e := range m.acks {
		if e.ack.HostID == host {
			if e.ack.Gen16 != o16 {
				m.ready.Forgotten = append(m.ready.Forgotten, e.ack)
			}
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
	m.ready.Forgotten = append(m.ready.Forgotten, victim.ack)
	victim.ack, victim.written = a, time.Time{}
	m.changed()
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
