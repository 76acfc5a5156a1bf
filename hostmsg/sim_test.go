package hostmsg

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// sim is a cluster of simulated hosts sharing one in-memory lockspace:
// every host polls the area on its own schedule, runs its Machine (or, for
// a plain sanlock host, sanlock's event rules) and writes its sector.
// Time is simulated; nothing sleeps.
type sim struct {
	rng   *rand.Rand
	t0    time.Time
	now   time.Time
	ss    int
	io    time.Duration
	disk  map[uint64][]byte // host id -> sector as on disk
	hosts map[uint64]*simHost
	log   []string
	// faults
	failWrites float64 // probability a write fails (nothing written)
	tornWrites float64 // probability a write is torn (half written, fails)
	lostReads  float64 // probability a poll read fails
	sent       map[msgKey]sentMsg
	bells      *bells // doorbells (sim_doorbell_test.go); nil: every poll reads the area
}

type msgKey struct {
	from, fromGen, seq uint64
}

type sentMsg struct {
	targets []uint64
	tgen    uint64
	code    uint64
}

type simHost struct {
	id       uint64
	gen      uint64
	name     string
	alive    bool
	native   bool // plain sanlock: no extension, no acks
	m        *Machine
	hosts    *delta.Hosts
	ts       uint64
	nextPoll time.Time
	nextRen  time.Time
	poll     time.Duration
	rec      leader.Record // last record written
	// per incarnation (gen) deliveries and results
	delivered map[uint64][]Delivery
	results   map[uint64][]Result // per incarnation
	resets    []Reset
	listeners int
	// native host state
	event   Payload
	bitTime time.Time
	sendErr []string
	db      *dbHost // doorbell mode
}

func newSim(seed int64, ss int) *sim {
	t0 := time.Unix(1_000_000, 0)
	return &sim{rng: rand.New(rand.NewSource(seed)), t0: t0, now: t0, ss: ss, io: time.Second,
		disk: map[uint64][]byte{}, hosts: map[uint64]*simHost{}, sent: map[msgKey]sentMsg{}}
}

func (s *sim) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf("%8.3fs ", s.now.Sub(s.t0).Seconds())+fmt.Sprintf(format, args...))
}

func (s *sim) timeouts() delta.Timeouts { return delta.NewTimeouts(s.io, 60*time.Second) }

// join starts (or restarts) host id with a new generation.
func (s *sim) join(id uint64, native bool) *simHost {
	h := s.hosts[id]
	var gen uint64 = 1
	if h != nil {
		gen = h.gen + 1
	} else {
		h = &simHost{id: id, delivered: map[uint64][]Delivery{}, results: map[uint64][]Result{}, listeners: 1}
		s.hosts[id] = h
	}
	h.gen, h.alive, h.native = gen, true, native
	h.name = fmt.Sprintf("host%d", id)
	h.hosts = delta.NewHosts(id, "LS", s.timeouts())
	h.poll = 100*time.Millisecond + time.Duration(s.rng.Intn(40))*time.Millisecond
	h.nextPoll = s.now.Add(time.Duration(s.rng.Intn(100)) * time.Millisecond)
	h.nextRen = s.now.Add(s.timeouts().RenewalInterval())
	h.event, h.bitTime = Payload{}, time.Time{}
	if !native {
		cfg := Config{HostID: id, Generation: gen, SectorSize: s.ss, MaxHosts: 2000, CanReset: true}
		if s.bells != nil {
			cfg.Doorbells = s.bells.d
		}
		m, err := New(cfg)
		if err != nil {
			panic(err)
		}
		m.SetListeners(h.listeners)
		h.m = m
	} else {
		h.m = nil
	}
	h.rec = leader.Record{Magic: leader.Magic, Version: leader.Version, Flags: leader.FlagAlign1M,
		SectorSize: uint32(s.ss), MaxHosts: 1, OwnerID: id, OwnerGeneration: gen, IOTimeout: 1}
	copy(h.rec.SpaceName[:], "LS")
	copy(h.rec.ResourceName[:], h.name)
	h.ts += 100
	s.write(h, Payload{Ext: s.extFor(h)}, true)
	if s.bells != nil && !native {
		s.joinDB(h)
	}
	s.logf("join %d gen %d native=%v", id, gen, native)
	return h
}

func (s *sim) extFor(h *simHost) *leader.Extension {
	if h.native {
		return nil
	}
	return &leader.Extension{Version: leader.ExtVersion}
}

// write puts h's sector on disk; faults may drop or tear it.
func (s *sim) write(h *simHost, p Payload, reliable bool) error {
	r := h.rec
	h.ts++
	r.Timestamp = h.ts
	r.WriteID, r.WriteGeneration, r.WriteTimestamp = p.WriteID, p.WriteGeneration, p.WriteTimestamp
	sec := leader.Sector{Record: r, Bitmap: p.Bitmap, Ext: p.Ext}
	sec.Seal()
	buf := make([]byte, s.ss)
	if err := sec.Encode(buf); err != nil {
		panic(err)
	}
	if !reliable {
		x := s.rng.Float64()
		if x < s.failWrites {
			return fmt.Errorf("sim: write failed")
		}
		if x < s.failWrites+s.tornWrites {
			old := s.disk[h.id]
			if old == nil {
				old = make([]byte, s.ss)
			}
			torn := append([]byte(nil), old...)
			copy(torn[len(torn)/2:], buf[len(buf)/2:]) // second half new, first half old
			s.disk[h.id] = torn
			return fmt.Errorf("sim: torn write")
		}
	}
	s.disk[h.id] = buf
	h.rec = r
	return nil
}

// read decodes every sector and returns the peers as host h sees them.
func (s *sim) read(h *simHost) []Peer {
	ids := make([]uint64, 0, len(s.disk))
	for id := range s.disk {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	peers := make([]Peer, 0, len(ids))
	for _, id := range ids {
		sec, err := leader.DecodeSector(s.disk[id])
		if err != nil {
			panic(err)
		}
		h.hosts.Observe(s.now, id, &sec)
		st := PeerState(h.hosts.State(s.now, id))
		bad := sec.Record.Verify("LS") != nil
		peers = append(peers, Peer{HostID: id, Sector: &sec, State: st, Bad: bad})
	}
	return peers
}

// step runs host h's poll (and renewal if due).
func (s *sim) step(h *simHost) {
	if s.bells != nil && !h.native {
		s.stepDB(h)
		return
	}
	h.nextPoll = s.now.Add(h.poll)
	renew := !s.now.Before(h.nextRen)
	if renew {
		h.nextRen = s.now.Add(s.timeouts().RenewalInterval())
	}
	if h.native {
		s.stepNative(h, renew)
		return
	}
	if s.rng.Float64() < s.lostReads {
		h.m.Tick(s.now)
		s.collect(h)
		return
	}
	peers := s.read(h)
	h.m.Observe(s.now, peers)
	s.collect(h)
	p, urgent := h.m.Payload(s.now)
	if !urgent && !renew {
		return
	}
	err := s.write(h, p, false)
	h.m.Written(s.now, err)
}

func (s *sim) collect(h *simHost) {
	rd := h.m.Ready()
	for _, d := range rd.Deliveries {
		h.delivered[h.gen] = append(h.delivered[h.gen], d)
		s.logf("host %d got %s", h.id, fmtDelivery(d))
	}
	for _, r := range rd.Results {
		h.results[h.gen] = append(h.results[h.gen], r)
		s.logf("host %d send seq %d done: %s", h.id, r.Seq, r.String())
	}
	if rd.Reset != nil {
		h.resets = append(h.resets, *rd.Reset)
		s.logf("host %d RESET: %s", h.id, rd.Reset)
	}
}

// stepNative emulates a plain sanlock daemon: it renews on schedule with
// its single event slot, keeps the bit set for set_bitmap_seconds, and
// delivers on every sender timestamp change while its bit is set.
func (s *sim) stepNative(h *simHost, renew bool) {
	if !renew {
		return
	}
	peers := s.read(h)
	for _, p := range peers {
		if p.HostID == h.id || p.Bad || !p.Sector.Bitmap.Test(h.id) || p.Sector.Record.WriteGeneration == 0 {
			continue
		}
		info := h.hosts.Info(p.HostID)
		if !info.LastLive.Equal(s.now) {
			continue // sanlock only fires when the triple changed
		}
		r := p.Sector.Record
		d := Delivery{From: p.HostID, FromGen: r.OwnerGeneration, TargetGeneration: r.WriteID, Code: r.WriteGeneration,
			Data: r.WriteTimestamp, Native: true, At: s.now}
		h.delivered[h.gen] = append(h.delivered[h.gen], d)
		s.logf("host %d (sanlock) got %s", h.id, fmtDelivery(d))
	}
	p := h.event
	if !h.bitTime.IsZero() && s.now.Sub(h.bitTime) > s.timeouts().SetBitmap() {
		p.Bitmap = leader.Bitmap{}
		h.event.Bitmap = leader.Bitmap{}
	}
	_ = s.write(h, p, true)
}

// setEvent is `sanlock client set_event` on a plain sanlock host.
func (s *sim) setEvent(h *simHost, to uint64, gen, code, data uint64) {
	h.event = Payload{WriteID: gen, WriteGeneration: code, WriteTimestamp: data}
	h.event.Bitmap.Set(to)
	h.bitTime = s.now
	s.logf("host %d (sanlock) set_event to %d code %#x data %d", h.id, to, code, data)
}

// run advances simulated time by d, stepping hosts in time order.
func (s *sim) run(d time.Duration) {
	end := s.now.Add(d)
	for {
		var next *simHost
		for _, h := range s.hosts {
			if !h.alive {
				continue
			}
			if next == nil || h.nextPoll.Before(next.nextPoll) || (h.nextPoll.Equal(next.nextPoll) && h.id < next.id) {
				next = h
			}
		}
		if next == nil || next.nextPoll.After(end) {
			break
		}
		s.now = next.nextPoll
		s.step(next)
	}
	s.now = end
}

// quiet runs until no machine is busy (max limit).
func (s *sim) quiet(limit time.Duration) bool {
	end := s.now.Add(limit)
	for s.now.Before(end) {
		s.run(500 * time.Millisecond)
		busy := false
		for _, h := range s.hosts {
			if h.alive && h.m != nil && (h.m.Pending() > 0 || h.m.HasReady()) {
				busy = true
			}
		}
		if !busy {
			return true
		}
	}
	return false
}

func (s *sim) send(h *simHost, msg Message) (uint64, error) {
	seq, err := h.m.Send(s.now, msg)
	if err != nil {
		s.logf("host %d send to %v: %v", h.id, msg.Targets, err)
		return 0, err
	}
	s.sent[msgKey{h.id, h.gen, seq}] = sentMsg{targets: msg.Targets, tgen: msg.TargetGeneration, code: msg.Code}
	if h.db != nil {
		h.nextPoll = s.now // the daemon wakes its loop on a send
	}
	s.logf("host %d send seq %d to %v code %s", h.id, seq, msg.Targets, strings.Join(leader.CodeNames(msg.Code), ","))
	return seq, nil
}

func (s *sim) kill(h *simHost) {
	h.alive = false
	s.logf("host %d killed", h.id)
}

func fmtDelivery(d Delivery) string {
	src := fmt.Sprintf("%d/%d", d.From, d.FromGen)
	if d.Native {
		return fmt.Sprintf("event from %s code %s data %d (native) status %s", src, strings.Join(leader.CodeNames(d.Code), ","), d.Data, d.Status)
	}
	return fmt.Sprintf("seq %d from %s code %s data %d status %s", d.Seq, src, strings.Join(leader.CodeNames(d.Code), ","), d.Data, d.Status)
}
