package hostmsg

import (
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

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
