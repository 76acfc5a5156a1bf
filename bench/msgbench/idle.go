package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// idleResult is what each daemon did over an idle window.
type idleResult struct {
	hosts  int
	window time.Duration
	// Per daemon, bytes/s from /proc/PID/io over whole renewal cycles
	// (below); cycles is how many, 0 when the window held fewer than two
	// full-area reads and the whole window was used instead.
	procRead, procWrite []float64
	cycles              []int
	// Per daemon, bytes/s over the whole window: /proc/PID/io and the
	// daemon's own lockspace counters (sanlock-msg only; hasCounters),
	// read at the same moments so that they can be compared.
	winRead, winWrite []float64
	ctrRead, ctrWrite []float64
	hasCounters       bool
	cpuPct            []float64 // utime+stime over the window, % of one core
	cpuSchedPct       []float64 // the same from schedstat (ns resolution); empty if unavailable
	rssMB             []float64 // VmRSS at the end, MB
	pollSec           []float64 // idle poll interval (sanlock-msg status)
}

// counterFunc returns a daemon's own cumulative read and write byte
// counters and its poll interval.
type counterFunc func(i int) (read, write int64, pollSec float64, err error)

// fullRead is the least a sample must grow read_bytes by to count as a
// read of the whole area of geometry g: 90 % of it (a doorbell poll reads
// one sector, a renewal of a sanlock-msg host the used part).
func fullRead(g geometry) int64 { return int64(g.align) * 9 / 10 }

// ioPoint is one reading of /proc/PID/io.
type ioPoint struct {
	at   time.Time
	r, w int64
}

// sampleInterval is how often /proc/PID/io of n processes is read during
// the window: every 50 ms, less often for many processes (1 ms each).
func sampleInterval(n int) time.Duration {
	return max(50*time.Millisecond, time.Duration(n)*time.Millisecond)
}

// measureIdle watches every pid over window. Reads are bursty: both
// daemons read the whole area at some renewals (sanlock at every one,
// sanlock-msg at every fourth) and little in between, so a rate over an
// arbitrary window depends on how many full reads it happens to hold. The
// /proc rates are therefore taken per daemon between the moments just
// before its first and its last full read in the window: whole cycles.
func measureIdle(ctx context.Context, pids []int, window time.Duration, counters counterFunc, full int64) (*idleResult, error) {
	n := len(pids)
	res := &idleResult{hosts: n, window: window, hasCounters: counters != nil}
	type start struct {
		p    procSample
		r, w int64
	}
	s0 := make([]start, n)
	series := make([][]ioPoint, n)
	for i, pid := range pids {
		p, r, w, _, err := sampleBoth(pid, i, counters)
		if err != nil {
			return nil, err
		}
		s0[i].p, s0[i].r, s0[i].w = p, r, w
		series[i] = append(series[i], ioPoint{p.at, p.readBytes, p.writeBytes})
	}
	end := time.Now().Add(window)
	tick := time.NewTicker(sampleInterval(n))
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		for i, pid := range pids {
			pt, err := readIO(pid)
			if err != nil {
				return nil, fmt.Errorf("pid %d: %w", pid, err)
			}
			series[i] = append(series[i], pt)
		}
	}
	for i, pid := range pids {
		p, r, w, poll, err := sampleBoth(pid, i, counters)
		if err != nil {
			return nil, err
		}
		series[i] = append(series[i], ioPoint{p.at, p.readBytes, p.writeBytes})
		dt := p.at.Sub(s0[i].p.at).Seconds()
		res.winRead = append(res.winRead, float64(p.readBytes-s0[i].p.readBytes)/dt)
		res.winWrite = append(res.winWrite, float64(p.writeBytes-s0[i].p.writeBytes)/dt)
		res.cpuPct = append(res.cpuPct, 100*float64(p.cpuTicks-s0[i].p.cpuTicks)/clockTick/dt)
		if p.cpuNs >= 0 && s0[i].p.cpuNs >= 0 {
			res.cpuSchedPct = append(res.cpuSchedPct, 100*float64(p.cpuNs-s0[i].p.cpuNs)/1e9/dt)
		}
		res.rssMB = append(res.rssMB, float64(p.rssKB)*1024/1e6)
		if counters != nil {
			res.ctrRead = append(res.ctrRead, float64(r-s0[i].r)/dt)
			res.ctrWrite = append(res.ctrWrite, float64(w-s0[i].w)/dt)
			res.pollSec = append(res.pollSec, poll)
		}
		cr, cw, cycles := cycleRates(series[i], full)
		res.procRead, res.procWrite, res.cycles = append(res.procRead, cr), append(res.procWrite, cw), append(res.cycles, cycles)
	}
	return res, nil
}

// sampleBoth reads pid's /proc counters and, if counters is set, the
// daemon's own, bracketing the /proc read between two identical readings
// of the daemon's counters so that no I/O falls between the two.
func sampleBoth(pid, i int, counters counterFunc) (p procSample, r, w int64, poll float64, err error) {
	for try := 0; ; try++ {
		var r0, w0 int64
		if counters != nil {
			if r0, w0, _, err = counters(i); err != nil {
				return
			}
		}
		if p, err = sampleProc(pid); err != nil {
			err = fmt.Errorf("pid %d: %w", pid, err)
			return
		}
		if counters == nil {
			return
		}
		if r, w, poll, err = counters(i); err != nil || (r == r0 && w == w0) || try == 10 {
			return
		}
	}
}

// cycleRates returns the read and write rates between the samples just
// before the first and the last full-area read, and the number of whole
// cycles between them; with fewer than two full reads, the rates over
// the whole series and 0.
func cycleRates(s []ioPoint, full int64) (read, write float64, cycles int) {
	var jumps []int
	for k := 1; k < len(s); k++ {
		if s[k].r-s[k-1].r >= full {
			jumps = append(jumps, k)
		}
	}
	a, b := 0, len(s)-1
	if len(jumps) >= 2 {
		a, b, cycles = jumps[0]-1, jumps[len(jumps)-1]-1, len(jumps)-1
	}
	dt := s[b].at.Sub(s[a].at).Seconds()
	return float64(s[b].r-s[a].r) / dt, float64(s[b].w-s[a].w) / dt, cycles
}

// readIO reads read_bytes and write_bytes of /proc/PID/io.
func readIO(pid int) (ioPoint, error) {
	pt := ioPoint{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return pt, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "read_bytes":
			pt.r, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		case "write_bytes":
			pt.w, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return pt, nil
}

// summary is a one-line description for the progress log.
func (r *idleResult) summary() string {
	s := fmt.Sprintf("%d hosts over %v: /proc read %s write %s over %s whole cycles", r.hosts, r.window,
		rateRange(r.procRead), rateRange(r.procWrite), intRange(r.cycles))
	s += fmt.Sprintf("; whole window: /proc read %s write %s", rateRange(r.winRead), rateRange(r.winWrite))
	if r.hasCounters {
		s += fmt.Sprintf(", counters read %s write %s; poll %s s", rateRange(r.ctrRead), rateRange(r.ctrWrite), numRange(r.pollSec, "%.2f"))
	}
	s += fmt.Sprintf("; CPU %s %% (schedstat %s %%); RSS %s MB", numRange(r.cpuPct, "%.3f"), numRange(r.cpuSchedPct, "%.3f"), numRange(r.rssMB, "%.1f"))
	return s
}

func intRange(v []int) string {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return numRange(f, "%.0f")
}
