package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// scaleReport collects the scale run's results.
type scaleReport struct {
	sc     *scaleConfig
	start  time.Time
	end    time.Time
	load0  string
	waves  []string // "name: load average at its start"
	sparse []*lsResult
	slk    []*slkResult
	crowd  *crowdResult
	cpu    *cpuResult
	failed []string
}

func newScaleReport(sc *scaleConfig) *scaleReport {
	return &scaleReport{sc: sc, start: time.Now(), load0: loadavg()}
}

// wave notes the start of a part, with the load average.
func (r *scaleReport) wave(name string) {
	r.waves = append(r.waves, fmt.Sprintf("%s at +%v: load %s", name, time.Since(r.start).Round(time.Second), loadavg()))
}

// pooled merges the lockspaces of one configuration.
type pooled struct {
	n     int
	poll  []float64
	idle  idleResult
	cold  coldStats
	burst []*burstResult
	ls    []*lsResult
}

func (r *scaleReport) pool(rs []*lsResult, geo geometry, io, high int) *pooled {
	p := &pooled{}
	for _, x := range rs {
		if x.geo != geo || x.io != io || x.high != high {
			continue
		}
		p.n++
		p.ls = append(p.ls, x)
		if x.idle != nil {
			mergeIdle(&p.idle, x.idle)
			p.poll = append(p.poll, x.idle.pollSec...)
		}
		if x.cold != nil {
			p.cold.add(x.cold)
		}
		if x.burst != nil {
			p.burst = append(p.burst, x.burst)
		}
	}
	if p.n == 0 {
		return nil
	}
	return p
}

func mergeIdle(dst, src *idleResult) {
	dst.hosts += src.hosts
	dst.window = src.window
	dst.hasCounters = src.hasCounters
	dst.procRead = append(dst.procRead, src.procRead...)
	dst.procWrite = append(dst.procWrite, src.procWrite...)
	dst.cycles = append(dst.cycles, src.cycles...)
	dst.winRead = append(dst.winRead, src.winRead...)
	dst.winWrite = append(dst.winWrite, src.winWrite...)
	dst.ctrRead = append(dst.ctrRead, src.ctrRead...)
	dst.ctrWrite = append(dst.ctrWrite, src.ctrWrite...)
	dst.cpuPct = append(dst.cpuPct, src.cpuPct...)
	dst.cpuSchedPct = append(dst.cpuSchedPct, src.cpuSchedPct...)
	dst.rssMB = append(dst.rssMB, src.rssMB...)
	dst.pollSec = append(dst.pollSec, src.pollSec...)
}

func (r *scaleReport) slkFor(geo geometry, io, high int) *slkResult {
	for _, s := range r.slk {
		if s.geo == geo && s.io == io && s.high == high {
			return s
		}
	}
	return nil
}

// eachConfig calls f for every (geometry, io_timeout, HIGH) measured
// with sanlock-msg daemons, in order, with their pooled results.
func (r *scaleReport) eachConfig(f func(g geometry, io, high int, x *pooled)) {
	for _, g := range r.sc.geos {
		for _, io := range r.sc.ios {
			for _, h := range r.highsOf(g) {
				if x := r.pool(r.sparse, g, io, h); x != nil {
					f(g, io, h, x)
				}
			}
		}
	}
}

// highsOf returns the HIGH values measured for geo, ascending.
func (r *scaleReport) highsOf(geo geometry) []int {
	var hs []int
	for _, h := range r.sc.highs {
		hs = append(hs, min(h, geo.maxHosts()))
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}

// role is a daemon's part in a burst: 0 sender (host 1), 1 receiver
// (host 2), 2 bystander (HIGH).
var roleNames = []string{"sender", "receiver", "HIGH"}

// burstExtra is what a daemon read during bursts beyond its idle
// pattern, from its counters: doorbell polls beyond one per poll
// interval, planned reads, ring reads, scans (as the used area).
type burstExtra struct {
	burst, idle float64 // /proc read rates, means over the bursts
	sectors     float64 // extra sectors
	msgs        int     // messages sent in the bursts
	polls       float64 // idle poll intervals the bursts spanned
}

func (e burstExtra) perMsg() float64  { return e.sectors / float64(e.msgs) }
func (e burstExtra) perPoll() float64 { return e.sectors / e.polls }

// allowance is msgloop's TestClusterBusyBudget rule (docs/design-notes.md,
// "I/O budget"): at most 8 sectors per message and 5 per doorbell poll
// interval (the fast polls while messages flow) beyond the idle reads.
func (e burstExtra) allowance() float64 { return 8*float64(e.msgs) + 5*e.polls }

// burstRole sums, over the bursts of p, what the daemon with role k
// read (0 the sender, host 1; 1 the receiver, host 2; 2 HIGH).
func (p *pooled) burstRole(k int, geo geometry) (burstExtra, bool) {
	var e burstExtra
	var bs, is []float64
	for _, x := range p.ls {
		b := x.burst
		if b == nil || x.idle == nil || k >= len(b.io.procRead) || b.sent == 0 {
			continue
		}
		c0, c1 := b.ctr0[k], b.ctr1[k]
		poll := c1.pollSec
		if poll <= 0 {
			continue
		}
		bs = append(bs, b.io.procRead[k])
		is = append(is, x.idle.procRead[k])
		dt := b.ctrEnd.Sub(b.ctrStart).Seconds()
		used := float64(min(x.high+8, geo.maxHosts()))
		e.sectors += float64(c1.polls-c0.polls) - dt/poll + float64(c1.targetedBytes-c0.targetedBytes)/float64(geo.ss) +
			float64(c1.rings-c0.rings) + float64(c1.scans-c0.scans)*used
		e.msgs += b.sent
		e.polls += dt / poll
	}
	if len(bs) == 0 {
		return e, false
	}
	e.burst, e.idle = mean(bs), mean(is)
	return e, true
}

func (r *scaleReport) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	sc := r.sc
	p("## msgbench scale results, %s\n\n", r.start.UTC().Format("2006-01-02 15:04 MST"))
	p("Machine: %s, %d CPUs, Linux %s; load average %s at start, %s at end. %s. sanlock-msg %s. Took %s.\n\n",
		hostname(), runtime.NumCPU(), kernel(), r.load0, loadavg(), sanlockVersion(), gitRev(), r.end.Sub(r.start).Round(time.Second))
	p("Settings: geometries %v (4096-byte sectors on loop devices), io_timeouts %v, HIGH %v, %d lockspace(s) per configuration; "+
		"cold samples for %v per wave; idle and burst windows %s; crowd of %d; poll intervals %v.\n\n",
		sc.geos, sc.ios, sc.highs, sc.replicas, sc.latency, windowsOf(sc), sc.crowd, sc.polls)
	p("Parts, with the load average when each started:\n\n")
	for _, w := range r.waves {
		p("- %s\n", w)
	}
	p("\n")
	if g := r.goals(); len(g) > 0 {
		p("### Goals of issue 9\n\n")
		for _, x := range g {
			p("- %s\n", x)
		}
		p("\n")
	}
	if len(r.sparse) > 0 {
		r.latencyTable(&b)
		r.readsTable(&b)
		r.cpuTable(&b)
	}
	r.eventsTable(&b)
	r.crowdTable(&b)
	r.cpuSweep(&b)
	if len(r.failed) > 0 {
		p("### Failures\n\n")
		for _, f := range r.failed {
			p("- %s\n", f)
		}
		p("\n")
	}
	return b.String()
}

func windowsOf(sc *scaleConfig) string {
	var s []string
	for _, io := range sc.ios {
		s = append(s, fmt.Sprintf("%v at io %d (sanlock %v)", sc.scaleWindow(io), io, slkWindow(io)))
	}
	return strings.Join(s, ", ")
}

func (r *scaleReport) latencyTable(b *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("### Cold latency: sanlock-msg daemons at host ids 1, 2 and HIGH\n\n")
	p("Each sample: `Send` with Wait from one daemon to another, both quiet for ≥ 10 s; one-way is the call to the record leaving the receiver's registration, acked the call to its reply. Pooled over the lockspaces of a configuration.\n\n")
	p("| area | io | HIGH | samples | one-way p50 | p99 | max | acked p50 | p99 | max | lost / failed / duplicates |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|\n")
	r.eachConfig(func(g geometry, io, h int, x *pooled) {
		c := x.cold
		if len(c.oneWay) == 0 {
			return
		}
		p("| %s | %d | %d | %d | %s | %s | %s | %s | %s | %s | %d / %d / %d |\n", g, io, h, len(c.oneWay),
			secs(percentile(c.oneWay, 50)), secs(percentile(c.oneWay, 99)), secs(percentile(c.oneWay, 100)),
			secs(percentile(c.acked, 50)), secs(percentile(c.acked, 99)), secs(percentile(c.acked, 100)), c.lost, c.failed, c.dups)
	})
	p("\nPercentiles interpolate between ranks; with fewer than 100 samples p99 is close to the maximum.\n\n")
}

func (r *scaleReport) readsTable(b *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("### Reads per host\n\n")
	p("Idle: `/proc/PID/io` read_bytes over whole cycles (between full-area reads), mean over the daemons (host ids 1, 2 and HIGH read the same: host ids 1..HIGH+8 at renewals, the whole area every fourth). " +
		"Burst: host 1 sends to host 2 back to back (`Send` with Wait) over the same length of window; extra sectors from the daemon's counters: doorbell polls beyond one per P, planned reads, rings, scans (× the used area). KB = 1000 bytes.\n\n")
	p("| area | io | HIGH | poll P | sanlock-msg idle | sanlock idle | ratio | burst: sender | receiver | HIGH | extra sectors per message: sender / receiver | per poll interval | scans in the burst | acked msgs/min |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	r.eachConfig(func(g geometry, io, h int, x *pooled) {
		if len(x.idle.procRead) == 0 {
			return
		}
		ours := mean(x.idle.procRead)
		slk, ratio := "", ""
		if s := r.slkFor(g, io, h); s != nil && s.idle != nil {
			slk = rate(mean(s.idle.procRead))
			ratio = fmt.Sprintf("%.0f %%", 100*ours/mean(s.idle.procRead))
		}
		var cells [3]string
		var pm, pp [3]float64
		for k := range 3 {
			if e, ok := x.burstRole(k, g); ok {
				cells[k] = fmt.Sprintf("%s (idle %s)", rate(e.burst), rate(e.idle))
				pm[k], pp[k] = e.perMsg(), e.perPoll()
			}
		}
		var scans int64
		var perMin []float64
		for _, bu := range x.burst {
			scans += bu.scans()
			perMin = append(perMin, bu.perMin)
		}
		tput := ""
		if len(perMin) > 0 {
			tput = numRange(perMin, "%.0f")
		}
		extra := ""
		if cells[0] != "" {
			extra = fmt.Sprintf("%.1f / %.1f", pm[0], pm[1])
		}
		per := ""
		if cells[0] != "" {
			per = fmt.Sprintf("%.1f / %.1f", pp[0], pp[1])
		}
		p("| %s | %d | %d | %s s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", g, io, h, numRange(x.poll, "%.2f"),
			rate(ours), slk, ratio, cells[0], cells[1], cells[2], extra, per, scansCell(x, scans), tput)
	})
	p("\n")
}

func scansCell(x *pooled, scans int64) string {
	if len(x.burst) == 0 {
		return ""
	}
	return fmt.Sprint(scans)
}

func (r *scaleReport) cpuTable(b *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("### Idle CPU, memory and writes per daemon\n\n")
	p("CPU: the threads' schedstat run time over the idle window, %% of one core, mean (min–max) over the daemons. sanlock: its main process (its forked helper is not counted). Writes: /proc write_bytes, the least-charged daemon (an O_DIRECT write to an image file now and then also dirties a 4 KiB page of file system metadata; README).\n\n")
	p("| area | io | HIGH | sanlock-msg CPU | sanlock CPU | sanlock-msg RSS | sanlock RSS | writes: sanlock-msg / sanlock |\n")
	p("|---|---|---|---|---|---|---|---|\n")
	r.eachConfig(func(g geometry, io, h int, x *pooled) {
		if len(x.idle.cpuSchedPct) == 0 {
			return
		}
		sCPU, sRSS, sW := "", "", ""
		if s := r.slkFor(g, io, h); s != nil && s.idle != nil {
			sCPU = numRange(s.idle.cpuSchedPct, "%.3f") + " %"
			sRSS = numRange(s.idle.rssMB, "%.1f") + " MB"
			sW = rate(slices.Min(s.idle.procWrite))
		}
		p("| %s | %d | %d | %s %% | %s | %s MB | %s | %s / %s |\n", g, io, h, numRange(x.idle.cpuSchedPct, "%.3f"), sCPU,
			numRange(x.idle.rssMB, "%.1f"), sRSS, rate(slices.Min(x.idle.procWrite)), sW)
	})
	p("\n")
}

func (r *scaleReport) eventsTable(b *strings.Builder) {
	var rows []string
	for _, s := range r.slk {
		if s.events == nil || len(s.events.latency) == 0 {
			continue
		}
		e := s.events
		rows = append(rows, fmt.Sprintf("| %s | %d | %d | %d (%d lost) | %s | %s | %s | %s | %d–%d (mean %.1f) |", s.geo, s.io, s.high,
			len(e.latency), e.lost, secs(percentile(e.latency, 50)), secs(percentile(e.latency, 99)), secs(percentile(e.latency, 100)),
			secs(mean(e.latency)), slices.Min(e.deliveries), slices.Max(e.deliveries), meanInt(e.deliveries)))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "### Real sanlock: event latency (reference)\n\n")
	fmt.Fprintf(b, "python3-sanlock `set_event` on host 1 → first `get_event` on host 2 (msgbench's pair bench does the same; each event held 1–2 renewal intervals).\n\n")
	fmt.Fprintf(b, "| area | io | HIGH | events | p50 | p99 | max | mean | deliveries per event |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range rows {
		fmt.Fprintln(b, row)
	}
	fmt.Fprintln(b)
}

func (r *scaleReport) crowdTable(b *strings.Builder) {
	c := r.crowd
	if c == nil || c.idle == nil {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("### Crowd: %d sanlock-msg daemons on one 512/1M image, io_timeout 1\n\n", c.n)
	sumCPU := 0.0
	for _, x := range c.idle.cpuSchedPct {
		sumCPU += x
	}
	p("| metric | value |\n|---|---|\n")
	p("| join (add_lockspace, all in parallel) | %s s |\n", numRange(c.join, "%.1f"))
	p("| idle read per host (/proc, whole cycles) | %s |\n", rateRange(c.idle.procRead))
	p("| idle read per host, sanlock (the whole area per renewal) | %s |\n", rate(float64(geo512.align)/renewalInterval(1).Seconds()))
	p("| idle poll interval | %s s |\n", numRange(c.idle.pollSec, "%.2f"))
	p("| idle CPU per daemon (schedstat) | %s %% |\n", numRange(c.idle.cpuSchedPct, "%.3f"))
	p("| idle CPU, all daemons together | %.1f %% of one core (load average %s) |\n", sumCPU, c.load)
	p("| RSS per daemon | %s MB |\n", numRange(c.idle.rssMB, "%.1f"))
	if s := c.cold; s != nil && len(s.oneWay) > 0 {
		p("| cold one-way latency p50 / p99 / max (%d samples, %d pairs in parallel) | %s / %s / %s |\n", len(s.oneWay), c.n/2,
			secs(percentile(s.oneWay, 50)), secs(percentile(s.oneWay, 99)), secs(percentile(s.oneWay, 100)))
		p("| cold acked p50 / p99 / max | %s / %s / %s |\n", secs(percentile(s.acked, 50)), secs(percentile(s.acked, 99)), secs(percentile(s.acked, 100)))
		p("| lost / failed / duplicates | %d / %d / %d |\n", s.lost, s.failed, s.dups)
	}
	p("| failed renewals (all daemons) ; slowest read | %d ; %.3f s |\n\n", c.renewFails, c.maxReadSec)
}

func (r *scaleReport) cpuSweep(b *strings.Builder) {
	c := r.cpu
	if c == nil {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("### Idle CPU against the doorbell poll interval (512/1M, io_timeout 10)\n\n")
	p("All measured over the same %v window (load average %s at its end). The floor programs (bench/floor) are a bare Go program with a time.Ticker at 1/P, and the same with a 512-byte O_DIRECT pread per tick: what one doorbell poll costs on this machine, without anything else of the daemon.\n\n", c.window, c.load)
	p("| poll P | CPU, 2 hosts | CPU, HIGH 2000 | floor: ticker | floor: ticker + pread | reads per host, 2 hosts | HIGH 2000 | cold one-way p50 / p99 / max, 2 hosts | HIGH 2000 | RSS |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, poll := range r.sc.polls {
		var two, high *lsResult
		for _, x := range c.ls {
			if x.poll != poll {
				continue
			}
			if len(x.ids) == 2 {
				two = x
			} else {
				high = x
			}
		}
		var tick, pread string
		for _, f := range c.floors {
			if math.Abs(f.hz-float64(time.Second)/float64(poll)) > 1e-9 || f.idle == nil {
				continue
			}
			if f.pread {
				pread = numRange(f.idle.cpuSchedPct, "%.3f") + " %"
			} else {
				tick = numRange(f.idle.cpuSchedPct, "%.3f") + " %"
			}
		}
		cpu := func(x *lsResult) string {
			if x == nil || x.idle == nil {
				return ""
			}
			return numRange(x.idle.cpuSchedPct, "%.3f") + " %"
		}
		rd := func(x *lsResult) string {
			if x == nil || x.idle == nil {
				return ""
			}
			return rate(mean(x.idle.procRead))
		}
		lat := func(x *lsResult) string {
			if x == nil || x.cold == nil || len(x.cold.oneWay) == 0 {
				return ""
			}
			return fmt.Sprintf("%s / %s / %s (n=%d)", secs(percentile(x.cold.oneWay, 50)), secs(percentile(x.cold.oneWay, 99)),
				secs(percentile(x.cold.oneWay, 100)), len(x.cold.oneWay))
		}
		var rss []float64
		for _, x := range []*lsResult{two, high} {
			if x != nil && x.idle != nil {
				rss = append(rss, x.idle.rssMB...)
			}
		}
		p("| %v | %s | %s | %s | %s | %s | %s | %s | %s | %s MB |\n", poll, cpu(two), cpu(high), tick, pread, rd(two), rd(high), lat(two), lat(high), numRange(rss, "%.1f"))
	}
	p("\n")
}

// goals checks issue 9's goals against what was measured.
func (r *scaleReport) goals() []string {
	var out []string
	// Cold latency.
	var worstP50, worstP99 float64
	var w50, w99 string
	n, cells := 0, 0
	r.eachConfig(func(g geometry, io, h int, x *pooled) {
		if len(x.cold.oneWay) == 0 {
			return
		}
		cells++
		n += len(x.cold.oneWay)
		p50, p99 := percentile(x.cold.oneWay, 50), percentile(x.cold.oneWay, 99)
		if p50 > worstP50 {
			worstP50, w50 = p50, fmt.Sprintf("%s io %d HIGH %d", g, io, h)
		}
		if p99 > worstP99 {
			worstP99, w99 = p99, fmt.Sprintf("%s io %d HIGH %d", g, io, h)
		}
	})
	if cells > 0 {
		out = append(out, fmt.Sprintf("Cold one-way latency p50 ≤ 0.3 s and p99 ≤ 1 s at every host count: %s (worst p50 %s at %s, worst p99 %s at %s; %d configurations, %d samples).",
			met(worstP50 <= 0.3 && worstP99 <= 1), secs(worstP50), w50, secs(worstP99), w99, cells, n))
	}
	// Idle reads against sanlock.
	worstR, wname := 0.0, ""
	cmp := 0
	r.eachConfig(func(g geometry, io, h int, x *pooled) {
		s := r.slkFor(g, io, h)
		if s == nil || s.idle == nil || len(x.idle.procRead) == 0 {
			return
		}
		cmp++
		if q := mean(x.idle.procRead) / mean(s.idle.procRead); q > worstR {
			worstR, wname = q, fmt.Sprintf("%s io %d HIGH %d", g, io, h)
		}
	})
	if cmp > 0 {
		out = append(out, fmt.Sprintf("Idle reads per host at most sanlock's at every host count (2 %% tolerance: renewal periods differ by milliseconds): %s (highest ratio %.1f %% at %s, %d configurations).",
			met(worstR <= 1.02), 100*worstR, wname, cmp))
	}
	for _, io := range r.sc.ios {
		limit := map[int]float64{1: 122e3, 10: 31.8e3}[io]
		if limit == 0 {
			continue
		}
		if x := r.pool(r.sparse, geo512, io, r.highsOf(geo512)[0]); x != nil && len(x.idle.procRead) > 0 {
			v := mean(x.idle.procRead)
			out = append(out, fmt.Sprintf("Idle reads at io %d with few hosts (512/1M, host ids 1, 2, %d) no more than before doorbells (%s at 2 hosts): %s (%s).",
				io, r.highsOf(geo512)[0], rate(limit), met(v <= limit), rate(v)))
		}
	}
	if c := r.cpu; c != nil {
		for _, x := range c.ls {
			if len(x.ids) == 2 && x.poll == 250*time.Millisecond && x.idle != nil {
				v := mean(x.idle.procRead)
				out = append(out, fmt.Sprintf("Idle reads at io 10, exactly 2 hosts (CPU part, P 250 ms): %s (≤ 31.8 KB/s: %s).", rate(v), met(v <= 31.8e3)))
			}
		}
	}
	// Bursts.
	worst, wb := 0.0, ""
	var scans int64
	bursts := 0
	r.eachConfig(func(g geometry, io, h int, x *pooled) {
		if len(x.burst) == 0 {
			return
		}
		for _, b := range x.burst {
			scans += b.scans()
		}
		for k := range 2 {
			if e, ok := x.burstRole(k, g); ok {
				bursts++
				if q := e.sectors / e.allowance(); q > worst {
					worst, wb = q, fmt.Sprintf("the %s of %s io %d HIGH %d: %.1f sectors per message, %.1f per poll interval", roleNames[k], g, io, h, e.perMsg(), e.perPoll())
				}
			}
		}
	})
	if bursts > 0 {
		out = append(out, fmt.Sprintf("While sending or acking, reads at most idle plus a few sectors per message and per poll interval (msgloop's allowance: 8 per message + 5 per poll interval), and no read of the used area between renewals: %s — at most %.0f %% of the allowance (%s); %d scans in all bursts.",
			met(worst <= 1 && scans == 0), 100*worst, wb, scans))
	}
	// Throughput at the largest HIGH.
	for _, g := range r.sc.geos {
		hs := r.highsOf(g)
		for _, io := range r.sc.ios {
			x := r.pool(r.sparse, g, io, hs[len(hs)-1])
			if x == nil || len(x.burst) == 0 {
				continue
			}
			var v []float64
			for _, b := range x.burst {
				v = append(v, b.perMin)
			}
			out = append(out, fmt.Sprintf("≥ 500 acked messages/min from one sender at %d host ids (%s, io %d): %s (%s/min).", hs[len(hs)-1], g, io, met(slices.Min(v) >= 500), numRange(v, "%.0f")))
		}
	}
	// CPU and RSS at io 10.
	for _, g := range r.sc.geos {
		var cpus, rss []float64
		for _, x := range r.sparse {
			if x.geo == g && x.io == 10 && x.idle != nil {
				cpus = append(cpus, x.idle.cpuSchedPct...)
				rss = append(rss, x.idle.rssMB...)
			}
		}
		if len(cpus) > 0 {
			out = append(out, fmt.Sprintf("Idle CPU per daemon ≤ 0.05 %% of a core at io 10 (%s, default poll interval): %s (%s %%); RSS ≤ 15 MB: %s (%s MB).",
				g, met(slices.Max(cpus) <= 0.05), numRange(cpus, "%.3f"), met(slices.Max(rss) <= 15), numRange(rss, "%.1f")))
		}
	}
	if c := r.cpu; c != nil {
		for _, x := range c.ls {
			if x.idle != nil && x.poll != 250*time.Millisecond {
				out = append(out, fmt.Sprintf("… at --poll-interval %v, ids %v: %s %% (%s).", x.poll, x.ids, numRange(x.idle.cpuSchedPct, "%.3f"), met(slices.Max(x.idle.cpuSchedPct) <= 0.05)))
			}
		}
	}
	return out
}
