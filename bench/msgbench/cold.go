package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// coolDown is how long both ends of a cold sample have been quiet (issue
// 9: "message sent after ≥ 10 s of quiet"): long past the receiver's fast
// doorbell polls after a message (hostmsg's ActiveWindow, 2 s).
const coolDown = 10 * time.Second

// coldStats are cold samples: each message sent from a host to another,
// both quiet for at least coolDown, with Send and Wait.
type coldStats struct {
	oneWay []float64 // s: Send called → the record out of the receiver's registration
	acked  []float64 // s: Send called → its reply, acked
	lost   int       // acked, but no record reached the listener within 5 s
	failed int       // the send did not end acked
	dups   int       // records delivered more than once
}

func (s *coldStats) add(o *coldStats) {
	s.oneWay = append(s.oneWay, o.oneWay...)
	s.acked = append(s.acked, o.acked...)
	s.lost += o.lost
	s.failed += o.failed
	s.dups += o.dups
}

func (s *coldStats) summary() string {
	if s == nil || len(s.oneWay) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("%d cold samples: one-way p50 %s p99 %s max %s; acked p50 %s; %d lost, %d failed, %d duplicates",
		len(s.oneWay), secs(percentile(s.oneWay, 50)), secs(percentile(s.oneWay, 99)), secs(percentile(s.oneWay, 100)),
		secs(percentile(s.acked, 50)), s.lost, s.failed, s.dups)
}

// arrivals records, per receiver, when each message's record came out of
// its registration.
type arrivals struct {
	mu   sync.Mutex
	at   map[arrivalKey]time.Time
	dups int
	ch   chan struct{} // closed and replaced at every arrival
}

type arrivalKey struct {
	to, from int
	seq      uint64
}

func newArrivals() *arrivals {
	return &arrivals{at: map[arrivalKey]time.Time{}, ch: make(chan struct{})}
}

// listen registers on h and records its messages until ctx ends.
func (a *arrivals) listen(ctx context.Context, h *msgHost) error {
	g, err := callback.Register(ctx, h.runDir, lsName)
	if err != nil {
		return fmt.Errorf("register on h%d: %w", h.id, err)
	}
	go func() {
		defer g.Close()
		for {
			rec, err := g.Next(ctx)
			now := time.Now()
			if err != nil {
				if ctx.Err() == nil {
					logf("listener h%d: %v", h.id, err)
				}
				return
			}
			if rec.Type != callback.RecordMessage {
				logf("listener h%d: %s record %+v", h.id, rec.Type, rec)
				continue
			}
			k := arrivalKey{h.id, int(rec.FromHostID), rec.Seq}
			a.mu.Lock()
			if _, ok := a.at[k]; ok {
				a.dups++
			} else {
				a.at[k] = now
			}
			close(a.ch)
			a.ch = make(chan struct{})
			a.mu.Unlock()
		}
	}()
	return nil
}

// wait returns when k arrived, waiting at most d.
func (a *arrivals) wait(ctx context.Context, k arrivalKey, d time.Duration) (time.Time, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		at, ok := a.at[k]
		ch := a.ch
		a.mu.Unlock()
		if ok {
			return at, true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return time.Time{}, false
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
}

// cold takes cold samples until until. Each lane is a set of hosts that
// take samples one after the other, between two of its hosts picked at
// random, each after coolDown plus a random 0..3 s (so that sends are not
// in phase with the doorbell polls); lanes run in parallel, the first
// sample of each after a random 0..stagger. Lanes must not share hosts.
func (c *msgCluster) cold(ctx context.Context, lanes [][]*msgHost, until time.Time, stagger time.Duration) (*coldStats, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	arr := newArrivals()
	for _, lane := range lanes {
		for _, h := range lane {
			if err := arr.listen(lctx, h); err != nil {
				return nil, err
			}
		}
	}
	timeout := time.Duration(30*c.io) * time.Second
	res := make([]*coldStats, len(lanes))
	errs := make([]error, len(lanes))
	var wg sync.WaitGroup
	for li, lane := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[li], errs[li] = c.lane(ctx, arr, lane, until, stagger, timeout)
		}()
	}
	wg.Wait()
	out := &coldStats{}
	for i := range lanes {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out.add(res[i])
	}
	arr.mu.Lock()
	out.dups = arr.dups
	arr.mu.Unlock()
	return out, nil
}

// lane takes the samples of one lane.
func (c *msgCluster) lane(ctx context.Context, arr *arrivals, lane []*msgHost, until time.Time, stagger, timeout time.Duration) (*coldStats, error) {
	res := &coldStats{}
	clients := map[int]*callback.Client{}
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for _, h := range lane {
		cl, err := callback.Dial(ctx, h.runDir)
		if err != nil {
			return nil, err
		}
		clients[h.id] = cl
	}
	pause := time.Duration(0)
	if stagger > 0 {
		pause = time.Duration(rand.Int64N(int64(stagger)))
	}
	for {
		if err := sleepCtx(ctx, pause); err != nil {
			return nil, err
		}
		if time.Now().After(until) {
			return res, nil
		}
		i := rand.IntN(len(lane))
		j := (i + 1 + rand.IntN(len(lane)-1)) % len(lane)
		from, to := lane[i], lane[j]
		t0 := time.Now()
		r, err := clients[from.id].Send(ctx, callback.SendRequest{Lockspace: lsName, Targets: []uint64{uint64(to.id)},
			Code: leader.EventUser0, Wait: true, Timeout: timeout})
		done := time.Now()
		if err != nil {
			return nil, fmt.Errorf("send h%d → h%d: %w", from.id, to.id, err)
		}
		if !r.OK {
			res.failed++
			logf("%s: send h%d → h%d seq %d: %s", c.spec.name, from.id, to.id, r.Seq, r.Error)
		} else {
			res.acked = append(res.acked, done.Sub(t0).Seconds())
		}
		if at, ok := arr.wait(ctx, arrivalKey{to.id, from.id, r.Seq}, 5*time.Second); ok {
			res.oneWay = append(res.oneWay, at.Sub(t0).Seconds())
		} else if ctx.Err() == nil {
			res.lost++
			logf("%s: h%d → h%d seq %d: no record at the listener", c.spec.name, from.id, to.id, r.Seq)
		}
		pause = coolDown + time.Duration(rand.Int64N(int64(3*time.Second)))
	}
}

// lsCounters is one daemon's lockspace counters at a moment.
type lsCounters struct {
	readBytes, reads, fullScans, renewals int64
	polls, targetedBytes, scans, rings    int64
	pollSec                               float64
	maxReadSec                            float64
	renewFails                            int64
}

func countersOf(ctx context.Context, h *msgHost) (lsCounters, error) {
	st, err := lsStatus(ctx, h.runDir)
	if err != nil {
		return lsCounters{}, err
	}
	c := lsCounters{readBytes: st.ReadBytes, reads: st.Reads, fullScans: st.FullScans, renewals: st.Renewals,
		pollSec: st.PollSec, maxReadSec: st.MaxReadSec, renewFails: st.RenewFails}
	if d := st.Doorbell; d != nil {
		c.polls, c.targetedBytes, c.scans, c.rings = d.Polls, d.TargetedBytes, d.Scans, d.RingsWritten
	}
	return c, nil
}

// burstResult is a window during which host 1 sends to host 2 back to
// back (Send with Wait).
type burstResult struct {
	window   time.Duration
	io       *idleResult // per daemon, as for idle (hosts in spec order)
	sent     int
	failed   int
	dur      time.Duration // first send to last reply
	perMin   float64
	dups     int
	ctr0     []lsCounters // per daemon, at the start and the end
	ctr1     []lsCounters
	ctrStart time.Time
	ctrEnd   time.Time
}

func (b *burstResult) summary() string {
	return fmt.Sprintf("%d sent (%d failed), %.0f acked/min; reads per daemon %s; scans %d", b.sent, b.failed, b.perMin,
		rateRange(b.io.procRead), b.scans())
}

// scans is the number of used-area reads between renewals, all daemons.
func (b *burstResult) scans() int64 {
	var n int64
	for i := range b.ctr0 {
		n += b.ctr1[i].scans - b.ctr0[i].scans
	}
	return n
}

// burst measures every daemon's I/O like idle while host 1 (the first
// host) sends to host 2 back to back.
func (c *msgCluster) burst(ctx context.Context, window time.Duration) (*burstResult, error) {
	res := &burstResult{window: window}
	h1, h2 := c.hosts[0], c.hosts[1]
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	arr := newArrivals()
	if err := arr.listen(bctx, h2); err != nil {
		return nil, err
	}
	cl, err := callback.Dial(ctx, h1.runDir)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	snap := func() ([]lsCounters, error) {
		var out []lsCounters
		for _, h := range c.hosts {
			x, err := countersOf(ctx, h)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
	if res.ctr0, err = snap(); err != nil {
		return nil, err
	}
	res.ctrStart = time.Now()
	stop := make(chan struct{})
	sendDone := make(chan error, 1)
	go func() {
		t0 := time.Now()
		timeout := time.Duration(30*c.io) * time.Second
		for {
			select {
			case <-stop:
				res.dur = time.Since(t0)
				sendDone <- nil
				return
			default:
			}
			r, err := cl.Send(bctx, callback.SendRequest{Lockspace: lsName, Targets: []uint64{uint64(h2.id)},
				Code: leader.EventUser0, Wait: true, Timeout: timeout})
			if err != nil {
				res.dur = time.Since(t0)
				sendDone <- err
				return
			}
			res.sent++
			if !r.OK {
				res.failed++
			}
		}
	}()
	res.io, err = c.idle(ctx, window)
	close(stop)
	if serr := <-sendDone; err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	if res.ctr1, err = snap(); err != nil {
		return nil, err
	}
	res.ctrEnd = time.Now()
	res.perMin = float64(res.sent-res.failed) / res.dur.Minutes()
	arr.mu.Lock()
	res.dups = arr.dups
	arr.mu.Unlock()
	return res, nil
}
