package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// msgHost is one sanlock-msg daemon holding one host id.
type msgHost struct {
	id     int
	runDir string
	p      *proc
	join   time.Duration
}

// msgCluster is n sanlock-msg daemons joined to one lockspace on one image.
type msgCluster struct {
	io    int
	spec  clusterSpec
	area  *area
	hosts []*msgHost
}

// buildCLI builds the module's package pkg (e.g. ./cmd/sanlock-msg) into
// dir and returns the binary's path.
func buildCLI(ctx context.Context, dir, pkg string) (string, error) {
	goBin := "go"
	if _, err := exec.LookPath(goBin); err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	full := "github.com/sanlock-msg/sanlock-msg/" + strings.TrimPrefix(pkg, "./")
	if _, err := runCmd(ctx, 5*time.Minute, nil, goBin, "build", "-o", bin, full); err != nil {
		return "", fmt.Errorf("build %s (run msgbench from inside the module): %w", pkg, err)
	}
	return bin, nil
}

// clusterSpec says what cluster to start: which host ids, on what
// area, at which io_timeout.
type clusterSpec struct {
	name string // unique among the clusters of a run (files, run dirs)
	io   int
	ids  []int
	geo  geometry
	// poll is the sanlock-msg daemons' --poll-interval (0: default).
	poll time.Duration
}

// firstIDs is a spec for host ids 1..n on a 512/1M file.
func firstIDs(name string, io, n int) clusterSpec {
	s := clusterSpec{name: name, io: io, geo: geo512}
	for i := 1; i <= n; i++ {
		s.ids = append(s.ids, i)
	}
	return s
}

// startMsgCluster makes an area, starts a daemon per host id of spec and
// joins them (in parallel, like a cluster booting).
func startMsgCluster(ctx context.Context, e *benchEnv, spec clusterSpec) (*msgCluster, error) {
	c := &msgCluster{io: spec.io, spec: spec}
	a, err := newArea(ctx, e, "msg-"+spec.name, spec.geo)
	if err != nil {
		return nil, err
	}
	c.area = a
	args := append([]string{"init", "-s", fmt.Sprintf("%s:0:%s:0", lsName, a.path()), "-o", fmt.Sprint(spec.io)}, spec.geo.initArgs()...)
	if _, err := runCmd(ctx, time.Minute, nil, e.bin, args...); err != nil {
		return c, err
	}
	for _, id := range spec.ids {
		h := &msgHost{id: id, runDir: filepath.Join(e.tmp, fmt.Sprintf("m-%s-%d", spec.name, id))}
		if err := os.MkdirAll(h.runDir, 0o700); err != nil {
			return c, err
		}
		args := []string{"daemon", "--run-dir", h.runDir, "--state-dir", filepath.Join(h.runDir, "state"), "--watchdog", "none", "-e", fmt.Sprintf("h%d", id)}
		if spec.poll != 0 {
			args = append(args, "--poll-interval", spec.poll.String())
		}
		cmd := exec.Command(e.bin, args...)
		h.p, err = reg.startLogged(fmt.Sprintf("sanlock-msg daemon %s h%d", spec.name, id), cmd, h.runDir+".log")
		if err != nil {
			return c, err
		}
		runDir := h.runDir
		h.p.stop = func(ctx context.Context) error {
			cl, err := callback.Dial(ctx, runDir)
			if err != nil {
				return err
			}
			defer cl.Close()
			return cl.Shutdown(ctx, true, false)
		}
		c.hosts = append(c.hosts, h)
	}
	for _, h := range c.hosts {
		if err := waitMsgDaemon(ctx, h); err != nil {
			return c, err
		}
	}
	errs := make([]error, len(c.hosts))
	var wg sync.WaitGroup
	for i, h := range c.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := callback.Dial(ctx, h.runDir)
			if err != nil {
				errs[i] = err
				return
			}
			defer cl.Close()
			t0 := time.Now()
			spec := fmt.Sprintf("%s:%d:%s:0", lsName, h.id, a.path())
			_, err = cl.AddLockspace(ctx, spec, callback.AddOptions{IOTimeout: time.Duration(c.io) * time.Second})
			h.join = time.Since(t0)
			if err != nil {
				errs[i] = fmt.Errorf("add_lockspace %s: %w", spec, err)
			}
		}()
	}
	wg.Wait()
	return c, errors.Join(errs...)
}

func waitMsgDaemon(ctx context.Context, h *msgHost) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		cl, err := callback.Dial(ctx, h.runDir)
		if err == nil {
			_, err = cl.Status(ctx)
			cl.Close()
			if err == nil {
				return nil
			}
		}
		if h.p.exited() {
			return fmt.Errorf("%s exited at start; see %s.log", h.p.name, h.runDir)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer after 15 s: %v", h.p.name, err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// stop stops every daemon and removes the image.
func (c *msgCluster) stop() {
	if c == nil {
		return
	}
	var ps []*proc
	for _, h := range c.hosts {
		if h.p != nil {
			ps = append(ps, h.p)
		}
	}
	reg.stopProcs(ps, 15*time.Second)
	c.area.remove()
}

func (c *msgCluster) joinTimes() []float64 {
	var v []float64
	for _, h := range c.hosts {
		v = append(v, h.join.Seconds())
	}
	return v
}

// lsStatus returns host h's status of the bench lockspace.
func lsStatus(ctx context.Context, runDir string) (*callback.LockspaceStatus, error) {
	cl, err := callback.Dial(ctx, runDir)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return nil, err
	}
	for i := range st.Lockspaces {
		if st.Lockspaces[i].Name == lsName {
			return &st.Lockspaces[i], nil
		}
	}
	return nil, fmt.Errorf("%s: lockspace %s not in status", runDir, lsName)
}

// idleMsg measures idle I/O, CPU and RSS of every daemon of c.
func (c *msgCluster) idle(ctx context.Context, window time.Duration) (*idleResult, error) {
	pids := make([]int, len(c.hosts))
	for i, h := range c.hosts {
		pids[i] = h.p.pid
	}
	counters := func(i int) (int64, int64, float64, error) {
		st, err := lsStatus(ctx, c.hosts[i].runDir)
		if err != nil {
			return 0, 0, 0, err
		}
		return st.ReadBytes, st.WriteBytes, st.PollSec, nil
	}
	return measureIdle(ctx, pids, window, counters, fullRead(c.spec.geo))
}

// receiver collects records from a registration with their arrival time.
type arrival struct {
	rec callback.Record
	at  time.Time
}

func receive(ctx context.Context, g *callback.Registration) <-chan arrival {
	ch := make(chan arrival, 8192)
	go func() {
		defer close(ch)
		for {
			rec, err := g.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					logf("listener: %v", err)
				}
				return
			}
			select {
			case ch <- arrival{rec, time.Now()}:
			default:
				logf("receiver: channel full, record dropped")
			}
		}
	}()
	return ch
}

// msgLatency holds the message measurements between hosts 1 and 2.
type msgLatency struct {
	oneWay     []float64 // seconds, Send (no wait) -> record at the listener
	oneWayIdle []float64 // the subset sent after idleGap of quiet
	rtt        []float64 // seconds, Send with Wait -> acked reply
	rttFails   int
	perMin     float64 // acked messages per minute, back-to-back
	tputSent   int
	tputFail   int
	tputDur    time.Duration
	dups       int // records delivered more than once
	outOfOrder int
	lost       int // one-way messages that never arrived
}

// idleGap is how long the pair must have been quiet for a one-way sample
// to count as "from idle": past hostmsg's ActiveWindow (2 s), when the
// receiver is back at its idle poll rate.
const idleGap = 2500 * time.Millisecond

// latency runs the one-way, round-trip and throughput measurements from
// host 1 to host 2.
func (c *msgCluster) latency(ctx context.Context, cfg *config) (*msgLatency, error) {
	res := &msgLatency{}
	h1, h2 := c.hosts[0], c.hosts[1]
	g, err := callback.Register(ctx, h2.runDir, lsName)
	if err != nil {
		return nil, err
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer func() {
		rcancel()
		g.Close()
	}()
	recs := receive(rctx, g)
	cl, err := callback.Dial(ctx, h1.runDir)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	seen := map[uint64]int{}
	var lastSeq uint64
	note := func(a arrival) {
		if a.rec.Type != callback.RecordMessage {
			logf("listener: %s record: %+v", a.rec.Type, a.rec)
			return
		}
		seen[a.rec.Seq]++
		if seen[a.rec.Seq] > 1 {
			res.dups++
		}
		if a.rec.Seq <= lastSeq && seen[a.rec.Seq] == 1 {
			res.outOfOrder++
		}
		lastSeq = max(lastSeq, a.rec.Seq)
	}
	drain := func() {
		for {
			select {
			case a, ok := <-recs:
				if !ok {
					return
				}
				note(a)
			default:
				return
			}
		}
	}
	msgTimeout := time.Duration(30*c.io) * time.Second
	send := func(wait bool) (*callback.SendReply, error) {
		return cl.Send(ctx, callback.SendRequest{Lockspace: lsName, Targets: []uint64{uint64(h2.id)},
			Code: leader.EventUser0, Wait: wait, Timeout: msgTimeout})
	}
	// Warm up: one acked message, so both sides know each other.
	if r, err := send(true); err != nil || !r.OK {
		return nil, fmt.Errorf("warm-up send: %v %+v", err, r)
	}
	waitFor := func(seq uint64) (time.Time, bool) {
		tm := time.NewTimer(msgTimeout)
		defer tm.Stop()
		for {
			select {
			case a, ok := <-recs:
				if !ok {
					return time.Time{}, false
				}
				note(a)
				if a.rec.Type == callback.RecordMessage && a.rec.Seq == seq {
					return a.at, true
				}
			case <-tm.C:
				return time.Time{}, false
			case <-ctx.Done():
				return time.Time{}, false
			}
		}
	}
	// The sender's outbox holds one message on disk at a time: wait until
	// the previous one is acked so that a sample never queues behind it.
	idleSender := func() (time.Time, error) {
		deadline := time.Now().Add(msgTimeout)
		for {
			st, err := lsStatus(ctx, h1.runDir)
			if err != nil {
				return time.Time{}, err
			}
			if st.Messages != nil && st.Messages.Pending == 0 {
				return time.Now(), nil
			}
			if time.Now().After(deadline) {
				return time.Time{}, fmt.Errorf("host 1 still has %d pending sends", st.Messages.Pending)
			}
			if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
				return time.Time{}, err
			}
		}
	}
	quietSince, err := idleSender()
	if err != nil {
		return nil, err
	}
	gap := func() time.Duration {
		return cfg.gapMin + time.Duration(rand.Int64N(int64(cfg.gapMax-cfg.gapMin)+1))
	}

	logf("io %d: one-way latency, %d messages, gaps %v..%v", c.io, cfg.messages, cfg.gapMin, cfg.gapMax)
	for i := 0; i < cfg.messages; i++ {
		if err := sleepCtx(ctx, gap()); err != nil {
			return nil, err
		}
		drain()
		t0 := time.Now()
		quiet := t0.Sub(quietSince)
		r, err := send(false)
		if err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		at, ok := waitFor(r.Seq)
		if !ok {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			res.lost++
			logf("seq %d never reached the listener within %v", r.Seq, msgTimeout)
		} else {
			lat := at.Sub(t0).Seconds()
			res.oneWay = append(res.oneWay, lat)
			if quiet >= idleGap {
				res.oneWayIdle = append(res.oneWayIdle, lat)
			}
		}
		if quietSince, err = idleSender(); err != nil {
			return nil, err
		}
		if (i+1)%25 == 0 {
			logf("  %d/%d, p50 so far %.3f s", i+1, cfg.messages, percentile(res.oneWay, 50))
		}
	}

	logf("io %d: acked round trip, %d messages", c.io, cfg.rtts)
	for i := 0; i < cfg.rtts; i++ {
		if err := sleepCtx(ctx, gap()); err != nil {
			return nil, err
		}
		drain()
		t0 := time.Now()
		r, err := send(true)
		if err != nil {
			return nil, fmt.Errorf("send --wait: %w", err)
		}
		if !r.OK {
			res.rttFails++
			logf("seq %d: %s", r.Seq, r.Error)
			continue
		}
		res.rtt = append(res.rtt, time.Since(t0).Seconds())
		if (i+1)%25 == 0 {
			logf("  %d/%d, p50 so far %.3f s", i+1, cfg.rtts, percentile(res.rtt, 50))
		}
	}

	if cfg.throughput > 0 {
		logf("io %d: acked throughput, back-to-back for %v", c.io, cfg.throughput)
		t0 := time.Now()
		end := t0.Add(cfg.throughput)
		for time.Now().Before(end) {
			drain()
			r, err := send(true)
			if err != nil {
				return nil, fmt.Errorf("send --wait: %w", err)
			}
			res.tputSent++
			if !r.OK {
				res.tputFail++
			}
		}
		res.tputDur = time.Since(t0)
		res.perMin = float64(res.tputSent-res.tputFail) / res.tputDur.Minutes()
	}
	// Let the last records arrive, then check exactly-once.
	sleepCtx(ctx, time.Second)
	drain()
	return res, nil
}

// msgDeliveries summarises exactly-once: every seq seen once.
func (l *msgLatency) deliveries() string {
	if l.dups == 0 && l.outOfOrder == 0 {
		return "1 (exactly once, in order)"
	}
	return fmt.Sprintf("%d duplicates, %d out of order", l.dups, l.outOfOrder)
}

func sortedCopy(v []float64) []float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s
}
