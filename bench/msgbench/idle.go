package main

import (
	"context"
	"fmt"
	"time"
)

// idleResult is the per-daemon average over an idle window.
type idleResult struct {
	hosts  int
	window time.Duration
	// Per daemon, bytes/s: from /proc/PID/io and from the daemon's own
	// lockspace counters (sanlock-msg only; hasCounters).
	procRead, procWrite []float64
	ctrRead, ctrWrite   []float64
	hasCounters         bool
	cpuPct              []float64 // utime+stime over the window, % of one core
	cpuSchedPct         []float64 // the same from schedstat (ns resolution); empty if unavailable
	rssMB               []float64 // VmRSS at the end, MB
	pollSec             []float64 // idle poll interval (sanlock-msg status)
}

// counterFunc returns a daemon's own cumulative read and write byte
// counters and its poll interval.
type counterFunc func(i int) (read, write int64, pollSec float64, err error)

// measureIdle samples every pid (and its counters) at the start and end
// of window and returns per-second rates per daemon.
func measureIdle(ctx context.Context, pids []int, window time.Duration, counters counterFunc) (*idleResult, error) {
	n := len(pids)
	res := &idleResult{hosts: n, window: window, hasCounters: counters != nil}
	type start struct {
		p    procSample
		r, w int64
	}
	s0 := make([]start, n)
	for i, pid := range pids {
		p, err := sampleProc(pid)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", pid, err)
		}
		s0[i].p = p
		if counters != nil {
			r, w, _, err := counters(i)
			if err != nil {
				return nil, err
			}
			s0[i].r, s0[i].w = r, w
		}
	}
	if err := sleepCtx(ctx, window); err != nil {
		return nil, err
	}
	for i, pid := range pids {
		p, err := sampleProc(pid)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", pid, err)
		}
		dt := p.at.Sub(s0[i].p.at).Seconds()
		res.procRead = append(res.procRead, float64(p.readBytes-s0[i].p.readBytes)/dt)
		res.procWrite = append(res.procWrite, float64(p.writeBytes-s0[i].p.writeBytes)/dt)
		res.cpuPct = append(res.cpuPct, 100*float64(p.cpuTicks-s0[i].p.cpuTicks)/clockTick/dt)
		if p.cpuNs >= 0 && s0[i].p.cpuNs >= 0 {
			res.cpuSchedPct = append(res.cpuSchedPct, 100*float64(p.cpuNs-s0[i].p.cpuNs)/1e9/dt)
		}
		res.rssMB = append(res.rssMB, float64(p.rssKB)*1024/1e6)
		if counters != nil {
			r, w, poll, err := counters(i)
			if err != nil {
				return nil, err
			}
			// The counters are read right after the /proc sample; the
			// status round trip is well under a millisecond.
			res.ctrRead = append(res.ctrRead, float64(r-s0[i].r)/dt)
			res.ctrWrite = append(res.ctrWrite, float64(w-s0[i].w)/dt)
			res.pollSec = append(res.pollSec, poll)
		}
	}
	return res, nil
}

// summary is a one-line description for the progress log.
func (r *idleResult) summary() string {
	s := fmt.Sprintf("%d hosts over %v: /proc read %s write %s", r.hosts, r.window, rateRange(r.procRead), rateRange(r.procWrite))
	if r.hasCounters {
		s += fmt.Sprintf("; counters read %s write %s; poll %s s", rateRange(r.ctrRead), rateRange(r.ctrWrite), numRange(r.pollSec, "%.2f"))
	}
	s += fmt.Sprintf("; CPU %s %% (schedstat %s %%); RSS %s MB", numRange(r.cpuPct, "%.3f"), numRange(r.cpuSchedPct, "%.3f"), numRange(r.rssMB, "%.1f"))
	return s
}
