package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"time"
)

// crowdResult is the crowd part: many daemons on one image.
type crowdResult struct {
	n          int
	join       []float64
	idle       *idleResult
	cold       *coldStats
	renewFails int64   // over every daemon, from the join to the end
	maxReadSec float64 // slowest read of any daemon
	load       string  // load average at the end of the idle window
}

// crowdRun starts sc.crowd sanlock-msg daemons on one 512/1M image at
// io_timeout 1 (host ids 1..n), measures them idle, then takes cold
// samples between disjoint pairs in parallel.
func crowdRun(ctx context.Context, sc *scaleConfig) (*crowdResult, error) {
	res := &crowdResult{n: sc.crowd}
	logf("crowd: %d sanlock-msg daemons on one 512/1M image, io 1: starting and joining", sc.crowd)
	c, err := startMsgCluster(ctx, &sc.benchEnv, firstIDs(fmt.Sprintf("crowd%d", sc.crowd), 1, sc.crowd))
	defer c.stop()
	if err != nil {
		return nil, err
	}
	res.join = c.joinTimes()
	if err := sleepCtx(ctx, settle(1)); err != nil {
		return res, err
	}
	w := sc.scaleWindow(1)
	logf("crowd: idle, %v", w)
	if res.idle, err = c.idle(ctx, w); err != nil {
		return res, err
	}
	res.load = loadavg()
	logf("crowd: %s", res.idle.summary())
	var lanes [][]*msgHost
	for i := 0; i+1 < len(c.hosts); i += 2 {
		lanes = append(lanes, c.hosts[i:i+2])
	}
	logf("crowd: cold latency, %d pairs in parallel, %v", len(lanes), sc.crowdLat)
	if res.cold, err = c.cold(ctx, lanes, time.Now().Add(sc.crowdLat), coolDown+3*time.Second); err != nil {
		return res, err
	}
	logf("crowd: %s", res.cold.summary())
	for _, h := range c.hosts {
		x, err := countersOf(ctx, h)
		if err != nil {
			return res, err
		}
		res.renewFails += x.renewFails
		res.maxReadSec = max(res.maxReadSec, x.maxReadSec)
	}
	return res, nil
}

// floorResult is the CPU of a floor program (bench/floor).
type floorResult struct {
	hz    float64
	pread bool
	idle  *idleResult
}

// cpuResult is the CPU part: idle CPU and cold latency against the
// doorbell poll interval, at io_timeout 10, next to the floor programs.
type cpuResult struct {
	ls     []*lsResult
	floors []*floorResult
	window time.Duration
	load   string
}

// cpuRun starts, for every poll interval, a 2-host lockspace (host ids 1
// and 2) and a HIGH-2000 one (1, 2 and 2000) on 512/1M at io_timeout 10,
// and the floor programs (a ticker at 1/P, alone and with a 512-byte
// O_DIRECT pread per tick); measures them all idle over the same window,
// then takes cold samples in each lockspace.
func cpuRun(ctx context.Context, sc *scaleConfig) (*cpuResult, error) {
	const io = 10
	res := &cpuResult{window: sc.scaleWindow(io)}
	var specs []clusterSpec
	for _, p := range sc.polls {
		specs = append(specs,
			clusterSpec{name: fmt.Sprintf("cpu-p%v-n2", p), io: io, ids: []int{1, 2}, geo: geo512, poll: p},
			clusterSpec{name: fmt.Sprintf("cpu-p%v-h2000", p), io: io, ids: []int{1, 2, 2000}, geo: geo512, poll: p})
	}
	logf("cpu: %d lockspaces (poll intervals %v; 2 hosts and HIGH 2000), io 10: starting and joining", len(specs), sc.polls)
	cs, err := startAll(ctx, &sc.benchEnv, specs)
	defer stopAll(cs)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		res.ls = append(res.ls, &lsResult{geo: geo512, io: io, high: c.spec.ids[len(c.spec.ids)-1], ids: c.spec.ids,
			poll: c.spec.poll, replica: 1, join: c.joinTimes()})
	}
	img, err := newImage(sc.imageDir, "floor", int64(geo512.align))
	if err != nil {
		return res, err
	}
	var floorPids []int
	for _, p := range sc.polls {
		hz := float64(time.Second) / float64(p)
		for _, pread := range []bool{false, true} {
			args := []string{"--hz", fmt.Sprint(hz)}
			if pread {
				args = append(args, "--pread", img)
			}
			pr, err := reg.start(fmt.Sprintf("floor %v", args), exec.Command(sc.floorBin, args...))
			if err != nil {
				return res, err
			}
			defer reg.stopProcs([]*proc{pr}, 0)
			floorPids = append(floorPids, pr.pid)
			res.floors = append(res.floors, &floorResult{hz: hz, pread: pread})
		}
	}
	if err := sleepCtx(ctx, settle(io)); err != nil {
		return res, err
	}
	logf("cpu: idle, %v (daemons and %d floor programs)", res.window, len(floorPids))
	var wg sync.WaitGroup
	var floorErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		fr, err := measureIdle(ctx, floorPids, res.window, nil, fullRead(geo512))
		if err != nil {
			floorErr = err
			return
		}
		for i, f := range res.floors {
			f.idle = pick(fr, i)
		}
	}()
	err = eachCluster(cs, func(i int, c *msgCluster) (err error) {
		res.ls[i].idle, err = c.idle(ctx, res.window)
		return err
	})
	wg.Wait()
	res.load = loadavg()
	if err == nil {
		err = floorErr
	}
	if err != nil {
		return res, err
	}
	for _, r := range res.ls {
		logf("  poll %v, ids %v: %s", r.poll, r.ids, r.idle.summary())
	}
	for _, f := range res.floors {
		logf("  floor %.0f Hz pread %v: CPU %s %%", f.hz, f.pread, numRange(f.idle.cpuSchedPct, "%.3f"))
	}
	logf("cpu: cold latency, %v", sc.latency)
	until := time.Now().Add(sc.latency)
	err = eachCluster(cs, func(i int, c *msgCluster) (err error) {
		res.ls[i].cold, err = c.cold(ctx, [][]*msgHost{c.hosts}, until, 3*time.Second)
		return err
	})
	for _, r := range res.ls {
		logf("  poll %v, ids %v: %s", r.poll, r.ids, r.cold.summary())
	}
	return res, err
}

// pick returns process i's share of an idle result.
func pick(r *idleResult, i int) *idleResult {
	one := func(v []float64) []float64 {
		if i < len(v) {
			return []float64{v[i]}
		}
		return nil
	}
	return &idleResult{hosts: 1, window: r.window, procRead: one(r.procRead), procWrite: one(r.procWrite),
		cycles: slices.Clone(r.cycles[i : i+1]), winRead: one(r.winRead), winWrite: one(r.winWrite),
		cpuPct: one(r.cpuPct), cpuSchedPct: one(r.cpuSchedPct), rssMB: one(r.rssMB)}
}
