package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// column is what was measured for one implementation at one io_timeout.
type column struct {
	impl   string // "sanlock-msg" or "sanlock"
	io     int
	join   []float64
	msg    *msgLatency // sanlock-msg
	events *slkEvents  // sanlock
	idle2  *idleResult
	idleN  *idleResult
}

type report struct {
	cfg    *config
	start  time.Time
	load0  string
	cols   map[string]*column
	failed []string
}

func newReport(cfg *config) *report {
	return &report{cfg: cfg, start: time.Now(), load0: loadavg(), cols: map[string]*column{}}
}

func (r *report) col(impl string, io int) *column {
	k := fmt.Sprintf("%s/%d", impl, io)
	if r.cols[k] == nil {
		r.cols[k] = &column{impl: impl, io: io}
	}
	return r.cols[k]
}

// reference holds DEVELOPERS.md's numbers for real sanlock 3.8.
var reference = map[int]map[string]string{
	1: {"join": "3.0 s", "lat_mean": "3.35 s", "lat_max": "5.1 s", "deliv": "1–3 (no dedup)", "tput": "10.2 events/min (without clobbering)",
		"read": "419 KB/s", "write": "205 B/s", "cpu": "0.07 %", "rss": "19.5 MB"},
	10: {"join": "21 s", "lat_mean": "17.6 s", "lat_max": "41 s", "deliv": "1–3", "tput": "1.0 events/min",
		"read": "51 KB/s", "write": "25 B/s", "cpu": "0.05 %", "rss": "19.5 MB"},
}

// row is one line of the table: a label, how to get each
// implementation's cell, and the key of the reference number.
type row struct {
	label string
	msg   func(c *column) string
	slk   func(c *column) string
	ref   string
}

func (r *report) rows() []row {
	n := r.cfg.many
	lat := func(f func(v []float64) string) func(c *column) string {
		return func(c *column) string {
			if c.msg == nil || len(c.msg.oneWay) == 0 {
				return ""
			}
			return f(c.msg.oneWay)
		}
	}
	ev := func(f func(v []float64) string) func(c *column) string {
		return func(c *column) string {
			if c.events == nil || len(c.events.latency) == 0 {
				return ""
			}
			return f(c.events.latency)
		}
	}
	rtt := func(f func(v []float64) string) func(c *column) string {
		return func(c *column) string {
			if c.msg == nil || len(c.msg.rtt) == 0 {
				return ""
			}
			return f(c.msg.rtt)
		}
	}
	pct := func(p float64) func(v []float64) string {
		return func(v []float64) string { return secs(percentile(v, p)) }
	}
	meanS := func(v []float64) string { return secs(mean(v)) }
	maxS := func(v []float64) string { return secs(slices.Max(v)) }
	joined := func(c *column) string {
		if len(c.join) == 0 {
			return ""
		}
		return fmt.Sprintf("%.1f s", mean(c.join))
	}
	rows := []row{
		{label: "join (add_lockspace), mean of the 2 hosts", msg: joined, slk: joined, ref: "join"},
		{label: "one-way latency p50 (sanlock: set_event → get_event)", msg: lat(pct(50)), slk: ev(pct(50))},
		{label: "one-way latency p99", msg: lat(pct(99)), slk: ev(pct(99))},
		{label: "one-way latency max", msg: lat(maxS), slk: ev(maxS), ref: "lat_max"},
		{label: "one-way latency mean", msg: lat(meanS), slk: ev(meanS), ref: "lat_mean"},
		{label: fmt.Sprintf("one-way latency p50 after ≥ %.1f s quiet", idleGap.Seconds()), msg: func(c *column) string {
			if c.msg == nil || len(c.msg.oneWayIdle) == 0 {
				return ""
			}
			return fmt.Sprintf("%s (n=%d)", secs(percentile(c.msg.oneWayIdle, 50)), len(c.msg.oneWayIdle))
		}},
		{label: "latency samples (lost)", msg: func(c *column) string {
			if c.msg == nil || len(c.msg.oneWay)+c.msg.lost == 0 {
				return ""
			}
			return fmt.Sprintf("%d (%d lost)", len(c.msg.oneWay), c.msg.lost)
		}, slk: func(c *column) string {
			if c.events == nil {
				return ""
			}
			return fmt.Sprintf("%d (%d lost)", len(c.events.latency), c.events.lost)
		}},
		{label: "deliveries per message / event", msg: func(c *column) string {
			if c.msg == nil {
				return ""
			}
			return c.msg.deliveries()
		}, slk: func(c *column) string {
			if c.events == nil || len(c.events.deliveries) == 0 {
				return ""
			}
			return fmt.Sprintf("%d–%d (mean %.1f)", slices.Min(c.events.deliveries), slices.Max(c.events.deliveries), meanInt(c.events.deliveries))
		}, ref: "deliv"},
		{label: "acked round trip p50 (send --wait)", msg: rtt(pct(50)), slk: na},
		{label: "acked round trip p99", msg: rtt(pct(99)), slk: na},
		{label: "acked round trip max", msg: rtt(maxS), slk: na},
		{label: "acked messages/min, one sender back-to-back", msg: func(c *column) string {
			if c.msg == nil || c.msg.tputSent == 0 {
				return ""
			}
			s := fmt.Sprintf("%.0f", c.msg.perMin)
			if c.msg.tputFail > 0 {
				s += fmt.Sprintf(" (%d failed)", c.msg.tputFail)
			}
			return s
		}, slk: na, ref: "tput"},
	}
	for _, hosts := range []int{2, n} {
		get := func(c *column) *idleResult {
			if hosts == 2 {
				return c.idle2
			}
			return c.idleN
		}
		v := func(f func(ir *idleResult) string) func(c *column) string {
			return func(c *column) string {
				if ir := get(c); ir != nil {
					return f(ir)
				}
				return ""
			}
		}
		h := fmt.Sprintf(", %d hosts", hosts)
		rows = append(rows,
			row{label: "idle read per host" + h + " (/proc read_bytes, whole cycles)", msg: v(func(ir *idleResult) string { return rateRange(ir.procRead) }),
				slk: v(func(ir *idleResult) string { return rateRange(ir.procRead) }), ref: "read"},
			row{label: "idle write per host" + h + " (/proc write_bytes, whole cycles)", msg: v(func(ir *idleResult) string { return rateRange(ir.procWrite) }),
				slk: v(func(ir *idleResult) string { return rateRange(ir.procWrite) }), ref: "write"},
			row{label: "whole cycles measured" + h, msg: v(func(ir *idleResult) string { return intRange(ir.cycles) }),
				slk: v(func(ir *idleResult) string { return intRange(ir.cycles) })},
			row{label: "idle read per host" + h + ", whole window: /proc; daemon counter", msg: v(func(ir *idleResult) string { return rateRange(ir.winRead) + "; " + ctrCell(ir, ir.ctrRead) }),
				slk: v(func(ir *idleResult) string { return rateRange(ir.winRead) + "; " + ctrCell(ir, ir.ctrRead) })},
			row{label: "idle write per host" + h + ", whole window: /proc; daemon counter", msg: v(func(ir *idleResult) string { return rateRange(ir.winWrite) + "; " + ctrCell(ir, ir.ctrWrite) }),
				slk: v(func(ir *idleResult) string { return rateRange(ir.winWrite) + "; " + ctrCell(ir, ir.ctrWrite) })},
			row{label: "idle poll interval" + h, msg: v(func(ir *idleResult) string { return numRange(ir.pollSec, "%.2f") + " s" }), slk: na},
			row{label: "idle CPU per host" + h + " (utime+stime)", msg: v(func(ir *idleResult) string { return numRange(ir.cpuPct, "%.3f") + " %" }),
				slk: v(func(ir *idleResult) string { return numRange(ir.cpuPct, "%.3f") + " %" }), ref: "cpu"},
			row{label: "idle CPU per host" + h + " (schedstat)", msg: v(func(ir *idleResult) string { return numRange(ir.cpuSchedPct, "%.3f") + " %" }),
				slk: v(func(ir *idleResult) string { return numRange(ir.cpuSchedPct, "%.3f") + " %" })},
			row{label: "RSS per host" + h, msg: v(func(ir *idleResult) string { return numRange(ir.rssMB, "%.1f") + " MB" }),
				slk: v(func(ir *idleResult) string { return numRange(ir.rssMB, "%.1f") + " MB" }), ref: "rss"},
		)
	}
	return rows
}

func na(*column) string { return "n/a" }

func ctrCell(ir *idleResult, v []float64) string {
	if !ir.hasCounters {
		return "—"
	}
	return rateRange(v)
}

// markdown renders the report.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## msgbench results, %s\n\n", r.start.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, Linux %s; load average %s at start, %s at end. %s. sanlock-msg %s. Took %s.\n\n",
		hostname(), runtime.NumCPU(), kernel(), r.load0, loadavg(), sanlockVersion(), gitRev(), time.Since(r.start).Round(time.Second))
	fmt.Fprintf(&b, "Settings: io_timeouts %v; %d one-way and %d round-trip samples, random gaps %v..%v; throughput %v; %d sanlock events; idle windows %s.\n\n",
		r.cfg.ios, r.cfg.messages, r.cfg.rtts, r.cfg.gapMin, r.cfg.gapMax, r.cfg.throughput, r.cfg.events, windows(r.cfg))
	b.WriteString("| metric |")
	for _, io := range r.cfg.ios {
		fmt.Fprintf(&b, " sanlock-msg io%d | sanlock io%d | sanlock ref io%d |", io, io, io)
	}
	b.WriteString("\n|---|")
	for range r.cfg.ios {
		b.WriteString("---|---|---|")
	}
	b.WriteString("\n")
	for _, rw := range r.rows() {
		fmt.Fprintf(&b, "| %s |", rw.label)
		for _, io := range r.cfg.ios {
			m, s := r.cols[fmt.Sprintf("sanlock-msg/%d", io)], r.cols[fmt.Sprintf("sanlock/%d", io)]
			cell := func(c *column, f func(*column) string) string {
				if c == nil || f == nil {
					return ""
				}
				return f(c)
			}
			ref := ""
			if rw.ref != "" {
				ref = reference[io][rw.ref]
			}
			fmt.Fprintf(&b, " %s | %s | %s |", cell(m, rw.msg), cell(s, rw.slk), ref)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nIdle figures are the mean per daemon, with (min–max) over the daemons; KB = 1000 bytes. " +
		"\"Whole cycles\": from just before a daemon's first full-area read in the window to just before its last " +
		"(sanlock reads the whole area at every renewal, sanlock-msg at every fourth), so bursty reads are not over- or under-counted.\n")
	if notes := r.notes(); len(notes) > 0 {
		b.WriteString("\n### Goals and checks\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if len(r.failed) > 0 {
		b.WriteString("\n### Failures\n\n")
		for _, f := range r.failed {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

// notes checks issue 5's goals and the /proc-versus-counter agreement.
func (r *report) notes() []string {
	var out []string
	for _, io := range r.cfg.ios {
		m, s := r.cols[fmt.Sprintf("sanlock-msg/%d", io)], r.cols[fmt.Sprintf("sanlock/%d", io)]
		if m != nil && m.msg != nil {
			if len(m.msg.oneWay) > 0 {
				p50, p99 := percentile(m.msg.oneWay, 50), percentile(m.msg.oneWay, 99)
				goal := ""
				if io == 10 {
					goal = fmt.Sprintf(" (goal at io 10: p50 < 0.5 s %s, p99 < 2 s %s)", met(p50 < 0.5), met(p99 < 2))
				}
				out = append(out, fmt.Sprintf("io %d: one-way p50 %s, p99 %s%s.", io, secs(p50), secs(p99), goal))
			}
			if m.msg.tputSent > 0 {
				out = append(out, fmt.Sprintf("io %d: %.0f acked messages/min (goal ≥ 100: %s); %d sent in %v, %d failed.",
					io, m.msg.perMin, met(m.msg.perPerMinOK()), m.msg.tputSent, m.msg.tputDur.Round(time.Second), m.msg.tputFail))
			}
		}
		if m != nil && s != nil {
			for _, p := range []struct {
				name   string
				mi, si *idleResult
			}{{"2 hosts", m.idle2, s.idle2}, {fmt.Sprintf("%d hosts", r.cfg.many), m.idleN, s.idleN}} {
				if p.mi == nil || p.si == nil {
					continue
				}
				mr, sr := mean(p.mi.procRead), mean(p.si.procRead)
				// Writes: /proc write_bytes of a daemon on an image file
				// also gets a 4 KiB page of filesystem metadata now and
				// then (README), so compare sector writes: the
				// least-charged daemon of each.
				mw, sw := slices.Min(p.mi.procWrite), slices.Min(p.si.procWrite)
				// Within 2 %: both write one sector per renewal, and
				// the renewal periods differ by a few ms.
				out = append(out, fmt.Sprintf("io %d, %s: idle read %s vs sanlock %s (%.0f %%); sector writes %s vs %s (%.0f %%; least-charged daemon of each): goal (no more than sanlock, 2 %% tolerance) %s.",
					io, p.name, rate(mr), rate(sr), 100*mr/sr, rate(mw), rate(sw), 100*mw/sw, met(mr <= 1.02*sr && mw <= 1.02*sw)))
			}
		}
		if m != nil {
			for _, ir := range []*idleResult{m.idle2, m.idleN} {
				if ir == nil || !ir.hasCounters {
					continue
				}
				dr := mean(ir.winRead) - mean(ir.ctrRead)
				dw := mean(ir.winWrite) - mean(ir.ctrWrite)
				out = append(out, fmt.Sprintf("io %d, %d hosts: /proc minus daemon counter over the same window: read %+.0f B/s, write %+.0f B/s per host.", io, ir.hosts, dr, dw))
			}
		}
	}
	return out
}

func (l *msgLatency) perPerMinOK() bool { return l.perMin >= 100 }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**NOT met**"
}

func windows(cfg *config) string {
	var s []string
	for _, io := range cfg.ios {
		s = append(s, fmt.Sprintf("%v at io %d", idleWindow(cfg, io), io))
	}
	return strings.Join(s, ", ")
}

// percentile returns the p-th percentile of v (linear interpolation
// between closest ranks).
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := sortedCopy(v)
	x := p / 100 * float64(len(s)-1)
	i := int(x)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (x-float64(i))*(s[i+1]-s[i])
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t / float64(len(v))
}

func meanInt(v []int) float64 {
	t := 0
	for _, x := range v {
		t += x
	}
	return float64(t) / float64(len(v))
}

func secs(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.3f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

func rate(bps float64) string {
	switch {
	case bps >= 1e6:
		return fmt.Sprintf("%.2f MB/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f KB/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f B/s", bps)
}

// rateRange is "mean (min–max)", or just the value for one daemon.
func rateRange(v []float64) string {
	if len(v) == 0 {
		return ""
	}
	lo, hi := rate(slices.Min(v)), rate(slices.Max(v))
	if lo == hi {
		return rate(mean(v))
	}
	return fmt.Sprintf("%s (%s–%s)", rate(mean(v)), lo, hi)
}

func numRange(v []float64, f string) string {
	if len(v) == 0 {
		return ""
	}
	if fmt.Sprintf(f, slices.Min(v)) == fmt.Sprintf(f, slices.Max(v)) {
		return fmt.Sprintf(f, mean(v))
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", mean(v), slices.Min(v), slices.Max(v))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func sanlockVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "sanlock").Output()
	if err != nil {
		return "sanlock version unknown"
	}
	return "sanlock " + string(out) + " (Debian)"
}

func gitRev() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "(git revision unknown)"
	}
	return "at " + strings.TrimSpace(string(out))
}
