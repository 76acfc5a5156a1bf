package hostmsg

import (
	"slices"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Doorbells (docs/format.md, leader/doorbell.go) let a receiver find a
// message addressed to it without reading every sender's sector, and a
// sender find its ack without reading the whole area. The machine decides
// what to read and ring; the driver does the I/O and budgets it:
//
//   - ObserveDoorbell takes our own doorbell sector as just read. The rings
//     in it that name us and were not in the last read put their ringers in
//     Plan.Read, to be read at once. A doorbell whose counter moved further
//     than the entries it holds (rings were pushed out or overwritten) or
//     that was recreated (a new epoch) asks for one read of the whole used
//     area (Plan.Scan), which the driver does within its read budget or at
//     its next renewal (ObserveArea). The first good read after the join
//     only sets the baseline: the driver's first read is a full scan.
//   - Once our message is on disk (Written), Plan.Ring names every target
//     that runs sanlock-msg (its sector carries our marker); plain sanlock
//     hosts do not read doorbells and are served by their renewals. A ring
//     is a hint: while a target has not acked, it is rung again after
//     max(RingRetry, 2·P) stretched by up to RingJitter (by default half:
//     senders whose rings collided do not collide again), then after
//     twice that, and so on, each interval capped at the target's renewal
//     interval (P is the doorbell poll interval, SetPollInterval: peers of
//     one area poll about as often). A lost ring costs latency, never
//     correctness: renewals read every sender's sector anyway.
//   - While a target's ack is missing, Plan.Read names it 50 and 100 ms,
//     P/2, P and 3P/2 after each ring (a target that cannot ack, once, 3P/2
//     after each ring, to see it renew), so a waiting sender reads a few
//     sectors per awaited target and receiver poll, never the whole area.
//   - An ack that had to wait for an entry of our full ack table (a
//     fan-in: more senders than entries) rings its sender's doorbell once
//     it is on disk, so that the sender reads it while it is there.
//   - For a while after a message was sent or delivered (ActiveWindow, and
//     at least 4·P), Plan.Fast asks the driver to poll our doorbell five
//     times as often: a conversation's next message is found within P/5.
//
// Observe accepts any subset of host sectors (a targeted read); a peer that
// is not in a read keeps what was last seen of it.

// Plan is the I/O the machine wants besides the driver's renewal reads and
// the writes of our own sector. It is a pure function of the machine's
// state and the time: calling Plan twice gives the same answer, and it
// moves on when the driver reports what it did (Observe, ObserveArea,
// Rang).
type Plan struct {
	// Read lists the host ids whose sectors should be read now, sorted:
	// hosts that rang our doorbell, and targets on their waiting schedule.
	Read []uint64
	// Scan asks for one read of the whole used part of the area, as soon
	// as the read budget allows; a renewal read (ObserveArea) satisfies it.
	Scan bool
	// Ring lists the targets whose doorbells should be rung now, sorted;
	// report each doorbell written (or not) with Rang.
	Ring []uint64
	// Next is when Plan will ask for something new by itself (a scheduled
	// read or ring); zero if nothing is scheduled.
	Next time.Time
	// Fast asks the driver to poll our doorbell more often (P/5): a
	// message was sent or delivered within ActiveWindow.
	Fast bool
}

// Empty reports whether the plan asks for nothing now.
func (p *Plan) Empty() bool { return len(p.Read) == 0 && !p.Scan && len(p.Ring) == 0 }

// RingStats counts the doorbell side of a Machine.
type RingStats struct {
	RingsSent     int64 // targets rung: one per target in each doorbell written
	RingFailures  int64 // targets whose ring could not be written
	RingsReceived int64 // ring entries naming us, new since the last read
	BadDoorbell   int64 // reads of our doorbell that failed its checks: ignored
	Gaps          int64 // doorbells that lost rings or were recreated: a scan was asked for
	Scans         int64 // area reads that answered such a request
}

// DefaultPollInterval is the doorbell poll interval the machine assumes
// until the driver tells it (SetPollInterval).
const DefaultPollInterval = 250 * time.Millisecond

// ackReads returns when, after a ring, a sender reads a target that acks:
// a receiver finds the ring at its next doorbell poll (within P, P/5 in a
// conversation), reads our sector and writes its ack at once.
func ackReads(p time.Duration) []time.Duration {
	var offs []time.Duration
	for _, d := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, p / 2, p, 3 * p / 2} {
		if len(offs) == 0 || d >= offs[len(offs)-1]+25*time.Millisecond {
			offs = append(offs, d)
		}
	}
	return offs
}

// noAckReads returns when a sender reads a target that cannot ack (plain
// sanlock, or a SEQ_DATA message): only to see it renew.
func noAckReads(p time.Duration) []time.Duration { return []time.Duration{3 * p / 2} }

// bellState is the receive side of our doorbell.
type bellState struct {
	slot    int  // our bit in our doorbell's target masks
	read    bool // a good read set the baseline
	epoch   uint32
	counter uint64
	last    []leader.Ring // entries of the last good read
	// ringers are hosts whose ring named us, with when it was seen: their
	// sectors are due.
	ringers map[uint64]time.Time
	scan    bool      // a scan is asked for
	scanAt  time.Time // since when
	poll    time.Duration
	stats   RingStats
}

// SetPollInterval tells the machine how often the driver polls our
// doorbell when idle (P): rings, waiting reads and Plan.Fast scale with it.
func (m *Machine) SetPollInterval(d time.Duration) {
	if d > 0 {
		m.bell.poll = d
	}
}

// pollInterval returns P.
func (m *Machine) pollInterval() time.Duration {
	if m.bell.poll > 0 {
		return m.bell.poll
	}
	return DefaultPollInterval
}

// RingStats returns the doorbell counters.
func (m *Machine) RingStats() RingStats { return m.bell.stats }

// ObserveDoorbell takes our doorbell sector as just read: db decoded by
// leader.DecodeDoorbell, or err if it failed (a torn or corrupt doorbell,
// or a sector that is not a doorbell). A bad doorbell is counted and
// ignored: nothing in it is acted on.
func (m *Machine) ObserveDoorbell(now time.Time, db *leader.Doorbell, err error) {
	if m.cfg.Doorbells == 0 {
		return
	}
	b := &m.bell
	if err != nil || db == nil {
		b.stats.BadDoorbell++
		return
	}
	if !b.read {
		b.read, b.epoch, b.counter, b.last = true, db.Epoch, db.Counter, slices.Clone(db.Rings)
		return
	}
	var fresh []leader.Ring
	gap := false
	switch {
	case db.Epoch == 0:
		// Zeroed (an init over the area): no rings to act on.
	case db.Epoch == b.epoch || b.epoch == 0:
		// The same doorbell, or the first write of one that was empty.
		for _, r := range db.Rings {
			if !slices.Contains(b.last, r) {
				fresh = append(fresh, r)
			}
		}
		last := b.counter
		if b.epoch != db.Epoch {
			last = 0
		}
		_, gap = db.Since(last, b.slot, leader.DoorbellCapacity(m.cfg.SectorSize))
	default:
		// Recreated over a bad sector: what it held before is lost.
		fresh, gap = db.Rings, true
	}
	for _, r := range fresh {
		if r.Mask&(1<<uint(b.slot)) == 0 || r.From == m.cfg.HostID || r.From < 1 || r.From > uint64(m.cfg.MaxHosts) {
			continue
		}
		b.stats.RingsReceived++
		if _, ok := b.ringers[r.From]; !ok {
			if b.ringers == nil {
				b.ringers = make(map[uint64]time.Time)
			}
			b.ringers[r.From] = now
		}
	}
	if gap {
		b.stats.Gaps++
		if !b.scan {
			b.scan, b.scanAt = true, now
		}
	}
	b.epoch, b.counter, b.last = db.Epoch, db.Counter, append(b.last[:0], db.Rings...)
}

// ObserveArea is Observe for a read of the whole used part of the area (a
// renewal read or a scan): it also answers Plan.Scan.
func (m *Machine) ObserveArea(now time.Time, peers []Peer) {
	if b := &m.bell; b.scan && !now.Before(b.scanAt) {
		b.scan = false
		b.stats.Scans++
	}
	m.Observe(now, peers)
}

// seen notes that host id's sector was just read: a planned read of it is
// done.
func (m *Machine) seen(now time.Time, id uint64) {
	if at, ok := m.bell.ringers[id]; ok && !now.Before(at) {
		delete(m.bell.ringers, id)
	}
}

// Rang reports a doorbell written (err nil) or not, for the targets it
// rang. Either way they are rung again only at their next retry.
func (m *Machine) Rang(now time.Time, targets []uint64, err error) {
	if err != nil {
		m.bell.stats.RingFailures += int64(len(targets))
	} else {
		m.bell.stats.RingsSent += int64(len(targets))
	}
	m.rangAcks(targets)
	if m.cur == nil {
		return
	}
	for _, t := range m.cur.targets {
		if slices.Contains(targets, t.id) {
			t.rangAt = now
		}
	}
}

// Plan returns the reads and rings the machine wants now (see Plan).
func (m *Machine) Plan(now time.Time) Plan {
	var p Plan
	b := &m.bell
	for id := range b.ringers {
		p.Read = append(p.Read, id)
	}
	p.Scan = b.scan
	if m.cfg.Doorbells > 0 && now.Sub(m.lastActive) < max(m.cfg.ActiveWindow, 4*m.pollInterval()) {
		p.Fast = true
	}
	if o := m.cur; o != nil && !o.sentAt.IsZero() {
		for _, t := range o.targets {
			if !t.done {
				m.planTarget(now, o, t, &p)
			}
		}
	}
	m.planHeld(now, &p)
	if t := m.ackWaitNext(); !t.IsZero() {
		p.later(t)
	}
	p.Ring = append(p.Ring, m.ackRings()...)
	slices.Sort(p.Read)
	p.Read = slices.Compact(p.Read)
	slices.Sort(p.Ring)
	p.Ring = slices.Compact(p.Ring)
	return p
}

// planTarget adds target t of our message o to p: a ring if one is due,
// a read if its schedule says so, and when the next of either comes.
func (m *Machine) planTarget(now time.Time, o *outMsg, t *target, p *Plan) {
	pp := m.peers[t.id]
	io := time.Second
	if pp != nil && pp.io > 0 {
		io = time.Duration(pp.io) * time.Second
	}
	poll := m.pollInterval()
	first := max(m.cfg.RingRetry, 2*poll)
	if j := m.cfg.RingJitter; j > 0 {
		first += time.Duration(float64(first) * j * ringJitter(m.cfg.HostID, t.id, o.seq))
	}
	a := attempts{start: o.sentAt, first: first, cap: 2*io + 500*time.Millisecond}
	_, begin, next := a.at(now)
	ringable := m.cfg.Doorbells > 0 && pp != nil && pp.ours && (pp.state == PeerLive || pp.state == PeerUnknown)
	if ringable {
		if t.rangAt.Before(begin) {
			p.Ring = append(p.Ring, t.id)
		}
		p.later(next)
	}
	offs := noAckReads(poll)
	if pp != nil && pp.ours && !o.unackable {
		offs = ackReads(poll)
	}
	var observed time.Time
	if pp != nil {
		observed = pp.observed
	}
	if r := a.nextRead(observed, offs); !r.After(now) {
		p.Read = append(p.Read, t.id)
	} else {
		p.later(r)
	}
}

// planHeld reads again the senders whose message we left on their disk
// (no listener room, or no listener yet within the grace after the join)
// as soon as it can be taken: their rings were consumed, so only a re-ring
// or a renewal would find it otherwise.
func (m *Machine) planHeld(now time.Time, p *Plan) {
	if len(m.heldBy) == 0 {
		return
	}
	switch {
	case m.listeners == 0 && m.cfg.ListenerGrace > 0 && now.Sub(m.start) < m.cfg.ListenerGrace:
		p.later(m.start.Add(m.cfg.ListenerGrace))
	case m.listeners > 0 && m.room == 0:
		// The driver updates the room (SetRoom) before its next Plan.
	default:
		for id := range m.heldBy {
			p.Read = append(p.Read, id)
		}
	}
}

// later moves p.Next to t if t comes first.
func (p *Plan) later(t time.Time) {
	if p.Next.IsZero() || t.Before(p.Next) {
		p.Next = t
	}
}

// ringJitter returns a fraction in [0, 1) of Config.RingJitter that
// stretches the ring schedule of one message to one target: senders that
// rang one doorbell at the same moment (a fan-in), and overwrote each
// other's rings, do not ring again all at the same moment. It is a hash, not a random number, so
// that the machine stays deterministic.
func ringJitter(self, target, seq uint64) float64 {
	x := self*0x9e3779b97f4a7c15 ^ target*0xbf58476d1ce4e5b9 ^ seq*0x94d049bb133111eb
	x ^= x >> 31
	x *= 0xd6e8feb8a3b1c2d5
	x ^= x >> 29
	return float64(x>>11) / float64(1<<53)
}

// attempts is a target's ring schedule: attempt 0 when the message reached
// the disk, then intervals of first, 2·first, 4·first... each capped at cap.
type attempts struct {
	start      time.Time
	first, cap time.Duration
}

// at returns the attempt under way at t: its index, when it began, and
// when the next one begins.
func (a attempts) at(t time.Time) (k int, begin, next time.Time) {
	d := max(t.Sub(a.start), 0)
	var b time.Duration
	inc := max(a.first, time.Millisecond)
	for inc < a.cap {
		if d < b+inc {
			return k, a.start.Add(b), a.start.Add(b + inc)
		}
		b += inc
		inc *= 2
		k++
	}
	n := (d - b) / a.cap
	b += n * a.cap
	return k + int(n), a.start.Add(b), a.start.Add(b + a.cap)
}

// nextRead returns the first read of the schedule after time after: the
// offsets from the beginning of each attempt that fall before the next
// (or, if none does, the middle of the attempt).
func (a attempts) nextRead(after time.Time, offs []time.Duration) time.Time {
	_, begin, next := a.at(after)
	for {
		fits := false
		for _, off := range offs {
			r := begin.Add(off)
			if !r.Before(next) {
				break
			}
			fits = true
			if r.After(after) {
				return r
			}
		}
		if r := begin.Add(next.Sub(begin) / 2); !fits && r.After(after) {
			return r
		}
		_, begin, next = a.at(next)
	}
}
