package delta

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// lsNet runs Lockspace loops and Joins that share one clock.Fake as a
// discrete-event simulation: it waits until every host is asleep on the
// clock (a loop in its wait, a Join in an acquire wait, or any of them in
// an I/O that hangs), advances the clock to the earliest wake-up, and
// repeats. The hosts never run while the clock moves, so simulated time is
// exact and nothing sleeps.
type lsNet struct {
	tb    testing.TB
	clk   *clock.Fake
	dev   *MemDevice
	geo   leader.Geometry
	hosts []*lsHost
}

// newLSNet returns a fresh lockspace "LS" (Init with record io_timeout
// initIO) on an in-memory device.
func newLSNet(tb testing.TB, ss, align int, initIO time.Duration) *lsNet {
	tb.Helper()
	g := mustGeo(tb, ss, align)
	dev := NewMemDevice(int64(align), ss)
	if err := Init(context.Background(), NewIO(dev, clock.Real{}), InitOptions{Name: "LS", Geometry: g, IOTimeout: initIO}); err != nil {
		tb.Fatal(err)
	}
	n := &lsNet{tb: tb, clk: clock.NewFake(simEpoch), dev: dev, geo: g}
	tb.Cleanup(n.shutdown)
	return n
}

// since returns the simulated time elapsed at t.
func (n *lsNet) since(t time.Time) time.Duration { return t.Sub(simEpoch) }

// now returns the simulated time.
func (n *lsNet) now() time.Duration { return n.since(n.clk.Now()) }

type hostState int

const (
	hostRunning hostState = iota
	hostAsleep
	hostExited
)

type sleepKind int

const (
	sleepLoop sleepKind = iota + 1 // Lockspace.waitUntil
	sleepJoin                      // Join's acquire wait
	sleepIO                        // blocked in an I/O that hangs
)

type sleepEvent struct {
	kind  sleepKind
	until time.Time
}

type joinResult struct {
	ls  *Lockspace
	err error
}

// lsHost is one member: a Join, then its Lockspace loop.
type lsHost struct {
	net  *lsNet
	name string
	cfg  Config
	fd   *FaultDevice // nil unless faults were asked for
	log  *ioLog
	io   *IO

	ev      chan sleepEvent
	joinRes chan joinResult

	ls        *Lockspace
	joinErr   error
	joining   bool
	joinStart time.Time
	joinEnd   time.Time
	exitAt    time.Time
	state     hostState
	kind      sleepKind
	wake      time.Time
	hangs     int // hung I/Os already accounted as a sleep

	mu       sync.Mutex
	renewals []timedRenewal
}

type timedRenewal struct {
	at time.Time
	RenewalEvent
}

// hostClock is the host's view of the shared fake clock. It reports
// Join's acquire waits (sleepUntil has no hook) to the driver, after the
// timer is set.
type hostClock struct {
	*clock.Fake
	h *lsHost
}

func (c *hostClock) AfterFunc(d time.Duration, f func()) func() bool {
	stop := c.Fake.AfterFunc(d, f)
	if calledFrom("github.com/sanlock-msg/sanlock-msg/delta.sleepUntil") {
		c.h.ev <- sleepEvent{kind: sleepJoin, until: c.Fake.Now().Add(d)}
	}
	return stop
}

func calledFrom(fn string) bool {
	pc := make([]uintptr, 16)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
	}
}

// ioLog records every call that reaches the device below it, with the
// simulated time it started.
type ioLog struct {
	Device
	clk  clock.Clock
	mu   sync.Mutex
	recs []ioRec
}

type ioRec struct {
	at  time.Time
	op  string
	off int64
	n   int
	rec leader.Record // writes: the record written
	err error
}

func (l *ioLog) add(r ioRec) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return len(l.recs) - 1
}

func (l *ioLog) done(i int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs[i].err = err
}

func (l *ioLog) ReadAt(p []byte, off int64) (int, error) {
	i := l.add(ioRec{at: l.clk.Now(), op: "read", off: off, n: len(p)})
	n, err := l.Device.ReadAt(p, off)
	l.done(i, err)
	return n, err
}

func (l *ioLog) WriteAt(p []byte, off int64) (int, error) {
	r, _ := leader.DecodeRecord(p)
	i := l.add(ioRec{at: l.clk.Now(), op: "write", off: off, n: len(p), rec: r})
	n, err := l.Device.WriteAt(p, off)
	l.done(i, err)
	return n, err
}

// ops returns the calls of kind op ("" for all) that started in [from, to).
func (l *ioLog) ops(op string, from, to time.Time) []ioRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ioRec
	for _, r := range l.recs {
		if (op == "" || r.op == op) && !r.at.Before(from) && r.at.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

var farFuture = simEpoch.Add(1000 * time.Hour)

// startJoin starts Join for cfg in a goroutine. faults puts a FaultDevice
// under the host's I/O.
func (n *lsNet) startJoin(cfg Config, faults bool) *lsHost {
	h := &lsHost{net: n, name: cfg.HostName, ev: make(chan sleepEvent, 1), joinRes: make(chan joinResult, 1),
		joining: true, joinStart: n.clk.Now()}
	var dev Device = n.dev
	if faults {
		h.fd = NewFaultDevice(n.dev)
		dev = h.fd
	}
	clk := &hostClock{Fake: n.clk, h: h}
	h.log = &ioLog{Device: dev, clk: n.clk}
	h.io = NewIO(h.log, clk)
	if cfg.Name == "" {
		cfg.Name = "LS"
	}
	cfg.Clock = clk
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.waitHook = func(until time.Time) { h.ev <- sleepEvent{kind: sleepLoop, until: until} }
	user := cfg.OnRenewal
	cfg.OnRenewal = func(ev RenewalEvent) {
		h.mu.Lock()
		h.renewals = append(h.renewals, timedRenewal{n.clk.Now(), ev})
		h.mu.Unlock()
		if user != nil {
			user(ev)
		}
	}
	h.cfg = cfg.withDefaults()
	n.hosts = append(n.hosts, h)
	go func() {
		ls, err := Join(context.Background(), h.io, cfg)
		h.joinRes <- joinResult{ls, err}
	}()
	return h
}

// join joins and runs the simulation until the Join returns; it fails the
// test on error.
func (n *lsNet) join(cfg Config, faults bool) *lsHost {
	n.tb.Helper()
	h := n.startJoin(cfg, faults)
	n.runWhile(func() bool { return h.joining })
	if h.joinErr != nil {
		n.tb.Fatalf("join %s: %v", cfg.HostName, h.joinErr)
	}
	return h
}

// settle waits (in real time) until the host is asleep on the clock or
// has exited.
func (h *lsHost) settle() {
	deadline := time.Now().Add(20 * time.Second)
	poll := time.NewTimer(50 * time.Microsecond)
	defer poll.Stop()
	for {
		switch {
		case h.state == hostExited:
			return
		case h.state == hostAsleep && (h.kind != sleepLoop || !h.joining):
			return
		}
		var done <-chan struct{}
		if h.ls != nil {
			done = h.ls.Done()
		}
		poll.Reset(50 * time.Microsecond)
		select {
		case e := <-h.ev:
			h.state, h.kind, h.wake = hostAsleep, e.kind, e.until
		case r := <-h.joinRes:
			h.joining, h.ls, h.joinErr, h.joinEnd = false, r.ls, r.err, h.net.clk.Now()
			if r.err != nil {
				h.state, h.exitAt = hostExited, h.net.clk.Now()
			}
		case <-done:
			if h.state == hostRunning {
				h.state, h.exitAt = hostExited, h.net.clk.Now()
			}
		case <-poll.C:
			if h.state == hostRunning && h.fd != nil && h.fd.Hung() > h.hangs {
				// Blocked in an I/O that hangs: it wakes when the I/O times
				// out, io_timeout after it started (the clock has not moved
				// since, as the host was running).
				h.hangs++
				h.state, h.kind, h.wake = hostAsleep, sleepIO, h.net.clk.Now().Add(h.cfg.IOTimeout)
			}
			if time.Now().After(deadline) {
				h.net.tb.Fatalf("host %s still running after 20 s of real time at simulated %v", h.name, h.net.now())
			}
		}
	}
}

func (n *lsNet) settle() {
	for _, h := range n.hosts {
		h.settle()
	}
}

// step settles every host, then advances the clock to the earliest
// wake-up, or to limit if that comes first. It reports whether it
// reached limit.
func (n *lsNet) step(limit time.Time) bool {
	n.settle()
	next := limit
	for _, h := range n.hosts {
		if h.state == hostAsleep && h.wake.Before(next) {
			next = h.wake
		}
	}
	if d := next.Sub(n.clk.Now()); d > 0 {
		n.clk.Advance(d)
	}
	for _, h := range n.hosts {
		if h.state == hostAsleep && !h.wake.After(next) {
			h.state = hostRunning
		}
	}
	n.settle()
	return next.Equal(limit)
}

// runUntil runs the simulation until simulated time at.
func (n *lsNet) runUntil(at time.Duration) {
	n.tb.Helper()
	t := simEpoch.Add(at)
	if t.Before(n.clk.Now()) {
		n.tb.Fatalf("runUntil %v: already at %v", at, n.now())
	}
	for !n.step(t) {
	}
}

// runFor runs the simulation for d of simulated time.
func (n *lsNet) runFor(d time.Duration) { n.runUntil(n.now() + d) }

// runWhile runs the simulation, one wake-up at a time, while cond holds.
func (n *lsNet) runWhile(cond func() bool) {
	n.settle()
	for cond() {
		if n.step(farFuture) {
			n.tb.Fatal("runWhile: nothing left to run")
		}
	}
}

// releaseHung lets the host's hung I/Os complete, and waits until they
// have.
func (h *lsHost) releaseHung() {
	h.fd.Release()
	waitFor(h.net.tb, "hung i/o to complete", func() bool { return h.fd.Hung() == 0 && h.io.Stats().Stuck == 0 })
	h.hangs = 0
}

// close stops the host's loop without releasing (a crash).
func (h *lsHost) close() {
	h.ls.Close()
	h.state, h.exitAt = hostExited, h.net.clk.Now()
}

func (n *lsNet) shutdown() {
	for _, h := range n.hosts {
		if h.fd != nil {
			h.fd.Clear()
			h.fd.Release()
		}
		// A Join still running is left to finish on its own; its
		// goroutine only holds test memory.
		if h.ls != nil {
			h.ls.Close()
		}
	}
}

// sectorOff returns host id's offset on the net's device.
func (n *lsNet) sectorOff(id uint64) int64 { return n.geo.HostOffset(id) }

// sector decodes host id's sector as it is on the device now.
func (n *lsNet) sector(id uint64) leader.Sector {
	s, _ := leader.DecodeSector(n.dev.Bytes(n.sectorOff(id), n.geo.SectorSize))
	return s
}

// edit rewrites host id's sector: f edits the decoded sector, which is
// resealed unless f returns false.
func (n *lsNet) edit(id uint64, f func(s *leader.Sector) (seal bool)) {
	editSectorSize(n.dev, n.geo.SectorSize, id, f)
}

// ownWrites returns the host's writes of its own sector in [from, to).
func (h *lsHost) ownWrites(from, to time.Time) []ioRec {
	var out []ioRec
	for _, r := range h.log.ops("write", from, to) {
		if r.off == h.net.sectorOff(h.cfg.HostID) && r.n == h.net.geo.SectorSize {
			out = append(out, r)
		}
	}
	return out
}

// loopReads returns the reads of the host's loop up to to: those after
// the join, without the acquire's verify read of our own sector.
func (h *lsHost) loopReads(to time.Time) []ioRec {
	var out []ioRec
	for _, r := range h.log.ops("read", h.joinEnd, to) {
		if r.at.Equal(h.joinEnd) && r.n == h.net.geo.SectorSize && r.off == h.net.sectorOff(h.cfg.HostID) {
			continue
		}
		out = append(out, r)
	}
	return out
}

func (h *lsHost) renewalEvents() []timedRenewal {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]timedRenewal(nil), h.renewals...)
}

func (r ioRec) String() string {
	return fmt.Sprintf("%v %s off %d len %d ts %d err %v", r.at.Sub(simEpoch), r.op, r.off, r.n, r.rec.Timestamp, r.err)
}

func fmtRecs(rs []ioRec) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// wakeLoop wakes the host's loop (Lockspace.Wake) and counts it as running
// until it sleeps again.
func (h *lsHost) wakeLoop() {
	h.ls.Wake()
	h.state = hostRunning
}

// spare reports whether a request at off of n bytes lies in the spare
// sectors of the net's area.
func (n *lsNet) spare(off int64, size int) bool {
	lo := int64(n.geo.MaxHosts * n.geo.SectorSize)
	return off >= lo && off+int64(size) <= int64(n.geo.AlignSize)
}

// hostReads returns the loop's reads of host sectors up to to (not the
// doorbell polls).
func (h *lsHost) hostReads(to time.Time) []ioRec {
	var out []ioRec
	for _, r := range h.loopReads(to) {
		if !h.net.spare(r.off, r.n) {
			out = append(out, r)
		}
	}
	return out
}

// doorbellReads returns the loop's reads of its own doorbell up to to.
func (h *lsHost) doorbellReads(to time.Time) []ioRec {
	off := h.net.geo.DoorbellOffset(h.net.geo.DoorbellIndex(h.cfg.HostID))
	var out []ioRec
	for _, r := range h.loopReads(to) {
		if r.off == off && r.n == h.net.geo.SectorSize {
			out = append(out, r)
		}
	}
	return out
}

// checkWrites checks that every write the host ever made landed in its
// own sector or in a spare sector (a doorbell), one sector at a time.
func checkWrites(t *testing.T, h *lsHost) {
	t.Helper()
	for _, w := range h.log.ops("write", simEpoch, farFuture) {
		if w.n != h.net.geo.SectorSize || (w.off != h.net.sectorOff(h.cfg.HostID) && !h.net.spare(w.off, w.n)) {
			t.Fatalf("%s wrote %d bytes at %d: neither its sector (%d) nor a spare sector", h.name, w.n, w.off, h.net.sectorOff(h.cfg.HostID))
		}
	}
}
