package hostmsg

import (
	"fmt"
	"slices"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Send queues a message and returns its seq (its origin is our
// generation). The message goes to disk at the next write once every
// earlier message to the same targets has finished; its Result comes out
// of Ready.
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
	o := &outMsg{Message: msg, origin: m.cfg.Generation, queuedAt: now, unackable: msg.Code&leader.EventSeqData != 0,
		held: msg.Hold}
	for _, id := range targets {
		if err := m.checkTarget(id); err != nil {
			return 0, err
		}
		p := m.peers[id]
		if m.start.IsZero() {
			// Nothing read yet (we just joined): the target's state is
			// not known; the send ends like any other if it is not live.
			// A message for the target's current generation must wait for
			// the first read.
			if o.CurrentGeneration && o.TargetGeneration == 0 {
				return 0, fmt.Errorf("%w: host %d: its generation is not known yet (the lockspace was just joined); retry", ErrTargetNotLive, id)
			}
			o.targets = append(o.targets, &target{id: id})
			continue
		}
		if p == nil || p.state == 0 || (p.state != PeerLive && p.state != PeerUnknown) {
			state := "never seen"
			if p != nil && p.state != 0 {
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
	seq, err := m.nextSeq(msg.Seq, msg.Privileged)
	if err != nil {
		return 0, err
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
	m.enqueue(now, o)
	return seq, nil
}

// checkTarget checks a target host id.
func (m *Machine) checkTarget(id uint64) error {
	if id == m.cfg.HostID {
		return fmt.Errorf("%w (host %d)", ErrSelf, id)
	}
	if id < 1 || id > uint64(m.cfg.MaxHosts) {
		return fmt.Errorf("%w: %d, valid 1..%d", ErrTargetRange, id, m.cfg.MaxHosts)
	}
	return nil
}

// nextSeq returns the seq for a send: the caller's (want, if non-zero),
// which must be above the last one by at most SeqWindow, or the next one.
// Only privileged sends may use the top SeqReserve seqs.
func (m *Machine) nextSeq(want uint64, privileged bool) (uint64, error) {
	limit := uint64(leader.MaxSeq - SeqReserve)
	if privileged {
		limit = leader.MaxSeq
	}
	seq := want
	switch {
	case seq == 0:
		seq = m.lastSeq + 1
	case seq <= m.lastSeq:
		return 0, fmt.Errorf("%w: %d <= %d", ErrSeq, seq, m.lastSeq)
	case seq-m.lastSeq > m.cfg.SeqWindow:
		return 0, fmt.Errorf("%w: %d is more than %d above the last one, %d", ErrSeqWindow, seq, m.cfg.SeqWindow, m.lastSeq)
	}
	if seq > limit {
		return 0, fmt.Errorf("%w: seq %d is above %d (the rest is reserved for resets and replies); leave and rejoin the lockspace to start over",
			ErrSeqExhausted, seq, limit)
	}
	return seq, nil
}

// enqueue adds o to the outbox in queue order.
func (m *Machine) enqueue(now time.Time, o *outMsg) {
	m.orders++
	o.order = m.orders
	m.outbox = append(m.outbox, o)
	m.lastActive = now
	m.promote(now)
}

// Commit lets a message sent with Hold go to disk.
func (m *Machine) Commit(now time.Time, seq uint64) error {
	for _, o := range m.outbox {
		if o.held && o.seq == seq && o.origin == m.cfg.Generation {
			o.held = false
			m.promote(now)
			return nil
		}
	}
	return fmt.Errorf("%w: held seq %d", ErrUnknown, seq)
}

// Abandon drops a message sent with Hold, without a Result.
func (m *Machine) Abandon(now time.Time, seq uint64) {
	m.outbox = slices.DeleteFunc(m.outbox, func(o *outMsg) bool {
		return o.held && o.seq == seq && o.origin == m.cfg.Generation
	})
	m.promote(now)
}

// Resend queues messages that an earlier incarnation of ours accepted and
// did not finish, under their original identity, in the order given and
// ahead of any later Send. Receivers recognise a message they already
// processed and only ack it again. The targets need not be live: a target
// that is DEAD, left or never shows up ends the message as it would any
// other. Results carry the original Origin and Seq.
func (m *Machine) Resend(now time.Time, msgs []Resent) error {
	if m.reset != nil {
		return ErrResetting
	}
	for _, r := range msgs {
		if r.Origin == 0 || r.Origin >= m.cfg.Generation {
			return fmt.Errorf("%w: %d, we are generation %d", ErrOrigin, r.Origin, m.cfg.Generation)
		}
		if r.Seq == 0 || r.Seq > leader.MaxSeq || r.Code == 0 {
			return fmt.Errorf("hostmsg: resend %d:%d: seq or code out of range", r.Origin, r.Seq)
		}
		targets := slices.Clone(r.Targets)
		slices.Sort(targets)
		targets = slices.Compact(targets)
		if len(targets) == 0 {
			return fmt.Errorf("hostmsg: resend %d:%d: %w", r.Origin, r.Seq, ErrNoTarget)
		}
		for _, id := range targets {
			if err := m.checkTarget(id); err != nil {
				return fmt.Errorf("hostmsg: resend %d:%d: %w", r.Origin, r.Seq, err)
			}
		}
	}
	for _, r := range msgs {
		o := &outMsg{Message: r.Message, origin: r.Origin, seq: r.Seq, data: r.Data, queuedAt: r.QueuedAt,
			deadline: r.Deadline, unackable: r.Code&leader.EventSeqData != 0}
		o.Hold, o.Seq = false, r.Seq
		if o.deadline.IsZero() {
			o.deadline = now.Add(m.cfg.SendTimeout)
		}
		if !r.HasData {
			o.data = r.Seq
		}
		targets := slices.Clone(r.Targets)
		slices.Sort(targets)
		for _, id := range slices.Compact(targets) {
			o.targets = append(o.targets, &target{id: id})
		}
		if r.Expired {
			m.expired = append(m.expired, o)
			continue
		}
		m.enqueue(now, o)
	}
	return nil
}

// settleExpired ends the expired resent messages from the acks just read:
// a target whose ack table acks the message took it before we died.
func (m *Machine) settleExpired(now time.Time) {
	for _, o := range m.expired {
		for _, t := range o.targets {
			p := m.peers[t.id]
			var a leader.Ack
			ok := false
			if p != nil && p.ext && !o.unackable {
				a, ok = p.ackFor(uint16(o.origin))
			}
			if p != nil {
				t.gen = p.gen
			}
			switch {
			case ok && a.Seq == o.seq:
				m.finishTarget(now, o, t, OutcomeAcked, a.Status)
			case ok && a.Seq > o.seq:
				m.finishTarget(now, o, t, OutcomeProcessed, 0)
			default:
				m.finishTarget(now, o, t, OutcomeTimeout, 0)
			}
		}
		m.finish(now, o)
	}
	m.expired = nil
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
	slices.SortFunc(cands, func(a, b *outMsg) int { return cmpSeq(a.order, b.order) })
	blocked := map[uint64]bool{}
	for _, o := range cands {
		free := !o.held
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

func (m *Machine) cancel(now time.Time, o *outMsg) {
	for _, t := range o.targets {
		if !t.done {
			m.finishTarget(now, o, t, OutcomeCancelled, 0)
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
	for _, o := range append(append(m.outbox, m.parked...), m.expired...) {
		m.cancel(now, o)
	}
	m.outbox, m.parked, m.expired = nil, nil, nil
	return m.Ready().Results
}

// progress advances our messages with what the last read showed, applies
// timeouts, parks a message whose targets all stopped renewing, and moves
// on to the next message.
func (m *Machine) progress(now time.Time) {
	// Queued and parked sends can end without being on disk (held ones
	// wait for Commit or Abandon, which come at once).
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
				m.finishTarget(now, o, t, OutcomeTimeout, 0)
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
	if len(m.ackWait) > 0 {
		m.fillAcks(now)
	}
}

// expire ends the messages in list that are not on disk but whose targets
// died or left, or whose deadline passed, and returns the others.
func (m *Machine) expire(now time.Time, list []*outMsg, checkTargets bool) []*outMsg {
	kept := list[:0]
	for _, o := range list {
		if o.held {
			kept = append(kept, o)
			continue
		}
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
					m.finishTarget(now, o, t, out, 0)
					continue
				}
			}
			if !now.Before(o.deadline) {
				m.finishTarget(now, o, t, OutcomeTimeout, 0)
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
		m.finishTarget(now, o, t, OutcomeDead, 0)
		return
	case PeerFree:
		m.finishTarget(now, o, t, OutcomeLeft, 0)
		return
	}
	if o.TargetGeneration != 0 && p.gen != o.TargetGeneration {
		m.finishTarget(now, o, t, OutcomeRestarted, 0)
		return
	}
	if p.gen != t.gen {
		// Any incarnation will do: wait for the new one (or the first
		// one seen, for a resent message).
		t.gen, t.renewals, t.lastTS = p.gen, 0, p.ts
	}
	if o.sentAt.IsZero() {
		return
	}
	if p.holding {
		t.heldBack = true
	}
	if p.ext && !o.unackable {
		if a, ok := p.ackFor(uint16(o.origin)); ok && a.Seq == o.seq {
			m.finishTarget(now, o, t, OutcomeAcked, a.Status)
		} else if ok && a.Seq > o.seq {
			m.finishTarget(now, o, t, OutcomeProcessed, 0)
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
		m.finishTarget(now, o, t, OutcomeUnacked, 0)
	}
}

func (m *Machine) finishTarget(now time.Time, o *outMsg, t *target, out Outcome, st leader.AckStatus) {
	t.done = true
	t.res = TargetResult{HostID: t.id, Generation: t.gen, Outcome: out, Status: st, At: now, HeldBack: t.heldBack}
	if p := m.peers[t.id]; p != nil && out != OutcomeRestarted {
		t.res.Generation = p.gen
	}
	if !o.reply {
		m.ready.TargetsDone = append(m.ready.TargetsDone, TargetDone{Origin: o.origin, Seq: o.seq, Target: t.res})
	}
	m.changed() // the target's bit goes away
}

// finish reports a send whose targets are all done.
func (m *Machine) finish(now time.Time, o *outMsg) {
	if o.reply {
		return
	}
	r := Result{Origin: o.origin, Seq: o.seq, Code: o.Code, Data: o.data, QueuedAt: o.queuedAt, SentAt: o.firstSent, DoneAt: now}
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
