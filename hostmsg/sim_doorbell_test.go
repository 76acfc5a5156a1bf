package hostmsg

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// bells are the doorbell sectors of a simulated area, and the faults of
// ring writes. With doorbells, sanlock-msg hosts run the way the delta
// loop does: a full read and a write at each renewal, a read of their own
// doorbell every poll, the reads their Plan asks for, and rings after
// their writes.
type bells struct {
	d       int // number of doorbells
	sectors map[int][]byte
	lost    float64 // probability a ring write is lost (nothing written)
	torn    float64 // probability a ring write is torn (half written)
	poll    time.Duration
	// scanEvery bounds scans between renewals, as the loop's read budget
	// does.
	scanEvery time.Duration
	verbose   bool // log reads too
}

// dbHost is a host's doorbell-mode schedule.
type dbHost struct {
	nextDB   time.Time
	lastDB   time.Time // last doorbell poll
	lastScan time.Time
	last     RingStats // logged so far
}

func (s *sim) enableDoorbells(d int) {
	s.bells = &bells{d: d, sectors: map[int][]byte{}, poll: 250 * time.Millisecond, scanEvery: time.Second}
}

// joinDB sets up host h's doorbell schedule at its join.
func (s *sim) joinDB(h *simHost) {
	h.db = &dbHost{nextDB: s.now.Add(time.Duration(s.rng.Intn(250)) * time.Millisecond)}
	h.nextPoll = s.now
}

func (s *sim) bellIndex(id uint64) int { return int((id - 1) % uint64(s.bells.d)) }

func (s *sim) bellSector(i int) []byte {
	b := s.bells.sectors[i]
	if b == nil {
		b = make([]byte, s.ss)
		s.bells.sectors[i] = b
	}
	return b
}

// stepDB runs one turn of host h in doorbell mode.
func (s *sim) stepDB(h *simHost) {
	now := s.now
	renew := !now.Before(h.nextRen)
	if renew {
		h.nextRen = now.Add(s.timeouts().RenewalInterval())
	}
	if !now.Before(h.db.nextDB) {
		h.db.lastDB = now
		h.db.nextDB = now.Add(s.bells.poll)
		if h.m.Plan(now).Fast {
			h.db.nextDB = now.Add(s.bells.poll / 5)
		}
		if s.rng.Float64() >= s.lostReads {
			db, err := leader.DecodeDoorbell(s.bellSector(s.bellIndex(h.id)))
			if err != nil {
				h.m.ObserveDoorbell(now, nil, err)
			} else {
				h.m.ObserveDoorbell(now, &db, nil)
			}
			s.logRings(h)
		}
	}
	plan := h.m.Plan(now)
	lost := s.rng.Float64() < s.lostReads
	switch {
	case (renew || (plan.Scan && now.Sub(h.db.lastScan) >= s.bells.scanEvery)) && !lost:
		if !renew {
			h.db.lastScan = now
			s.logf("host %d scans the area", h.id)
		}
		h.m.ObserveArea(now, s.read(h))
	case len(plan.Read) > 0 && !lost:
		if s.bells.verbose {
			s.logf("host %d reads %v", h.id, plan.Read)
		}
		h.m.Observe(now, s.readIDs(h, plan.Read))
	default:
		h.m.Tick(now)
	}
	s.collect(h)
	if !lost {
		p, urgent := h.m.Payload(now)
		if urgent || renew {
			err := s.write(h, p, false)
			h.m.Written(now, err)
		}
	}
	s.ring(h, h.m.Plan(now).Ring)
	plan = h.m.Plan(now)
	if plan.Fast && h.db.lastDB.Add(s.bells.poll/5).Before(h.db.nextDB) {
		// A conversation started: poll the doorbell five times as often.
		h.db.nextDB = h.db.lastDB.Add(s.bells.poll / 5)
	}
	next := h.nextRen
	if h.db.nextDB.Before(next) {
		next = h.db.nextDB
	}
	if !plan.Next.IsZero() && plan.Next.Before(next) {
		next = plan.Next
	}
	if len(plan.Read) > 0 || len(plan.Ring) > 0 {
		// Due but not done (a read was lost): retry soon.
		next = now.Add(50 * time.Millisecond)
	}
	h.nextPoll = next
	if !h.nextPoll.After(now) {
		h.nextPoll = now.Add(time.Millisecond)
	}
}

// readIDs reads the sectors of ids, as a targeted read.
func (s *sim) readIDs(h *simHost, ids []uint64) []Peer {
	peers := make([]Peer, 0, len(ids))
	for _, id := range ids {
		b := s.disk[id]
		if b == nil {
			b = make([]byte, s.ss)
		}
		sec, err := leader.DecodeSector(b)
		if err != nil {
			panic(err)
		}
		h.hosts.Observe(s.now, id, &sec)
		st := PeerState(h.hosts.State(s.now, id))
		peers = append(peers, Peer{HostID: id, Sector: &sec, State: st, Bad: sec.Record.Verify("LS") != nil})
	}
	return peers
}

// ring rings the doorbells of targets, one read-modify-write per doorbell,
// as the delta loop does.
func (s *sim) ring(h *simHost, targets []uint64) {
	byBell := map[int][]uint64{}
	var order []int
	for _, t := range targets {
		i := s.bellIndex(t)
		if byBell[i] == nil {
			order = append(order, i)
		}
		byBell[i] = append(byBell[i], t)
	}
	slices.Sort(order)
	for _, i := range order {
		ts := byBell[i]
		var mask uint64
		for _, t := range ts {
			mask |= 1 << ((t - 1) / uint64(s.bells.d))
		}
		cur := s.bellSector(i)
		db, err := leader.DecodeDoorbell(cur)
		if errors.Is(err, leader.ErrNotDoorbell) {
			s.logf("host %d refuses to ring %v: %v", h.id, ts, err)
			h.m.Rang(s.now, ts, err)
			continue
		}
		if err != nil {
			s.logf("host %d recreates doorbell %d", h.id, i)
			db = leader.Doorbell{}
		}
		db.Add(h.id, uint16(h.gen), mask, uint32(1+s.rng.Intn(1<<30)), leader.DoorbellCapacity(s.ss))
		buf := make([]byte, s.ss)
		if err := db.Encode(buf); err != nil {
			panic(err)
		}
		x := s.rng.Float64()
		switch {
		case x < s.bells.lost:
			err = fmt.Errorf("sim: ring lost")
		case x < s.bells.lost+s.bells.torn:
			copy(cur[len(cur)/2:], buf[len(buf)/2:])
			err = fmt.Errorf("sim: ring torn")
		default:
			copy(cur, buf)
		}
		if err != nil {
			s.logf("host %d rings %v: %v", h.id, ts, err)
		} else {
			s.logf("host %d rings %v", h.id, ts)
		}
		h.m.Rang(s.now, ts, err)
	}
}

// logRings logs what h's doorbell told it since the last log.
func (s *sim) logRings(h *simHost) {
	st := h.m.RingStats()
	if n := st.RingsReceived - h.db.last.RingsReceived; n > 0 {
		s.logf("host %d doorbell: %d new ring(s)", h.id, n)
	}
	if st.Gaps > h.db.last.Gaps {
		s.logf("host %d doorbell: rings lost, scan wanted", h.id)
	}
	if st.BadDoorbell > h.db.last.BadDoorbell {
		s.logf("host %d doorbell: bad, ignored", h.id)
	}
	h.db.last = st
}

// damageBell damages host id's doorbell: "corrupt" flips a byte past the
// zero prefix, "foreign" puts a sanlock magic in bytes 0..3, "zero" zeroes
// it (as an init would).
func (s *sim) damageBell(id uint64, how string) error {
	b := s.bellSector(s.bellIndex(id))
	switch how {
	case "corrupt":
		b[40] ^= 0x10
	case "foreign":
		copy(b, []byte{0x10, 0x20, 0x21, 0x12})
	case "zero":
		clear(b)
	default:
		return fmt.Errorf("unknown damage %q", how)
	}
	s.logf("doorbell of host %d: %s", id, how)
	return nil
}
