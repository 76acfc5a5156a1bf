package main

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"time"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// The message mix (issue 9, "Scale proof"): on one area with every host
// id joined,
//   - fan-in: fanSenders hosts send to one target at the same moment
//     (many hosts reporting to one manager); the next round starts once
//     every one of them is acked, after a cool-down;
//   - multicast: one host sends one message to mcTargets hosts (a proxy
//     fencing many hosts); again after every target acked and a cool-down;
//   - random pairs: a pool of hosts; at random moments (Poisson, pairRate
//     per second) a random sender sends to a random receiver;
//   - idle: everyone else.
//
// Every message is sent cold: the sender and each receiver have been
// quiet (no send, delivery or result) for at least coolDown, so that the
// receiver polls its doorbell at the idle rate, not the fast one.

// coolDown is the least quiet before a sample (issue 9: "message sent
// after ≥ 10 s of quiet").
const coolDown = 10 * time.Second

// class names a kind of traffic.
type class string

const (
	classFanIn     class = "fan-in"
	classMulticast class = "multicast"
	classPair      class = "pair"
)

// mixConfig sizes the mix.
type mixConfig struct {
	fanSenders int
	mcTargets  int
	pairPool   int
	pairRate   float64 // messages per second, Poisson
	window     time.Duration
	drain      time.Duration // most time to let the last messages finish
}

// groups assigns host ids to the traffic classes.
type groups struct {
	fanTarget  uint64
	fanSenders []uint64
	mcSender   uint64
	mcTargets  []uint64
	pairs      []uint64
	idle       []uint64
}

// assign picks the groups at random among ids 1..n (the mix's sizes
// shrink to fit a small area: multicast targets and the pair pool share
// what the fan-in leaves).
func assign(n int, mc *mixConfig, rng *rand.Rand) (groups, error) {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	rng.Shuffle(n, func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	need := 1 + mc.fanSenders + 1
	if n < need+4 {
		return groups{}, fmt.Errorf("%d hosts: too few for %d fan-in senders, a multicast and pairs", n, mc.fanSenders)
	}
	left := n - need
	mc.mcTargets = min(mc.mcTargets, left*3/5)
	mc.pairPool = min(mc.pairPool, left-mc.mcTargets)
	var g groups
	take := func(k int) []uint64 {
		out := slices.Clone(ids[:k])
		ids = ids[k:]
		slices.Sort(out)
		return out
	}
	g.fanTarget = take(1)[0]
	g.fanSenders = take(mc.fanSenders)
	g.mcSender = take(1)[0]
	g.mcTargets = take(mc.mcTargets)
	g.pairs = take(mc.pairPool)
	g.idle = take(len(ids))
	return g, nil
}

// msgKey identifies a message.
type msgKey struct{ from, seq uint64 }

// sent is one message sent by the mix.
type sent struct {
	class     class
	at        time.Time
	targets   []uint64
	delivered map[uint64]time.Time
	done      bool
}

// mix drives the traffic and records what happened.
type mix struct {
	s   *sim
	cfg mixConfig
	g   groups
	rng *rand.Rand

	msgs       map[msgKey]*sent
	lastActive []time.Time // by host id - 1
	pending    []int       // sends not finished, by host id - 1
	actions    actionQueue
	stopAt     time.Time // no new traffic from then on
	// atStart and atEnd are every host's I/O counters at the start and
	// the end of the window; scans0 and scans1 the scans.
	atStart, atEnd []ioCount
	scans0, scans1 int64
	outstand       int // messages sent and not finished

	fanLeft int // fan-in sends of the current round not finished
	mcBusy  bool

	oneWay   map[class][]time.Duration // per delivery
	acked    map[class][]time.Duration // per target: send to its ack seen by the sender
	allAcked map[class][]time.Duration // per message: send to its last target's ack
	dups     int
	failures []string
	native   int
	skipped  int // pair arrivals that found no quiet pair
	sentN    map[class]int
}

// action is something the mix does at a time.
type action struct {
	at time.Time
	f  func()
}

type actionQueue []action

func (q actionQueue) Len() int           { return len(q) }
func (q actionQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q actionQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *actionQueue) Push(x any)        { *q = append(*q, x.(action)) }
func (q *actionQueue) Pop() any          { old := *q; a := old[len(old)-1]; *q = old[:len(old)-1]; return a }
func (m *mix) at(t time.Time, f func())  { heap.Push(&m.actions, action{t, f}) }
func (m *mix) jitter(d time.Duration) time.Duration {
	return time.Duration(m.rng.Int63n(int64(d)))
}

func newMix(s *sim, cfg mixConfig, g groups, rng *rand.Rand) *mix {
	n := len(s.hosts)
	m := &mix{s: s, cfg: cfg, g: g, rng: rng, msgs: map[msgKey]*sent{},
		lastActive: make([]time.Time, n), pending: make([]int, n),
		oneWay: map[class][]time.Duration{}, acked: map[class][]time.Duration{}, allAcked: map[class][]time.Duration{},
		sentN: map[class]int{}}
	s.onReady = m.ready
	return m
}

// ready records what a host's machine produced.
func (m *mix) ready(h *host, now time.Time, rd hostmsg.Ready) {
	for _, d := range rd.Deliveries {
		m.lastActive[h.id-1] = now
		if d.Native {
			m.native++
			continue
		}
		msg := m.msgs[msgKey{d.From, d.Seq}]
		if msg == nil {
			m.failures = append(m.failures, fmt.Sprintf("host %d got %d:%d, which the mix never sent", h.id, d.From, d.Seq))
			continue
		}
		if _, ok := msg.delivered[h.id]; ok {
			m.dups++
			continue
		}
		msg.delivered[h.id] = d.At
		m.oneWay[msg.class] = append(m.oneWay[msg.class], d.At.Sub(msg.at))
	}
	for _, r := range rd.Results {
		m.lastActive[h.id-1] = now
		m.pending[h.id-1]--
		msg := m.msgs[msgKey{h.id, r.Seq}]
		if msg == nil {
			m.failures = append(m.failures, fmt.Sprintf("host %d: result for seq %d, which the mix never sent", h.id, r.Seq))
			continue
		}
		msg.done = true
		m.outstand--
		if err := r.Err(); err != nil {
			m.failures = append(m.failures, err.Error())
		}
		for _, t := range r.Targets {
			if t.OK() {
				m.acked[msg.class] = append(m.acked[msg.class], t.At.Sub(msg.at))
			}
			if _, ok := msg.delivered[t.HostID]; !ok && t.Outcome == hostmsg.OutcomeAcked {
				m.failures = append(m.failures, fmt.Sprintf("%d:%d acked by host %d before it was delivered there", h.id, r.Seq, t.HostID))
			}
		}
		m.allAcked[msg.class] = append(m.allAcked[msg.class], r.DoneAt.Sub(msg.at))
		switch msg.class {
		case classFanIn:
			if m.fanLeft--; m.fanLeft == 0 {
				m.at(now.Add(coolDown+m.jitter(3*time.Second)), m.fanRound)
			}
		case classMulticast:
			m.mcBusy = false
			m.at(now.Add(coolDown+m.jitter(3*time.Second)), m.multicast)
		}
	}
}

// send sends code USER0 from host from to targets.
func (m *mix) send(c class, from uint64, targets []uint64) {
	now := m.s.clk.Now()
	seq, err := m.s.send(m.s.host(from), hostmsg.Message{Targets: targets, Code: leader.EventUser0})
	if err != nil {
		m.failures = append(m.failures, fmt.Sprintf("host %d: send: %v", from, err))
		return
	}
	m.msgs[msgKey{from, seq}] = &sent{class: c, at: now, targets: targets, delivered: map[uint64]time.Time{}}
	m.lastActive[from-1] = now
	m.pending[from-1]++
	m.outstand++
	m.sentN[c]++
}

// quiet reports whether host id has been quiet for coolDown.
func (m *mix) quiet(id uint64, now time.Time) bool {
	return m.pending[id-1] == 0 && !now.Before(m.lastActive[id-1].Add(coolDown))
}

// fanRound: every fan-in sender sends to the target at once.
func (m *mix) fanRound() {
	now := m.s.clk.Now()
	if !now.Before(m.stopAt) {
		return
	}
	m.fanLeft = len(m.g.fanSenders)
	for _, id := range m.g.fanSenders {
		m.send(classFanIn, id, []uint64{m.g.fanTarget})
	}
}

// multicast: one message to every multicast target.
func (m *mix) multicast() {
	if now := m.s.clk.Now(); !now.Before(m.stopAt) {
		return
	}
	m.mcBusy = true
	m.send(classMulticast, m.g.mcSender, m.g.mcTargets)
}

// pairArrival sends between a random quiet pair of the pool and schedules
// the next arrival.
func (m *mix) pairArrival() {
	now := m.s.clk.Now()
	if !now.Before(m.stopAt) || len(m.g.pairs) < 2 || m.cfg.pairRate <= 0 {
		return
	}
	defer m.at(now.Add(time.Duration(m.rng.ExpFloat64()/m.cfg.pairRate*float64(time.Second))), m.pairArrival)
	for try := 0; try < 20; try++ {
		a := m.g.pairs[m.rng.Intn(len(m.g.pairs))]
		b := m.g.pairs[m.rng.Intn(len(m.g.pairs))]
		if a != b && m.quiet(a, now) && m.quiet(b, now) {
			m.send(classPair, a, []uint64{b})
			return
		}
	}
	m.skipped++
}

// run runs the mix for cfg.window, then lets the messages in flight
// finish (at most cfg.drain). It returns the window.
func (m *mix) run() (from, to time.Time, err error) {
	s := m.s
	from = s.clk.Now()
	m.atStart, m.scans0 = s.counts(), scans(s)
	m.stopAt = from.Add(m.cfg.window)
	for i := range m.lastActive {
		m.lastActive[i] = from.Add(-coolDown)
	}
	m.at(from.Add(m.jitter(3*time.Second)), m.fanRound)
	m.at(from.Add(m.jitter(3*time.Second)), m.multicast)
	m.at(from.Add(m.jitter(time.Second)), m.pairArrival)
	limit := func(end time.Time) func() time.Time {
		return func() time.Time {
			if len(m.actions) > 0 && m.actions[0].at.Before(end) {
				return m.actions[0].at
			}
			return end
		}
	}
	for s.clk.Now().Before(m.stopAt) {
		if err := s.run(limit(m.stopAt)); err != nil {
			return from, to, err
		}
		for len(m.actions) > 0 && !m.actions[0].at.After(s.clk.Now()) {
			heap.Pop(&m.actions).(action).f()
		}
	}
	to = s.clk.Now()
	m.atEnd, m.scans1 = s.counts(), scans(s)
	end := to.Add(m.cfg.drain)
	for m.outstand > 0 && s.clk.Now().Before(end) {
		if err := s.runFor(100 * time.Millisecond); err != nil {
			return from, to, err
		}
	}
	if m.outstand > 0 {
		m.failures = append(m.failures, fmt.Sprintf("%d messages still unfinished %v after the window", m.outstand, m.cfg.drain))
	}
	// Every message reached every target once.
	for k, msg := range m.msgs {
		if len(msg.delivered) != len(msg.targets) {
			m.failures = append(m.failures, fmt.Sprintf("%d:%d (%s) delivered to %d of %d targets", k.from, k.seq, msg.class, len(msg.delivered), len(msg.targets)))
		}
	}
	return from, to, nil
}

// scans returns the reads of the used area between renewals, over every
// host, so far.
func scans(s *sim) int64 {
	var n int64
	for _, h := range s.hosts {
		n += h.ls.Status().Doorbell.Scans
	}
	return n
}

// percentile returns the p-th percentile (0..100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(len(s)-1, k))]
}

// expectedIdle is the idle read rate of a host (bytes per second) from the
// loop's rules: renewals read host ids 1..highest+8, the whole area every
// fourth; one doorbell sector every poll interval.
func expectedIdle(geo leader.Geometry, io time.Duration, highest int, poll time.Duration) float64 {
	ri := delta.NewTimeouts(io, 0).RenewalInterval().Seconds()
	used := float64(min(highest+8, geo.MaxHosts)) * float64(geo.SectorSize)
	r := (float64(geo.MaxHosts*geo.SectorSize) + 3*used) / 4 / ri
	if poll > 0 {
		r += float64(geo.SectorSize) / poll.Seconds()
	}
	return r
}
