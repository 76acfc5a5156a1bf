package main

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/msgloop"
)

// sim is a deterministic simulation of sanlock-msg hosts: real lockspace
// loops (delta.Start, Step) with real message machines (msgloop.Messenger)
// on one in-memory device and one fake clock, stepped from one goroutine
// in time order (msgloop's package doc; msgloop/cluster_test.go is the
// small version). I/O takes no simulated time.
type sim struct {
	clk   *clock.Fake
	dev   *delta.MemDevice
	geo   leader.Geometry
	io    time.Duration
	t0    time.Time
	hosts []*host // by host id - 1
	queue hostQueue
	// onReady, if set, sees what every host's machine produced.
	onReady func(h *host, now time.Time, rd hostmsg.Ready)
}

// host is one simulated host.
type host struct {
	s    *sim
	id   uint64
	ls   *delta.Lockspace
	m    *msgloop.Messenger
	next time.Time
	qi   int // index in the queue
	io   ioCount
}

// ioCount counts one host's I/O by region of the area.
type ioCount struct {
	hostReads, hostReadBytes   int64 // host sectors (renewals, scans, targeted reads)
	spareReads, spareReadBytes int64 // spare sectors (doorbell polls, ring reads)
	ownWrites, spareWrites     int64 // our sector; doorbells (rings)
	// strayWrites counts writes anywhere else: another host's sector, or
	// more than one sector. There must be none.
	strayWrites int64
}

func (c ioCount) reads() int64     { return c.hostReads + c.spareReads }
func (c ioCount) readBytes() int64 { return c.hostReadBytes + c.spareReadBytes }
func (c ioCount) writes() int64    { return c.ownWrites + c.spareWrites }

func (c ioCount) sub(o ioCount) ioCount {
	return ioCount{c.hostReads - o.hostReads, c.hostReadBytes - o.hostReadBytes, c.spareReads - o.spareReads,
		c.spareReadBytes - o.spareReadBytes, c.ownWrites - o.ownWrites, c.spareWrites - o.spareWrites, c.strayWrites - o.strayWrites}
}

func (c *ioCount) add(o ioCount) {
	c.hostReads += o.hostReads
	c.hostReadBytes += o.hostReadBytes
	c.spareReads += o.spareReads
	c.spareReadBytes += o.spareReadBytes
	c.ownWrites += o.ownWrites
	c.spareWrites += o.spareWrites
	c.strayWrites += o.strayWrites
}

// countDev is one host's view of the shared device: it counts the host's
// I/O. The loop waits for each call, so the counts need no lock.
type countDev struct {
	delta.Device
	h     *host
	own   int64 // offset of the host's sector
	ss    int   // sector size
	spare int64 // offset of the first spare sector
}

func (d *countDev) ReadAt(p []byte, off int64) (int, error) {
	if off >= d.spare {
		d.h.io.spareReads++
		d.h.io.spareReadBytes += int64(len(p))
	} else {
		d.h.io.hostReads++
		d.h.io.hostReadBytes += int64(len(p))
	}
	return d.Device.ReadAt(p, off)
}

func (d *countDev) WriteAt(p []byte, off int64) (int, error) {
	switch {
	case len(p) != d.ss:
		d.h.io.strayWrites++
	case off >= d.spare:
		d.h.io.spareWrites++
	case off == d.own:
		d.h.io.ownWrites++
	default:
		d.h.io.strayWrites++
	}
	return d.Device.WriteAt(p, off)
}

// newSim initialises an area of geometry geo at io_timeout io on a fresh
// in-memory device and starts n hosts (ids 1..n) on it; they join as the
// simulation runs.
func newSim(geo leader.Geometry, io time.Duration, n int, seed int64) (*sim, error) {
	dev := delta.NewMemDevice(int64(geo.AlignSize), geo.SectorSize)
	if err := delta.Init(context.Background(), delta.NewIO(dev, clock.Real{}),
		delta.InitOptions{Name: "LS", Geometry: geo, IOTimeout: io}); err != nil {
		return nil, err
	}
	t0 := time.Unix(1_000_000, 0)
	s := &sim{clk: clock.NewFake(t0), dev: dev, geo: geo, io: io, t0: t0}
	for id := uint64(1); id <= uint64(n); id++ {
		h := &host{s: s, id: id}
		h.m = &msgloop.Messenger{Listeners: 1, OnReady: func(now time.Time, rd hostmsg.Ready) {
			if s.onReady != nil {
				s.onReady(h, now, rd)
			}
		}}
		dv := &countDev{Device: dev, h: h, own: geo.HostOffset(id), ss: geo.SectorSize, spare: int64(geo.MaxHosts * geo.SectorSize)}
		ls, err := delta.Start(context.Background(), delta.NewIO(dv, s.clk), delta.Config{
			Name: "LS", HostID: id, HostName: fmt.Sprintf("host%d", id), IOTimeout: io, Clock: s.clk,
			Messenger: h.m, TimestampBase: 1000, Rand: rand.New(rand.NewSource(seed*100_003 + int64(id))),
			Logger: discardLogger,
		})
		if err != nil {
			return nil, fmt.Errorf("host %d: %w", id, err)
		}
		h.ls, h.next = ls, t0
		s.hosts = append(s.hosts, h)
		heap.Push(&s.queue, h)
	}
	return s, nil
}

// since returns the simulated time elapsed at t.
func (s *sim) since(t time.Time) time.Duration { return t.Sub(s.t0) }

// host returns host id.
func (s *sim) host(id uint64) *host { return s.hosts[id-1] }

// run steps every host in time order until the earliest next step is
// after limit() (re-evaluated after every step), then advances the clock
// to limit() if it is later.
func (s *sim) run(limit func() time.Time) error {
	for len(s.queue) > 0 {
		h := s.queue[0]
		end := limit()
		if h.next.After(end) {
			break
		}
		if d := h.next.Sub(s.clk.Now()); d > 0 {
			s.clk.Advance(d)
		}
		next, err := h.ls.Step(context.Background())
		if err != nil {
			return fmt.Errorf("host %d at %v: %w", h.id, s.since(s.clk.Now()), err)
		}
		if next.Before(s.clk.Now()) {
			return fmt.Errorf("host %d: Step at %v asks to run at %v", h.id, s.since(s.clk.Now()), s.since(next))
		}
		h.next = next
		heap.Fix(&s.queue, h.qi)
	}
	if d := limit().Sub(s.clk.Now()); d > 0 {
		s.clk.Advance(d)
	}
	return nil
}

// runFor runs d of simulated time.
func (s *sim) runFor(d time.Duration) error {
	end := s.clk.Now().Add(d)
	return s.run(func() time.Time { return end })
}

// send sends msg from h now; h steps at once, as the daemon wakes its loop.
func (s *sim) send(h *host, msg hostmsg.Message) (uint64, error) {
	seq, err := h.m.Machine().Send(s.clk.Now(), msg)
	if err != nil {
		return 0, err
	}
	h.next = s.clk.Now()
	heap.Fix(&s.queue, h.qi)
	return seq, nil
}

// joinAll runs until every host joined, at most limit.
func (s *sim) joinAll(limit time.Duration) error {
	end := s.clk.Now().Add(limit)
	for s.clk.Now().Before(end) {
		all := true
		for _, h := range s.hosts {
			if !h.ls.Joined() {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		if err := s.runFor(time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("not every host joined within %v", limit)
}

// counts returns every host's I/O counters.
func (s *sim) counts() []ioCount {
	out := make([]ioCount, len(s.hosts))
	for i, h := range s.hosts {
		out[i] = h.io
	}
	return out
}

// hostQueue orders hosts by their next step, then host id.
type hostQueue []*host

func (q hostQueue) Len() int { return len(q) }
func (q hostQueue) Less(i, j int) bool {
	if !q[i].next.Equal(q[j].next) {
		return q[i].next.Before(q[j].next)
	}
	return q[i].id < q[j].id
}
func (q hostQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].qi, q[j].qi = i, j
}
func (q *hostQueue) Push(x any) {
	h := x.(*host)
	h.qi = len(*q)
	*q = append(*q, h)
}
func (q *hostQueue) Pop() any {
	old := *q
	h := old[len(old)-1]
	*q = old[:len(old)-1]
	return h
}

// discardLogger drops the hosts' logs.
var discardLogger = slog.New(slog.DiscardHandler)
