package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report collects every simulation's result for the markdown.
type report struct {
	start   time.Time
	opts    *options
	results []*result
	errors  []string
}

func (rep *report) markdown(took time.Duration) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	host, _ := os.Hostname()
	p("### scalesim results, %s\n\n", rep.start.UTC().Format("2006-01-02 15:04 MST"))
	p("Simulated (no real time, no real I/O) on %s, %d CPUs, %s; took %v of real time. Seed %d.\n\n",
		host, runtime.NumCPU(), runtime.Version(), took.Round(time.Second), rep.opts.seed)
	for _, e := range rep.errors {
		p("**FAILED: %s**\n\n", e)
	}
	if len(rep.results) == 0 {
		return b.String()
	}
	p("Summary (every message sent after ≥ 10 s of quiet of its sender and receivers; one-way: send to delivery; acked: send to the sender seeing each target's ack; KB = 1000 bytes):\n\n")
	p("| area, io_timeout | hosts | poll P | one-way p50 | p99 | max | acked p50 | p99 | max | reads per host, idle: ours / sanlock | cluster reads, idle / mix / sanlock | cluster IOPS, idle / mix / sanlock |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.results {
		var ow, ak []time.Duration
		for _, c := range []class{classFanIn, classMulticast, classPair} {
			ow = append(ow, r.m.oneWay[c]...)
			ak = append(ak, r.m.acked[c]...)
		}
		idle, mix, slk := r.aggregate(r.idle, r.idleDur), r.aggregate(r.traffic, r.trafficDur), r.sanlock()
		p("| %s, %v | %d | %s | %s | %s | %s | %s | %s | %s | %s / %s KB/s | %s / %s / %s MB/s | %.0f / %.0f / %.0f |\n",
			geoName(r.cfg.geo), r.cfg.io, r.cfg.hosts, dur(r.poll),
			dur(percentile(ow, 50)), dur(percentile(ow, 99)), dur(percentile(ow, 100)),
			dur(percentile(ak, 50)), dur(percentile(ak, 99)), dur(percentile(ak, 100)),
			kb(mean(perHost(r.idle, r.idleDur, nil))), kb(slk.readB/float64(r.cfg.hosts)),
			mb(idle.readB), mb(mix.readB), mb(slk.readB), idle.iops(), mix.iops(), slk.iops())
	}
	p("\n")
	for _, r := range rep.results {
		r.section(&b)
	}
	return b.String()
}

// rates is I/O per second.
type rates struct{ reads, readB, writes, writeB float64 }

func (r rates) iops() float64 { return r.reads + r.writes }

// aggregate sums the hosts' counts over d into rates.
func (r *result) aggregate(cs []ioCount, d time.Duration) rates {
	var t ioCount
	for _, c := range cs {
		t.add(c)
	}
	sec := d.Seconds()
	ss := float64(r.cfg.geo.SectorSize)
	return rates{float64(t.reads()) / sec, float64(t.readBytes()) / sec, float64(t.writes()) / sec, float64(t.writes()) * ss / sec}
}

// sanlock is what as many sanlock daemons would do: each reads the whole
// area and writes its sector once per renewal interval.
func (r *result) sanlock() rates {
	n := float64(r.cfg.hosts)
	ri := r.ri.Seconds()
	return rates{n / ri, n * float64(r.cfg.geo.AlignSize) / ri, n / ri, n * float64(r.cfg.geo.SectorSize) / ri}
}

// perHost returns the read rates (bytes per second) of hosts ids (all if
// nil) over d.
func perHost(cs []ioCount, d time.Duration, ids []uint64) []float64 {
	var out []float64
	if ids == nil {
		for _, c := range cs {
			out = append(out, float64(c.readBytes())/d.Seconds())
		}
		return out
	}
	for _, id := range ids {
		out = append(out, float64(cs[id-1].readBytes())/d.Seconds())
	}
	return out
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func (r *result) section(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	c, g, m := r.cfg, r.groups, r.m
	p("#### %s, io_timeout %v: %d hosts\n\n", geoName(c.geo), c.io, c.hosts)
	p("Every host id 1..%d joined and simulated (a real loop and message machine each; no sector written on a host's behalf). "+
		"Joined %v after the start (simulated); renewal interval %v; doorbell poll P = %s (%d spare sectors). "+
		"Idle window %v, mix window %v (whole cycles of 4 renewals). Simulated in %v of real time (heap %d MB).\n\n",
		c.hosts, r.joinedAt, r.ri, dur(r.poll), c.geo.Spare(), r.idleDur, r.trafficDur, r.wall.Round(time.Second), r.heapMB)
	p("Mix: fan-in %d → 1 (host %d), %d rounds; multicast 1 (host %d) → %d, %d rounds; random pairs among %d hosts, %.1f/s: %d sent (%d arrivals found no quiet pair); %d hosts idle.\n\n",
		len(g.fanSenders), g.fanTarget, m.sentN[classFanIn]/max(1, len(g.fanSenders)), g.mcSender, len(g.mcTargets), m.sentN[classMulticast],
		len(g.pairs), r.mix.pairRate, m.sentN[classPair], m.skipped, len(g.idle))
	p("| class | sends | deliveries | one-way p50 | p99 | max | acked, per target p50 | p99 | max | whole send acked p50 | p99 | max |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, cl := range []class{classFanIn, classMulticast, classPair} {
		ow, ak, all := m.oneWay[cl], m.acked[cl], m.allAcked[cl]
		p("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", cl, m.sentN[cl], len(ow),
			dur(percentile(ow, 50)), dur(percentile(ow, 99)), dur(percentile(ow, 100)),
			dur(percentile(ak, 50)), dur(percentile(ak, 99)), dur(percentile(ak, 100)),
			dur(percentile(all, 50)), dur(percentile(all, 99)), dur(percentile(all, 100)))
	}
	p("\n")
	idle, mix, slk := r.aggregate(r.idle, r.idleDur), r.aggregate(r.traffic, r.trafficDur), r.sanlock()
	p("| storage I/O, whole cluster | reads/s | read MB/s | writes/s | write KB/s | IOPS |\n|---|---|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		r    rates
	}{{"sanlock-msg, idle", idle}, {"sanlock-msg, with the mix", mix}, {"sanlock (each host: the whole area and its sector per renewal)", slk}} {
		p("| %s | %.0f | %s | %.0f | %s | %.0f |\n", x.name, x.r.reads, mb(x.r.readB), x.r.writes, kb(x.r.writeB), x.r.iops())
	}
	p("\n")
	var ti, tm ioCount
	for i := range r.idle {
		ti.add(r.idle[i])
		tm.add(r.traffic[i])
	}
	p("Reads by kind, whole cluster (idle / with the mix): host sectors %.0f / %.0f reads/s (%s / %s MB/s: renewals, scans, ringers, awaited targets); "+
		"spare sectors %.0f / %.0f reads/s (doorbell polls and ring reads). Writes: own sector %.1f / %.1f/s, doorbells %.1f / %.1f/s. "+
		"Reads of the used area between renewals (scans): %d / %d.\n\n",
		float64(ti.hostReads)/r.idleDur.Seconds(), float64(tm.hostReads)/r.trafficDur.Seconds(),
		mb(float64(ti.hostReadBytes)/r.idleDur.Seconds()), mb(float64(tm.hostReadBytes)/r.trafficDur.Seconds()),
		float64(ti.spareReads)/r.idleDur.Seconds(), float64(tm.spareReads)/r.trafficDur.Seconds(),
		float64(ti.ownWrites)/r.idleDur.Seconds(), float64(tm.ownWrites)/r.trafficDur.Seconds(),
		float64(ti.spareWrites)/r.idleDur.Seconds(), float64(tm.spareWrites)/r.trafficDur.Seconds(),
		r.idleScans, r.trafficScans)
	p("| reads per host, KB/s | idle window | mix window | sanlock |\n|---|---|---|---|\n")
	slkHost := kb(float64(c.geo.AlignSize) / r.ri.Seconds())
	row := func(name string, ids []uint64) {
		if len(ids) == 0 {
			return
		}
		a, b := perHost(r.idle, r.idleDur, ids), perHost(r.traffic, r.trafficDur, ids)
		if len(ids) == 1 {
			p("| %s | %s | %s | %s |\n", name, kb(a[0]), kb(b[0]), slkHost)
			return
		}
		p("| %s, mean (max) | %s (%s) | %s (%s) | %s |\n", name, kb(mean(a)), kb(slices.Max(a)), kb(mean(b)), kb(slices.Max(b)), slkHost)
	}
	row("every host", allIDs(c.hosts))
	row(fmt.Sprintf("idle hosts (%d)", len(g.idle)), g.idle)
	row("fan-in target", []uint64{g.fanTarget})
	row(fmt.Sprintf("fan-in senders (%d)", len(g.fanSenders)), g.fanSenders)
	row("multicast sender", []uint64{g.mcSender})
	row(fmt.Sprintf("multicast targets (%d)", len(g.mcTargets)), g.mcTargets)
	row(fmt.Sprintf("pair pool (%d)", len(g.pairs)), g.pairs)
	p("| idle, from the loop's rules | %s | | %s |\n\n", kb(expectedIdle(c.geo, c.io, c.hosts, r.poll)), slkHost)
	p("Doorbells written during the mix: %d; rings received: %d; doorbells found to have lost rings (gaps, each answered by a scan or the next renewal): %d. "+
		"Duplicate deliveries: %d. Native events: %d.", r.ringsWritten, r.received, r.gaps, m.dups, m.native)
	if len(m.failures) == 0 {
		p(" Every message was delivered once to each target and acked.\n\n")
	} else {
		p(" **%d failures**:\n\n", len(m.failures))
		for i, f := range m.failures {
			if i == 10 {
				p("- ... and %d more\n", len(m.failures)-10)
				break
			}
			p("- %s\n", f)
		}
		p("\n")
	}
}

func allIDs(n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids
}

// dur formats a latency in seconds, 3 decimals.
func dur(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func kb(v float64) string {
	if v >= 100_000 {
		return fmt.Sprintf("%.0f", v/1000)
	}
	return fmt.Sprintf("%.1f", v/1000)
}

func mb(v float64) string { return fmt.Sprintf("%.2f", v/1e6) }
