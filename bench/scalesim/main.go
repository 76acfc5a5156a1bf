// Command scalesim simulates a full sanlock-msg lockspace, deterministically:
// every host id of the area joined (2000 at 512/1M and 4096/8M, 250 at
// 4096/1M), each a real lockspace loop (delta.Start, Step) with a real
// message machine (msgloop.Messenger), all on one in-memory device and one
// fake clock. No real time passes and no real I/O is done; a run with the
// same flags gives the same numbers.
//
// It runs a message mix (fan-in: 50 senders to one target; multicast: one
// sender to 250 targets; random pairs; everyone else idle), every message
// sent cold, and prints latency percentiles (one-way and acked) and the
// storage I/O every host made (aggregate IOPS and bytes per second, and
// per host), next to what sanlock daemons would do on the same area: each
// reads the whole area and writes its sector once per renewal interval.
//
//	go run ./bench/scalesim [--geo 512/1M,4096/8M,4096/1M] [--io 1,10] [--quick] [--out FILE]
//
// See bench/README.md for what each number means.
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// config is one simulation: a geometry and an io_timeout.
type config struct {
	geo   leader.Geometry
	io    time.Duration
	hosts int // 0: max_hosts
}

type options struct {
	configs []config
	mix     mixConfig
	traffic time.Duration // least traffic window (rounded up to whole cycles)
	cycles  int           // idle window, in cycles of 4 renewals
	seed    int64
	out     string
	// memLimit is the soft memory limit, in bytes.
	memLimit int64
}

func parseFlags() *options {
	o := &options{}
	geos := flag.String("geo", "512/1M,4096/8M,4096/1M", "geometries SECTOR/ALIGN, comma-separated")
	ios := flag.String("io", "1,10", "io_timeouts in seconds, comma-separated")
	hosts := flag.Int("hosts", 0, "host ids joined (default max_hosts of each geometry)")
	flag.IntVar(&o.mix.fanSenders, "fan-in", 50, "fan-in senders (to one target)")
	flag.IntVar(&o.mix.mcTargets, "multicast", 250, "multicast targets (of one sender)")
	flag.IntVar(&o.mix.pairPool, "pair-pool", 500, "hosts that send to each other in random pairs")
	flag.Float64Var(&o.mix.pairRate, "pair-rate", 2, "random pair messages per second, whole cluster")
	flag.DurationVar(&o.traffic, "traffic", time.Minute, "least traffic window (and at least two cycles of 4 renewals), rounded up to whole cycles")
	flag.IntVar(&o.cycles, "idle-cycles", 1, "idle window, in cycles of 4 renewals")
	flag.Int64Var(&o.seed, "seed", 1, "random seed (host groups, timing of the mix)")
	flag.StringVar(&o.out, "out", "", "also write the markdown report to this file")
	memGiB := flag.Int64("memory-limit", 14, "soft memory limit of the simulation in GiB (debug.SetMemoryLimit): the garbage collector works harder near it")
	quick := flag.Bool("quick", false, "512/1M only")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./bench/scalesim [flags]\n\nSimulates a full lockspace of sanlock-msg hosts with a message mix (see bench/README.md).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	o.memLimit = *memGiB << 30
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["geo"] {
			*geos = "512/1M"
		}
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "scalesim: "+format+"\n", args...)
		os.Exit(2)
	}
	for _, g := range strings.Split(*geos, ",") {
		ss, al, ok := strings.Cut(strings.TrimSpace(g), "/")
		n, err := strconv.Atoi(ss)
		if !ok || err != nil {
			fail("--geo %q: want SECTOR/ALIGN, e.g. 512/1M", g)
		}
		a, err := leader.ParseAlign(al)
		if err != nil {
			fail("--geo %q: %v", g, err)
		}
		geo, err := leader.NewGeometry(n, a)
		if err != nil {
			fail("--geo %q: %v", g, err)
		}
		for _, f := range strings.Split(*ios, ",") {
			io, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || io < 1 || io > 255 {
				fail("--io %q: want seconds in 1..255", *ios)
			}
			c := config{geo: geo, io: time.Duration(io) * time.Second, hosts: min(*hosts, geo.MaxHosts)}
			if c.hosts <= 0 {
				c.hosts = geo.MaxHosts
			}
			o.configs = append(o.configs, c)
		}
	}
	if flag.NArg() > 0 || o.cycles < 1 {
		flag.Usage()
		os.Exit(2)
	}
	return o
}

func main() {
	o := parseFlags()
	// The simulation holds every host's view of every other host (4
	// million entries at 2000 hosts); collect less often than by default,
	// at the price of memory.
	debug.SetGCPercent(150)
	// ... but within a soft limit: a 2000-host run of 4096-byte sectors
	// peaks near 20 GB of RSS otherwise, and a machine with 24 GB and
	// something else running killed it.
	debug.SetMemoryLimit(o.memLimit)
	start := time.Now()
	rep := &report{start: start, opts: o}
	code := 0
	for _, c := range o.configs {
		logf("%s, io_timeout %v, %d hosts: starting", geoName(c.geo), c.io, c.hosts)
		r, err := simulate(c, o)
		if err != nil {
			logf("%s, io_timeout %v: %v", geoName(c.geo), c.io, err)
			rep.errors = append(rep.errors, fmt.Sprintf("%s io %v: %v", geoName(c.geo), c.io, err))
			code = 1
			continue
		}
		rep.results = append(rep.results, r)
	}
	text := rep.markdown(time.Since(start))
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			logf("%v", err)
			code = 1
		}
	}
	os.Exit(code)
}

var t0 = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

func geoName(g leader.Geometry) string {
	return fmt.Sprintf("%d/%s", g.SectorSize, leader.AlignString(g.AlignSize))
}

// result is what one simulation measured.
type result struct {
	cfg            config
	groups         groups
	mix            mixConfig
	joinedAt       time.Duration // simulated time to join every host
	ri             time.Duration // renewal interval
	poll           time.Duration // doorbell poll interval (host 1)
	idleFrom       time.Time
	idleDur        time.Duration
	idle           []ioCount // per host, over the idle window
	idleScans      int64
	trafficDur     time.Duration
	traffic        []ioCount // per host, over the traffic window
	trafficScans   int64
	m              *mix
	wall           time.Duration
	heapMB         uint64
	ringsWritten   int64
	gaps, received int64
}

// simulate runs one configuration: join every host, settle for a cycle,
// an idle window, then the mix.
func simulate(c config, o *options) (*result, error) {
	wall := time.Now()
	rng := rand.New(rand.NewSource(o.seed))
	s, err := newSim(c.geo, c.io, c.hosts, o.seed)
	if err != nil {
		return nil, err
	}
	r := &result{cfg: c, mix: o.mix}
	if err := s.joinAll(10 * time.Minute); err != nil {
		return nil, err
	}
	r.joinedAt = s.since(s.clk.Now())
	r.ri = delta.NewTimeouts(c.io, 0).RenewalInterval()
	cycle := 4 * r.ri
	logf("  every host joined at %v (simulated); settling for %v", r.joinedAt, cycle)
	// One whole cycle: every host has done its full read and knows the
	// highest host id.
	if err := s.runFor(cycle); err != nil {
		return nil, err
	}
	r.poll = s.host(1).ls.Status().PollEvery
	r.idleDur = time.Duration(o.cycles) * cycle
	logf("  idle for %v (poll interval %v)", r.idleDur, r.poll)
	c0, sc0 := s.counts(), scans(s)
	r.idleFrom = s.clk.Now()
	if err := s.runFor(r.idleDur); err != nil {
		return nil, err
	}
	r.idle, r.idleScans = diff(s.counts(), c0), scans(s)-sc0
	g, err := assign(c.hosts, &r.mix, rng)
	if err != nil {
		return nil, err
	}
	r.groups = g
	r.mix.window = cycle * time.Duration(max(2, math.Ceil(float64(o.traffic)/float64(cycle))))
	r.mix.drain = 3 * time.Minute
	logf("  traffic for %v: fan-in %d→1, multicast 1→%d, pairs among %d at %.1f/s, %d idle",
		r.mix.window, len(g.fanSenders), len(g.mcTargets), len(g.pairs), r.mix.pairRate, len(g.idle))
	m := newMix(s, r.mix, g, rng)
	rs0 := ringStats(s)
	from, to, err := m.run()
	if err != nil {
		return nil, err
	}
	for _, h := range s.hosts {
		if h.io.strayWrites != 0 {
			m.failures = append(m.failures, fmt.Sprintf("host %d: %d writes outside its sector and the spare sectors", h.id, h.io.strayWrites))
		}
	}
	r.m = m
	r.trafficDur = to.Sub(from)
	r.traffic = diff(m.atEnd, m.atStart)
	r.trafficScans = m.scans1 - m.scans0
	rs1 := ringStats(s)
	r.ringsWritten, r.gaps, r.received = rs1[0]-rs0[0], rs1[1]-rs0[1], rs1[2]-rs0[2]
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.heapMB = ms.HeapAlloc >> 20
	r.wall = time.Since(wall)
	logf("  done in %v: %d sent (%v), %d duplicates, %d failures", r.wall.Round(time.Second), len(m.msgs), m.sentN, m.dups, len(m.failures))
	return r, nil
}

func diff(a, b []ioCount) []ioCount {
	out := make([]ioCount, len(a))
	for i := range a {
		out[i] = a[i].sub(b[i])
	}
	return out
}

// ringStats sums, over every host: doorbells written, gaps found, rings
// received.
func ringStats(s *sim) [3]int64 {
	var out [3]int64
	for _, h := range s.hosts {
		out[0] += h.ls.Status().Doorbell.RingsWritten
		st := h.m.Machine().RingStats()
		out[1] += st.Gaps
		out[2] += st.RingsReceived
	}
	return out
}
