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

// msgKey is a message's identity: sender, origin generation, seq.
type msgKey struct {
	from, origin, seq uint64
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

	// durable: the host keeps a durable outbox and receive marks, as the
	// daemon does in its state directory, and its next incarnation
	// resends what is unfinished.
	durable bool
	journal []*simJournal
	handed  []MsgID
	forgot  []leader.Ack
	// manual: deliveries wait for an explicit ack (a manual-ack listener).
	manual  bool
	unacked []MsgID
	grace   time.Duration
	room    int
	// failWrites makes every write of this host fail (nothing written).
	failWrites bool
	// memory holds, per incarnation that was killed, the acks its next
	// incarnation could inherit.
	memory map[uint64][]leader.Ack
	db     *dbHost // doorbell mode
}

// simJournal is one message of a durable outbox.
type simJournal struct {
	key      msgKey
	msg      Message
	queued   time.Time
	deadline time.Time
	done     map[uint64]bool // targets finished
	finished bool
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

// join starts (or restarts) host id with a new generation. Like the
// daemon's acquire, it carries forward the ack table its previous
// incarnation left in its sector; a durable host also resends its
// unfinished messages.
func (s *sim) join(id uint64, native bool) *simHost {
	h := s.hosts[id]
	var gen uint64 = 1
	if h != nil {
		gen = h.gen + 1
	} else {
		h = &simHost{id: id, delivered: map[uint64][]Delivery{}, results: map[uint64][]Result{}, listeners: 1,
			grace: -1, room: -1}
		s.hosts[id] = h
	}
	var inherited []leader.Ack
	if old, ok := s.disk[id]; ok && !native {
		if sec, err := leader.DecodeSector(old); err == nil && sec.Ext != nil {
			inherited = sec.Ext.Acks
		}
	}
	h.gen, h.alive, h.native = gen, true, native
	h.unacked = nil
	h.name = fmt.Sprintf("host%d", id)
	h.hosts = delta.NewHosts(id, "LS", s.timeouts())
	h.poll = 100*time.Millisecond + time.Duration(s.rng.Intn(40))*time.Millisecond
	h.nextPoll = s.now.Add(time.Duration(s.rng.Intn(100)) * time.Millisecond)
	h.nextRen = s.now.Add(s.timeouts().RenewalInterval())
	h.event, h.bitTime = Payload{}, time.Time{}
	if !native {
		cfg := Config{HostID: id, Generation: gen, SectorSize: s.ss, MaxHosts: 2000, CanReset: true,
			ListenerGrace: h.grace, Inherited: inherited}
		if h.durable {
			cfg.Remembered, cfg.Handed = h.forgot, h.handed
		}
		if s.bells != nil {
			cfg.Doorbells = s.bells.d
		}
		m, err := New(cfg)
		if err != nil {
			panic(err)
		}
		m.SetListeners(h.listeners)
		m.SetRoom(h.room)
		h.m = m
	} else {
		h.m = nil
	}
	h.rec = leader.Record{Magic: leader.Magic, Version: leader.Version, Flags: leader.FlagAlign1M,
		SectorSize: uint32(s.ss), MaxHosts: 1, OwnerID: id, OwnerGeneration: gen, IOTimeout: 1}
	copy(h.rec.SpaceName[:], "LS")
	copy(h.rec.ResourceName[:], h.name)
	h.ts += 100
	ext := s.extFor(h)
	if ext != nil {
		ext.Acks = inherited
	}
	s.write(h, Payload{Ext: ext}, true)
	if s.bells != nil && !native {
		s.joinDB(h)
	}
	s.logf("join %d gen %d native=%v", id, gen, native)
	if h.durable && !native {
		s.resend(h)
	}
	return h
}

// resend queues a durable host's unfinished messages again, as the daemon
// does from its journal after a join; those whose deadline passed end
// "timeout" without being sent.
func (s *sim) resend(h *simHost) {
	var rs []Resent
	for _, j := range h.journal {
		if j.finished {
			continue
		}
		r := Resent{Message: j.msg, Origin: j.key.origin, Seq: j.key.seq, QueuedAt: j.queued, Deadline: j.deadline,
			Expired: !s.now.Before(j.deadline)}
		r.Targets = nil
		for _, t := range j.msg.Targets {
			if !j.done[t] {
				r.Targets = append(r.Targets, t)
			}
		}
		r.HasData = true
		rs = append(rs, r)
		if r.Expired {
			s.logf("host %d message %d:%d:%d timed out while down: settled from the acks on disk", h.id, j.key.from, j.key.origin, j.key.seq)
		} else {
			s.logf("host %d resends %d:%d:%d to %v", h.id, j.key.from, j.key.origin, j.key.seq, r.Targets)
		}
	}
	if err := h.m.Resend(s.now, rs); err != nil {
		panic(err)
	}
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
	if !reliable && h.failWrites {
		return fmt.Errorf("sim: write failed")
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
		if h.durable && !d.Native {
			h.handed = append(h.handed, d.ID())
		}
		if !d.AwaitsAck {
			continue
		}
		if h.manual {
			h.unacked = append(h.unacked, d.ID())
		} else if err := h.m.Ack(s.now, d.ID(), leader.StatusDelivered); err != nil {
			panic(err)
		}
	}
	for _, td := range rd.TargetsDone {
		if j := h.find(msgKey{h.id, td.Origin, td.Seq}); j != nil {
			j.done[td.Target.HostID] = true
		}
	}
	for _, r := range rd.Results {
		h.results[h.gen] = append(h.results[h.gen], r)
		if r.Origin == h.gen {
			s.logf("host %d send seq %d done: %s", h.id, r.Seq, r.String())
		} else {
			s.logf("host %d send id %d:%d:%d done: %s", h.id, h.id, r.Origin, r.Seq, r.String())
		}
		if j := h.find(msgKey{h.id, r.Origin, r.Seq}); j != nil {
			for _, t := range r.Targets {
				j.done[t.HostID] = true
			}
			j.finished = true
		}
	}
	if h.durable {
		h.forgot = append(h.forgot, rd.Forgotten...)
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
	k := msgKey{h.id, h.gen, seq}
	s.sent[k] = sentMsg{targets: msg.Targets, tgen: msg.TargetGeneration, code: msg.Code}
	if h.db != nil {
		h.nextPoll = s.now // the daemon wakes its loop on a send
	}
	s.logf("host %d send seq %d to %v code %s", h.id, seq, msg.Targets, strings.Join(leader.CodeNames(msg.Code), ","))
	if h.durable {
		timeout := msg.Timeout
		if timeout == 0 {
			timeout = h.m.Config().SendTimeout
		}
		jm := msg
		if !jm.HasData {
			jm.Data, jm.HasData = seq, true
		}
		if jm.TargetGeneration == 0 && jm.CurrentGeneration && len(jm.Targets) == 1 {
			jm.TargetGeneration = s.hosts[jm.Targets[0]].gen
		}
		h.journal = append(h.journal, &simJournal{key: k, msg: jm, queued: s.now, deadline: s.now.Add(timeout),
			done: map[uint64]bool{}})
	}
	return seq, nil
}

// find returns the journal entry of message k.
func (h *simHost) find(k msgKey) *simJournal {
	for _, j := range h.journal {
		if j.key == k {
			return j
		}
	}
	return nil
}

func (s *sim) kill(h *simHost) {
	h.alive = false
	// What the next incarnation can know of this one: the ack table on
	// disk, and for a durable host the entries it kept beyond it.
	var mem []leader.Ack
	if sec, err := leader.DecodeSector(s.disk[h.id]); err == nil && sec.Ext != nil {
		mem = append(mem, sec.Ext.Acks...)
	}
	if h.durable {
		mem = append(mem, h.forgot...)
	}
	if h.memory == nil {
		h.memory = map[uint64][]leader.Ack{}
	}
	h.memory[h.gen] = mem
	s.logf("host %d killed", h.id)
}

func fmtDelivery(d Delivery) string {
	src := fmt.Sprintf("%d/%d", d.From, d.FromGen)
	if d.Native {
		return fmt.Sprintf("event from %s code %s data %d (native) status %s", src, strings.Join(leader.CodeNames(d.Code), ","), d.Data, d.Status)
	}
	id := fmt.Sprintf("seq %d", d.Seq)
	if d.Origin != d.FromGen {
		id = "id " + d.ID().String()
	}
	extra := ""
	if d.Redelivered {
		extra += " REDELIVERED"
	}
	return fmt.Sprintf("%s from %s code %s data %d status %s%s", id, src, strings.Join(leader.CodeNames(d.Code), ","), d.Data, d.Status, extra)
}
