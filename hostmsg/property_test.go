package hostmsg

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// TestRandomRuns drives thousands of messages through randomly built
// clusters with failing, torn and lost I/O, crashes, restarts, corrupted
// sectors and plain sanlock peers, and checks the protocol's promises:
//
//   - every message is delivered at most once per receiver incarnation,
//     in seq order per sender incarnation, only to its targets, and never
//     to an incarnation it did not name;
//   - every send of a sender that stays up ends with exactly one result;
//   - an ack "delivered" means the receiver really delivered it;
//   - without faults, every send to a live sanlock-msg host succeeds.
func TestRandomRuns(t *testing.T) {
	seeds := 400
	if testing.Short() {
		seeds = 60
	}
	msgs := 0
	for seed := int64(1); seed <= int64(seeds); seed++ {
		msgs += randomRun(t, seed)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d seeds, %d messages", seeds, msgs)
}

func randomRun(t *testing.T, seed int64) int { return randomRunWith(t, seed, nil) }

// randomRunWith is randomRun; setup, if set, prepares the sim before the
// first join (doorbells).
func randomRunWith(t *testing.T, seed int64, setup func(s *sim, faulty bool)) int {
	ss := 512
	if seed%3 == 0 {
		ss = 4096
	}
	s := newSim(seed, ss)
	r := s.rng
	faulty := seed%2 == 0
	if faulty {
		s.failWrites = r.Float64() * 0.1
		s.tornWrites = r.Float64() * 0.05
		s.lostReads = r.Float64() * 0.1
	}
	if setup != nil {
		setup(s, faulty)
	}
	n := 2 + r.Intn(6)
	for id := 1; id <= n; id++ {
		native := faulty && id == n && r.Intn(3) == 0
		if !native {
			// Half the hosts keep a durable outbox and receive marks;
			// some wait for their listeners after a join; some listen
			// with manual acks.
			s.hosts[uint64(id)] = &simHost{id: uint64(id), delivered: map[uint64][]Delivery{}, results: map[uint64][]Result{},
				listeners: 1, grace: -1, room: -1, durable: r.Intn(2) == 0, manual: r.Intn(4) == 0}
			if r.Intn(3) == 0 {
				s.hosts[uint64(id)].grace = time.Duration(1+r.Intn(3)) * time.Second
			}
		}
		s.join(uint64(id), native)
	}
	s.run(3 * time.Second) // everyone sees everyone change: LIVE
	sends := 0
	for round := 0; round < 150; round++ {
		x := r.Float64()
		switch {
		case x < 0.70:
			if s.randomSend() {
				sends++
			}
		case x < 0.74 && faulty:
			if h := s.pick(func(h *simHost) bool { return h.alive }); h != nil && s.alive() > 2 {
				s.kill(h)
			}
		case x < 0.80 && faulty:
			if h := s.pick(func(h *simHost) bool { return !h.alive }); h != nil {
				s.join(h.id, h.native)
			}
		case x < 0.85 && faulty:
			if h := s.pick(func(h *simHost) bool { return h.alive && !h.native }); h != nil {
				b := s.disk[h.id]
				off := leader.OffExt + r.Intn(len(b)-leader.OffExt)
				if r.Intn(2) == 0 {
					off = r.Intn(leader.ChecksumLen)
				}
				b[off] ^= 0x10
				s.logf("corrupt host %d byte %d", h.id, off)
			}
		case x < 0.88:
			if h := s.pick(func(h *simHost) bool { return h.alive && h.native }); h != nil {
				if to := s.pick(func(o *simHost) bool { return o.alive && o.id != h.id }); to != nil {
					s.setEvent(h, to.id, 0, uint64(1+r.Intn(3))<<16, uint64(r.Intn(100)))
				}
			}
		case x < 0.90:
			if h := s.pick(func(h *simHost) bool { return h.alive && !h.native }); h != nil {
				h.listeners = 1 - h.listeners
				h.m.SetListeners(h.listeners)
			}
		case x < 0.92 && faulty:
			if h := s.pick(func(h *simHost) bool { return h.alive && !h.native }); h != nil {
				h.room = []int{-1, 0, 1}[r.Intn(3)]
				h.m.SetRoom(h.room)
			}
		case x < 0.93 && faulty && s.bells != nil:
			if h := s.pick(func(h *simHost) bool { return h.alive }); h != nil {
				_ = s.damageBell(h.id, []string{"corrupt", "corrupt", "zero", "foreign"}[r.Intn(4)])
			}
		}
		// Manual-ack listeners ack (or, in faulty runs, give back) what
		// they hold, now and then.
		for id := uint64(1); id <= uint64(len(s.hosts)); id++ {
			h := s.hosts[id]
			if !h.alive || len(h.unacked) == 0 || r.Intn(3) != 0 {
				continue
			}
			for _, id := range h.unacked {
				if faulty && r.Intn(4) == 0 {
					_ = h.m.Return(s.now, id)
				} else {
					_ = h.m.Ack(s.now, id, leader.StatusDelivered)
				}
			}
			h.unacked = nil
		}
		s.run(time.Duration(20+r.Intn(400)) * time.Millisecond)
	}
	// The end: listeners take everything, and dead durable hosts come back
	// to finish their outbox.
	for id := uint64(1); id <= uint64(len(s.hosts)); id++ {
		h := s.hosts[id]
		if h.native {
			continue
		}
		if !h.alive && h.durable {
			s.join(h.id, false)
		}
		if h.alive {
			h.manual = false
			for _, id := range h.unacked {
				_ = h.m.Ack(s.now, id, leader.StatusDelivered)
			}
			h.unacked = nil
			h.room = -1
			h.m.SetRoom(-1)
		}
	}
	if !s.quiet(10 * time.Minute) {
		t.Fatalf("seed %d: sends still pending after 10 simulated minutes\n%s", seed, s.tail())
	}
	s.check(t, seed, !faulty)
	return sends
}

func (s *sim) alive() int {
	n := 0
	for _, h := range s.hosts {
		if h.alive {
			n++
		}
	}
	return n
}

// pick returns a random host matching f, or nil.
func (s *sim) pick(f func(*simHost) bool) *simHost {
	var c []*simHost
	for id := uint64(1); id <= uint64(len(s.hosts)); id++ {
		if h := s.hosts[id]; h != nil && f(h) {
			c = append(c, h)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[s.rng.Intn(len(c))]
}

func (s *sim) randomSend() bool {
	r := s.rng
	from := s.pick(func(h *simHost) bool { return h.alive && !h.native })
	if from == nil {
		return false
	}
	var targets []uint64
	k := 1 + r.Intn(3)
	for i := 0; i < k; i++ {
		if to := s.pick(func(h *simHost) bool { return h.alive && h.id != from.id }); to != nil {
			targets = append(targets, to.id)
		}
	}
	if len(targets) == 0 {
		return false
	}
	msg := Message{Targets: targets, Code: uint64(1+r.Intn(15)) << 16}
	if r.Intn(10) == 0 {
		msg.Code |= leader.EventSeqData
	}
	if r.Intn(3) == 0 {
		msg.Data, msg.HasData = uint64(r.Intn(1000)), true
	}
	if len(targets) == 1 && r.Intn(5) == 0 {
		msg.TargetGeneration = s.hosts[targets[0]].gen
		if r.Intn(4) == 0 {
			msg.TargetGeneration++ // a stale or future generation: refused at once
		}
	}
	_, err := s.send(from, msg)
	return err == nil
}

func (s *sim) tail() string {
	if len(s.log) > 60 {
		return strings.Join(s.log[len(s.log)-60:], "\n")
	}
	return strings.Join(s.log, "\n")
}

func (s *sim) check(t *testing.T, seed int64, faultFree bool) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Fatalf("seed %d: %s\n%s", seed, fmt.Sprintf(format, args...), s.tail())
	}
	// Nothing duplicated: a receiver delivers a message again only if the
	// earlier delivery's ack never reached its disk (the documented crash
	// window), and then, if it keeps receive marks, flagged; within one
	// incarnation only when given back (flagged).
	for _, h := range s.hosts {
		if h.native {
			continue
		}
		seen := map[msgKey]uint64{} // message -> incarnation that delivered it
		for g := uint64(1); g <= h.gen; g++ {
			for _, d := range h.delivered[g] {
				if d.Native {
					continue
				}
				k := msgKey{d.From, d.Origin, d.Seq}
				prev, dup := seen[k]
				seen[k] = g
				switch {
				case !dup:
				case prev == g && !d.Redelivered:
					fail("host %d gen %d delivered %d:%d:%d twice, unflagged", h.id, g, k.from, k.origin, k.seq)
				case prev != g && covered(h.memory[g-1], k):
					fail("host %d gen %d delivered %d:%d:%d again, although its previous incarnation's acks covered it", h.id, g, k.from, k.origin, k.seq)
				case h.durable && !d.Redelivered:
					fail("host %d (durable) gen %d delivered %d:%d:%d again, unflagged (first in gen %d)", h.id, g, k.from, k.origin, k.seq, prev)
				case faultFree:
					fail("fault-free run: host %d delivered %d:%d:%d twice", h.id, k.from, k.origin, k.seq)
				}
			}
		}
	}
	// Nothing lost: every message a durable host accepted ended exactly
	// once, in whichever incarnation.
	for _, h := range s.hosts {
		if !h.durable {
			continue
		}
		ends := map[msgKey]int{}
		for _, rs := range h.results {
			for _, r := range rs {
				ends[msgKey{h.id, r.Origin, r.Seq}]++
			}
		}
		for _, j := range h.journal {
			if !j.finished {
				fail("host %d (durable): message %d:%d:%d never finished", h.id, j.key.from, j.key.origin, j.key.seq)
			}
			if n := ends[j.key]; n > 1 {
				fail("host %d (durable): message %d:%d:%d has %d results", h.id, j.key.from, j.key.origin, j.key.seq, n)
			}
		}
	}
	delivered := map[[4]uint64]bool{} // receiver, receiver gen, from, seq (for from's gen see below)
	for _, h := range s.hosts {
		for g, ds := range h.delivered {
			last := map[[2]uint64]uint64{}
			for _, d := range ds {
				if d.Native {
					if src := s.hosts[d.From]; !h.native && (src == nil || !src.native) {
						fail("host %d took a sanlock-msg sector for a plain sanlock event: %s", h.id, fmtDelivery(d))
					}
					continue
				}
				src := [2]uint64{d.From, d.Origin}
				if d.Seq < last[src] || (d.Seq == last[src] && !d.Redelivered) {
					fail("host %d gen %d got seq %d from %v after seq %d", h.id, g, d.Seq, src, last[src])
				}
				last[src] = d.Seq
				sm, ok := s.sent[msgKey{d.From, d.Origin, d.Seq}]
				if !ok {
					if d.Code != leader.EventResetting {
						fail("host %d got unknown message %s", h.id, fmtDelivery(d))
					}
					continue
				}
				addressed := false
				for _, to := range sm.targets {
					addressed = addressed || to == h.id
				}
				if !addressed || sm.code != d.Code {
					fail("host %d got %s, sent to %v code %#x", h.id, fmtDelivery(d), sm.targets, sm.code)
				}
				if sm.tgen != 0 && sm.tgen != g {
					fail("host %d gen %d got a message for gen %d", h.id, g, sm.tgen)
				}
				delivered[[4]uint64{h.id, g, d.From<<32 | d.Origin, d.Seq}] = true
			}
		}
	}
	for _, h := range s.hosts {
		if h.native {
			continue
		}
		for g, rs := range h.results {
			for _, r := range rs {
				for _, tr := range r.Targets {
					if tr.Outcome == OutcomeAcked && tr.Status == leader.StatusDelivered &&
						!deliveredByAny(delivered, tr.HostID, h.id<<32|r.Origin, r.Seq) {
						fail("host %d gen %d seq %d acked delivered by host %d gen %d, which never delivered it",
							h.id, g, r.Seq, tr.HostID, tr.Generation)
					}
				}
				for _, tr := range r.Targets {
					if faultFree && tr.Outcome != OutcomeAcked && tr.Outcome != OutcomeUnacked {
						fail("fault-free run: host %d seq %d: %v", h.id, r.Seq, tr)
					}
				}
			}
		}
		if !h.alive {
			continue
		}
		results := map[uint64]int{}
		for _, r := range h.results[h.gen] {
			if r.Origin == h.gen {
				results[r.Seq]++
			}
		}
		for k := range s.sent {
			if k.from != h.id || k.origin != h.gen {
				continue
			}
			if results[k.seq] != 1 {
				fail("host %d seq %d has %d results", h.id, k.seq, results[k.seq])
			}
		}
	}
}

// covered reports whether an ack in acks covers message k.
func covered(acks []leader.Ack, k msgKey) bool {
	for _, a := range acks {
		if a.HostID == k.from && a.Gen16 == uint16(k.origin) && a.Seq >= k.seq {
			return true
		}
	}
	return false
}

func deliveredByAny(d map[[4]uint64]bool, host, from, seq uint64) bool {
	for k := range d {
		if k[0] == host && k[2] == from && k[3] == seq {
			return true
		}
	}
	return false
}
