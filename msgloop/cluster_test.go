package msgloop_test

import (
	"context"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/msgloop"
)

// cluster is a deterministic simulation of sanlock-msg hosts: real
// lockspace loops (delta.Start, Step) with real message machines
// (msgloop.Messenger) on one in-memory device and one fake clock, stepped
// from this goroutine in time order. Nothing sleeps and nothing runs
// concurrently, so a run is exactly reproducible.
type cluster struct {
	t     testing.TB
	clk   *clock.Fake
	dev   *delta.MemDevice
	geo   leader.Geometry
	io    time.Duration
	t0    time.Time
	hosts map[uint64]*chost
}

// chost is one host of a cluster.
type chost struct {
	c      *cluster
	id     uint64
	ls     *delta.Lockspace
	m      *msgloop.Messenger
	rec    *recDevice
	next   time.Time
	again  bool // the last Step asked to run again at once
	got    []hostmsg.Delivery
	done   []hostmsg.Result
	failed error
}

// recDevice records every I/O a host makes, with the simulated time.
type recDevice struct {
	delta.Device
	clk clock.Clock
	mu  sync.Mutex
	ios []ioRec
}

type ioRec struct {
	at    time.Time
	write bool
	off   int64
	n     int
}

func (d *recDevice) ReadAt(p []byte, off int64) (int, error) {
	d.add(ioRec{at: d.clk.Now(), off: off, n: len(p)})
	return d.Device.ReadAt(p, off)
}

func (d *recDevice) WriteAt(p []byte, off int64) (int, error) {
	d.add(ioRec{at: d.clk.Now(), write: true, off: off, n: len(p)})
	return d.Device.WriteAt(p, off)
}

func (d *recDevice) add(r ioRec) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ios = append(d.ios, r)
}

// between returns the I/Os that started in [from, to).
func (d *recDevice) between(from, to time.Time) []ioRec {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []ioRec
	for _, r := range d.ios {
		if !r.at.Before(from) && r.at.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

func newCluster(t testing.TB, ss, align int, io time.Duration) *cluster {
	t.Helper()
	geo, err := leader.NewGeometry(ss, align)
	if err != nil {
		t.Fatal(err)
	}
	dev := delta.NewMemDevice(int64(align), ss)
	if err := delta.Init(context.Background(), delta.NewIO(dev, clock.Real{}),
		delta.InitOptions{Name: "LS", Geometry: geo, IOTimeout: io}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_000_000, 0)
	return &cluster{t: t, clk: clock.NewFake(t0), dev: dev, geo: geo, io: io, t0: t0, hosts: map[uint64]*chost{}}
}

// since returns the simulated time elapsed at at.
func (c *cluster) since(at time.Time) time.Duration { return at.Sub(c.t0) }

// join starts host id; it joins as the cluster runs.
func (c *cluster) join(id uint64) *chost {
	c.t.Helper()
	h := &chost{c: c, id: id, rec: &recDevice{Device: c.dev, clk: c.clk}}
	h.m = &msgloop.Messenger{Listeners: 1, OnReady: func(now time.Time, rd hostmsg.Ready) {
		h.got = append(h.got, rd.Deliveries...)
		h.done = append(h.done, rd.Results...)
	}}
	ls, err := delta.Start(context.Background(), delta.NewIO(h.rec, c.clk), delta.Config{
		Name: "LS", HostID: id, HostName: fmt.Sprintf("host%d", id), IOTimeout: c.io, Clock: c.clk,
		Messenger: h.m, TimestampBase: 1000, Rand: rand.New(rand.NewSource(int64(id))),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	h.ls, h.next = ls, c.clk.Now()
	c.hosts[id] = h
	return h
}

// poke writes a live-looking sector for host id (a host that is not
// simulated, to make the used part of the area as large as its id).
func (c *cluster) poke(id uint64) {
	r := leader.Record{Magic: leader.Magic, Version: leader.Version, Flags: c.geo.AlignFlag(),
		SectorSize: uint32(c.geo.SectorSize), MaxHosts: 1, OwnerID: id, OwnerGeneration: 1, Timestamp: 77,
		IOTimeout: uint16(c.io / time.Second)}
	copy(r.SpaceName[:], "LS")
	s := leader.Sector{Record: r}
	s.Seal()
	b := make([]byte, c.geo.SectorSize)
	if err := s.Encode(b); err != nil {
		c.t.Fatal(err)
	}
	c.dev.Poke(c.geo.HostOffset(id), b)
}

// run steps every host in time order for d of simulated time.
func (c *cluster) run(d time.Duration) {
	c.t.Helper()
	end := c.clk.Now().Add(d)
	ids := make([]uint64, 0, len(c.hosts))
	for id := range c.hosts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for {
		var h *chost
		for _, id := range ids {
			x := c.hosts[id]
			if x.failed == nil && (h == nil || x.next.Before(h.next)) {
				h = x
			}
		}
		if h == nil || h.next.After(end) {
			break
		}
		if d := h.next.Sub(c.clk.Now()); d > 0 {
			c.clk.Advance(d)
		}
		next, err := h.ls.Step(context.Background())
		if err != nil {
			h.failed = err
			c.t.Fatalf("host %d: %v", h.id, err)
		}
		if next.Before(c.clk.Now()) || (next.Equal(h.next) && h.ls.Joined() && h.again) {
			// Once joined, a host asks for the present only once (its
			// first turn, right after the acquire).
			c.t.Fatalf("host %d: Step at %v asks to run again at %v", h.id, c.since(c.clk.Now()), c.since(next))
		}
		h.again = next.Equal(h.next)
		h.next = next
	}
	if d := end.Sub(c.clk.Now()); d > 0 {
		c.clk.Advance(d)
	}
}

// runUntil runs until cond holds (checked after every Step), at most d.
func (c *cluster) runUntil(d time.Duration, cond func() bool) bool {
	end := c.clk.Now().Add(d)
	for !cond() {
		if !c.clk.Now().Before(end) {
			return false
		}
		c.run(10 * time.Millisecond)
	}
	return true
}

// send sends from h now and steps h at once, as the daemon wakes its loop.
func (h *chost) send(msg hostmsg.Message) uint64 {
	h.c.t.Helper()
	seq, err := h.m.Machine().Send(h.c.clk.Now(), msg)
	if err != nil {
		h.c.t.Fatal(err)
	}
	h.next = h.c.clk.Now()
	return seq
}

// checkWrites checks that every write of every host landed in its own
// sector or a spare sector, one sector at a time.
func (c *cluster) checkWrites() {
	c.t.Helper()
	spare := int64(c.geo.MaxHosts * c.geo.SectorSize)
	for _, h := range c.hosts {
		for _, r := range h.rec.between(c.t0, c.clk.Now().Add(time.Hour)) {
			if !r.write {
				continue
			}
			if r.n != c.geo.SectorSize || (r.off != c.geo.HostOffset(h.id) && (r.off < spare || r.off >= int64(c.geo.AlignSize))) {
				c.t.Fatalf("host %d wrote %d bytes at %d", h.id, r.n, r.off)
			}
		}
	}
}

// areaReads returns h's reads of more than one sector in [from, to).
func (h *chost) areaReads(from, to time.Time) []ioRec {
	var out []ioRec
	for _, r := range h.rec.between(from, to) {
		if !r.write && r.n > h.c.geo.SectorSize {
			out = append(out, r)
		}
	}
	return out
}

// readBytes returns the bytes h read in [from, to).
func (h *chost) readBytes(from, to time.Time) int {
	n := 0
	for _, r := range h.rec.between(from, to) {
		if !r.write {
			n += r.n
		}
	}
	return n
}

// lastRenewal returns when h last renewed.
func (h *chost) lastRenewal() time.Time { return h.ls.Status().LastRenewal }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestClusterLatency: two sanlock-msg hosts, host 1 and host 2, in an area
// whose used part ends at host id highest, at io_timeout 1 and 10. Host 1
// sends ten messages, each after ≥ 10 s of quiet, at random moments: host 2 finds each message
// through its doorbell within one doorbell poll interval, without any read
// of the area between its renewals, and host 1 sees the ack by reading only
// host 2's sector. The same latency at 3 host ids as at max_hosts.
func TestClusterLatency(t *testing.T) {
	for _, geo := range [][2]int{{512, leader.MiB}, {4096, 8 * leader.MiB}, {4096, leader.MiB}} {
		g, _ := leader.NewGeometry(geo[0], geo[1])
		for _, io := range []time.Duration{time.Second, 10 * time.Second} {
			for _, highest := range []uint64{3, uint64(g.MaxHosts)} {
				name := fmt.Sprintf("%d-%s/io%v/hosts%d", geo[0], leader.AlignString(geo[1]), io, highest)
				t.Run(name, func(t *testing.T) {
					c := newCluster(t, geo[0], geo[1], io)
					c.poke(highest)
					a, b := c.join(1), c.join(2)
					c.run(3 * io)
					rng := rand.New(rand.NewSource(int64(highest) + int64(io)))
					const msgs = 10
					var oneWay, round []time.Duration
					byRenewal := 0
					for i := 0; i < msgs; i++ {
						c.run(10*time.Second + time.Duration(rng.Intn(3000))*time.Millisecond)
						sent := c.clk.Now()
						seq := a.send(hostmsg.Message{Targets: []uint64{2}, Code: leader.EventUser0})
						if !c.runUntil(time.Minute, func() bool { return len(b.got) > i && len(a.done) > i }) {
							t.Fatalf("message %d not delivered and acked within a minute", i)
						}
						d, r := b.got[i], a.done[i]
						if d.Seq != seq || r.Seq != seq || r.Err() != nil {
							t.Fatalf("message %d: delivered %+v, result %v", i, d, r.String())
						}
						oneWay = append(oneWay, d.At.Sub(sent))
						round = append(round, r.DoneAt.Sub(sent))
						// Host 2 read the area at its renewals only, and
						// found the message through its doorbell unless a
						// renewal came first.
						// (A read of more than MaxReadChunk bytes is
						// several I/Os at one instant: one renewal.)
						renewalAtDelivery := false
						for _, rd := range b.areaReads(sent, d.At.Add(time.Nanosecond)) {
							if !wroteOwnAt(b, rd.at) {
								t.Fatalf("message %d (sent at %v, delivered at %v): host 2 read %d bytes at %v, not a renewal",
									i, c.since(sent), c.since(d.At), rd.n, c.since(rd.at))
							}
							renewalAtDelivery = renewalAtDelivery || rd.at.Equal(d.At)
						}
						if renewalAtDelivery {
							byRenewal++
						}
					}
					poll := b.ls.Status().PollEvery
					t.Logf("%s: doorbell poll %v; one-way p50 %v max %v; acked p50 %v max %v; %d of %d found by a renewal first", name, poll,
						percentile(oneWay, .5), percentile(oneWay, 1), percentile(round, .5), percentile(round, 1), byRenewal, msgs)
					if byRenewal > int(msgs*poll/b.ls.Timeouts().RenewalInterval())+2 {
						t.Errorf("%d of %d messages found by a renewal read, not the doorbell", byRenewal, msgs)
					}
					if max := percentile(oneWay, 1); max > poll+10*time.Millisecond {
						t.Errorf("one-way max %v, more than a doorbell poll (%v)", max, poll)
					}
					if poll == delta.DefaultPollInterval {
						if p := percentile(oneWay, .5); p > 300*time.Millisecond {
							t.Errorf("one-way p50 %v", p)
						}
						if p := percentile(round, 1); p > time.Second {
							t.Errorf("acked max %v", p)
						}
					}
					if st := b.ls.Status().Doorbell; st.Scans != 0 {
						t.Errorf("host 2 scanned %d times", st.Scans)
					}
					c.checkWrites()
				})
			}
		}
	}
}

// wroteOwnAt reports whether h wrote its sector at at (a renewal, when
// it also read the area).
func wroteOwnAt(h *chost, at time.Time) bool {
	for _, r := range h.rec.between(at, at.Add(time.Nanosecond)) {
		if r.write && r.off == h.c.geo.HostOffset(h.id) {
			return true
		}
	}
	return false
}

// expectedIdle returns the idle read rate (bytes per second) of a host in
// c whose area is used up to host id highest, from the rules: renewals
// read host ids 1..highest+8, the whole area every 4th; doorbell polls
// one sector every poll interval.
func (c *cluster) expectedIdle(highest uint64, poll time.Duration) float64 {
	ri := delta.NewTimeouts(c.io, 0).RenewalInterval().Seconds()
	used := float64(min(highest+8, uint64(c.geo.MaxHosts))) * float64(c.geo.SectorSize)
	return (float64(c.geo.MaxHosts*c.geo.SectorSize)+3*used)/4/ri + float64(c.geo.SectorSize)/poll.Seconds()
}

// sanlockRate is what a sanlock host reads: the whole area every renewal
// interval.
func (c *cluster) sanlockRate() float64 {
	return float64(c.geo.AlignSize) / delta.NewTimeouts(c.io, 0).RenewalInterval().Seconds()
}

// TestClusterBusyBudget: host 1 sends to host 2 back to back for five
// renewal intervals, on an area used up to max_hosts. Each message costs
// both hosts a few sectors on top of their idle reads (the sender reads
// its sector before writing, the doorbell it rings, and the target until
// the ack; the receiver its doorbell, five times as often while messages
// flow, the ringer's sector and its own before the ack), never a read of
// the area between renewals; and they write only the sectors they may.
func TestClusterBusyBudget(t *testing.T) {
	for _, geo := range [][2]int{{512, leader.MiB}, {4096, leader.MiB}, {4096, 8 * leader.MiB}} {
		for _, io := range []time.Duration{time.Second, 10 * time.Second} {
			name := fmt.Sprintf("%d-%s/io%v", geo[0], leader.AlignString(geo[1]), io)
			t.Run(name, func(t *testing.T) {
				c := newCluster(t, geo[0], geo[1], io)
				highest := uint64(c.geo.MaxHosts)
				c.poke(highest)
				a, b := c.join(1), c.join(2)
				c.run(3 * io)
				ri := a.ls.Timeouts().RenewalInterval()
				from := c.clk.Now()
				end := from.Add(5 * ri)
				sent := 0
				for c.clk.Now().Before(end) {
					if a.m.Machine().Pending() == 0 {
						a.send(hostmsg.Message{Targets: []uint64{2}, Code: leader.EventUser0})
						sent++
					}
					c.run(10 * time.Millisecond)
				}
				to := c.clk.Now()
				for _, r := range a.done {
					if r.Err() != nil {
						t.Fatalf("send failed: %v", r.String())
					}
				}
				poll := a.ls.Status().PollEvery
				idle := c.expectedIdle(highest, poll)
				span := to.Sub(from)
				for _, h := range []*chost{a, b} {
					got := float64(h.readBytes(from, to)) / span.Seconds()
					extra := (got - idle) * span.Seconds() / float64(c.geo.SectorSize)
					t.Logf("%s: host %d read %.0f B/s (idle %.0f, sanlock %.0f): %.1f sectors per message, %d messages (%.1f/s), poll %v",
						name, h.id, got, idle, c.sanlockRate(), extra/float64(sent), sent, float64(sent)/span.Seconds(), poll)
					// At most 8 sectors per message, and 5 per doorbell
					// poll while the conversation lasts.
					if allow := 8*float64(sent) + 5*span.Seconds()/poll.Seconds(); extra > allow {
						t.Errorf("host %d read %.0f sectors more than idle for %d messages, more than %.0f", h.id, extra, sent, allow)
					}
					for _, rd := range h.areaReads(from, to) {
						if !wroteOwnAt(h, rd.at) {
							t.Errorf("host %d read %d bytes at %v between its renewals", h.id, rd.n, c.since(rd.at))
						}
					}
				}
				// 500 messages a minute at io_timeout 1 and 10 alike, except
				// where the area leaves too little of sanlock's reads for
				// doorbell polls (4096/1M at io_timeout 10: one every 3.5 s).
				if rate := float64(sent) / span.Minutes(); rate < 500 && poll == delta.DefaultPollInterval {
					t.Errorf("%.0f messages a minute", rate)
				}
				c.checkWrites()
			})
		}
	}
}

// TestClusterManySenders: 50 hosts send to one host at the same moment,
// twice: the doorbell overflows (30 rings in a 512-byte sector) and
// ringers race, yet every message is delivered once, in order, and acked.
func TestClusterManySenders(t *testing.T) {
	c := newCluster(t, 512, leader.MiB, time.Second)
	var hosts []*chost
	for id := uint64(1); id <= 51; id++ {
		hosts = append(hosts, c.join(id))
	}
	c.run(5 * time.Second)
	for round := 0; round < 2; round++ {
		for _, h := range hosts[1:] {
			h.send(hostmsg.Message{Targets: []uint64{1}, Code: leader.EventUser0})
		}
		if !c.runUntil(5*time.Minute, func() bool {
			for _, h := range hosts[1:] {
				if len(h.done) <= round {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("round %d not done in 5 minutes", round)
		}
		c.run(5 * time.Second)
	}
	got := map[uint64][]uint64{}
	for _, d := range hosts[0].got {
		got[d.From] = append(got[d.From], d.Seq)
	}
	for _, h := range hosts[1:] {
		if fmt.Sprint(got[h.id]) != "[1 2]" {
			t.Errorf("from host %d: delivered %v, want [1 2]", h.id, got[h.id])
		}
		for _, r := range h.done {
			if r.Err() != nil {
				t.Errorf("host %d: %v", h.id, r.String())
			}
		}
	}
	rs := hosts[0].m.Machine().RingStats()
	st := hosts[0].ls.Status().Doorbell
	t.Logf("receiver: %+v; %+v", rs, st)
	if rs.Gaps == 0 || rs.RingsReceived < 50 {
		t.Errorf("receiver ring stats %+v: want rings and a gap", rs)
	}
	c.checkWrites()
}

// TestClusterMulticast: one host sends to every other host of a full
// 4096/1M area (250 hosts, all simulated): every target acks, and the
// sender, waiting on 249 targets that make up the whole area, reads it
// no faster than its budget allows (once per renewal, when the bucket is
// empty).
func TestClusterMulticast(t *testing.T) {
	c := newCluster(t, 4096, leader.MiB, time.Second)
	var targets []uint64
	for id := uint64(1); id <= 250; id++ {
		c.join(id)
		if id > 1 {
			targets = append(targets, id)
		}
	}
	a := c.hosts[1]
	c.run(5 * time.Second)
	from := c.clk.Now()
	a.send(hostmsg.Message{Targets: targets, Code: leader.EventUser0})
	if !c.runUntil(time.Minute, func() bool { return len(a.done) == 1 }) {
		t.Fatal("multicast not done in a minute")
	}
	to := c.clk.Now()
	if r := a.done[0]; r.Err() != nil || len(r.Targets) != 249 {
		t.Fatalf("result %v", r.String())
	}
	for _, id := range targets {
		if h := c.hosts[id]; len(h.got) != 1 || h.got[0].From != 1 {
			t.Fatalf("host %d got %+v", id, h.got)
		}
	}
	got := float64(a.readBytes(from, to)) / to.Sub(from).Seconds()
	t.Logf("multicast to 249 acked in %v; sender read %.0f B/s (sanlock %.0f); %d rings written; %+v",
		to.Sub(from), got, c.sanlockRate(), a.ls.Status().Doorbell.RingsWritten, a.ls.Status().Doorbell)
	if rw := a.ls.Status().Doorbell.RingsWritten; rw < 6 || rw > 6*20 {
		t.Errorf("%d rings written for 249 targets on 6 doorbells", rw)
	}
	if got > 2*c.sanlockRate() {
		t.Errorf("sender read %.0f B/s, more than twice sanlock's %.0f", got, c.sanlockRate())
	}
	c.checkWrites()
}
