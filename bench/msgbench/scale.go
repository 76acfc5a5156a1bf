package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The scale run (issue 9, "Scale proof"): sanlock-msg daemons and real
// sanlock daemons at host ids 1, 2 and HIGH, so that every renewal of the
// used part of the area covers host ids 1..HIGH ("the sparse host id
// trick"); as many daemons on one image as the machine holds; and the idle
// CPU of a daemon against the doorbell poll interval, next to the CPU floor
// of a bare Go program. bench/README.md says what every number means.

// scaleConfig configures `msgbench scale`.
type scaleConfig struct {
	benchEnv
	geos     []geometry
	ios      []int
	highs    []int
	replicas int           // independent lockspaces per (geometry, io, HIGH)
	latency  time.Duration // cold latency sampling, per wave
	burst    bool
	crowd    int           // daemons on one image (crowd part)
	crowdLat time.Duration // its cold latency sampling
	polls    []time.Duration
	events   map[int]int // sanlock events per io_timeout (512/1M, HIGH 3)
	parts    map[string]bool
	out, svg string
	keepLogs bool
	quick    bool
	floorBin string
	// idleCycles is the idle and burst window in cycles of 4 renewals
	// (sanlock-msg's full read comes every fourth renewal).
	idleCycles int
}

// scaleParts are the parts of the scale run, in the order they run.
var scaleParts = []string{"sparse", "sanlock", "crowd", "cpu"}

func parseScaleFlags(args []string) *scaleConfig {
	sc := &scaleConfig{parts: map[string]bool{}, events: map[int]int{}}
	fs := flag.NewFlagSet("msgbench scale", flag.ExitOnError)
	geos := fs.String("geo", "512/1M,4096/8M", "geometries SECTOR/ALIGN (4096-byte sectors on loop devices: root)")
	ios := fs.String("io", "1,10", "io_timeouts, comma-separated")
	highs := fs.String("high", "3,16,64,250,2000", "HIGH host ids: daemons at 1, 2 and HIGH (capped at max_hosts)")
	fs.IntVar(&sc.replicas, "replicas", 2, "independent lockspaces per configuration (more cold-latency samples)")
	fs.DurationVar(&sc.latency, "latency", 4*time.Minute, "cold-latency sampling per wave (a sample every ~11.5 s per lockspace)")
	fs.BoolVar(&sc.burst, "burst", true, "measure reads while host 1 sends to host 2 back to back (and acked messages/min)")
	fs.IntVar(&sc.crowd, "crowd", 250, "daemons on one 512/1M image at io_timeout 1 (0: skip)")
	fs.DurationVar(&sc.crowdLat, "crowd-latency", time.Minute, "cold-latency sampling of the crowd (pairs in parallel)")
	polls := fs.String("polls", "250ms,500ms,1s", "doorbell poll intervals of the CPU part (io_timeout 10)")
	ev := fs.String("events", "1:10,10:3", "real sanlock events to time, IO:COUNT (512/1M, host 1 to 2, HIGH 3)")
	parts := fs.String("parts", strings.Join(scaleParts, ","), "parts to run: "+strings.Join(scaleParts, ", "))
	fs.IntVar(&sc.idleCycles, "idle-cycles", 2, "idle and burst windows, in cycles of 4 renewals (whole cycles are measured between full reads)")
	fs.StringVar(&sc.out, "out", "", "also write the markdown report to this file")
	fs.StringVar(&sc.svg, "svg", "", "write the chart (SVG) to this file")
	fs.StringVar(&sc.imageDir, "image-dir", "/var/tmp", "directory for the images (must accept O_DIRECT: not tmpfs)")
	fs.StringVar(&sc.bin, "bin", "", "sanlock-msg binary (default: build ./cmd/sanlock-msg)")
	fs.BoolVar(&sc.keepLogs, "keep-logs", false, "keep the temporary directory with the daemons' logs")
	fs.BoolVar(&sc.quick, "quick", false, "a shorter run: one replica, 90 s of latency samples, one-cycle windows, 3 events at io 1 only, 30 s crowd latency")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./bench/msgbench scale [flags]\n\nThe scale run of issue 9 (see bench/README.md).\n\n")
		fs.PrintDefaults()
	}
	fs.Parse(args)
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "msgbench scale: "+format+"\n", a...)
		os.Exit(2)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if sc.quick {
		if !set["replicas"] {
			sc.replicas = 1
		}
		if !set["latency"] {
			sc.latency = 90 * time.Second
		}
		if !set["idle-cycles"] {
			sc.idleCycles = 1
		}
		if !set["events"] {
			*ev = "1:3"
		}
		if !set["crowd-latency"] {
			sc.crowdLat = 30 * time.Second
		}
	}
	for _, g := range strings.Split(*geos, ",") {
		geo, err := parseGeometry(g)
		if err != nil {
			fail("--geo: %v", err)
		}
		sc.geos = append(sc.geos, geo)
	}
	ints := func(name, v string) []int {
		var out []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				fail("--%s %q: want positive numbers", name, v)
			}
			out = append(out, n)
		}
		return out
	}
	sc.ios = ints("io", *ios)
	for _, h := range ints("high", *highs) {
		if h < 3 {
			fail("--high: %d: HIGH must be at least 3", h)
		}
		sc.highs = append(sc.highs, h)
	}
	for _, f := range strings.Split(*polls, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			fail("--polls %q: want durations", *polls)
		}
		sc.polls = append(sc.polls, d)
	}
	if *ev != "" {
		for _, f := range strings.Split(*ev, ",") {
			a, b, ok := strings.Cut(f, ":")
			io, err1 := strconv.Atoi(a)
			n, err2 := strconv.Atoi(b)
			if !ok || err1 != nil || err2 != nil {
				fail("--events %q: want IO:COUNT,...", *ev)
			}
			sc.events[io] = n
		}
	}
	for _, p := range strings.Split(*parts, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(scaleParts, p) {
			fail("--parts: unknown part %q (want %s)", p, strings.Join(scaleParts, ", "))
		}
		sc.parts[p] = true
	}
	if sc.replicas < 1 || sc.idleCycles < 1 || fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	return sc
}

// scaleWindow is the idle (and burst) window at io: idleCycles cycles of
// sanlock-msg's 4 renewals plus 3 s, at least 24 s, so that it holds
// idleCycles+1 full reads and the rate is taken over whole cycles.
func (sc *scaleConfig) scaleWindow(io int) time.Duration {
	cycle := 4 * renewalInterval(io)
	return max(24*time.Second, time.Duration(sc.idleCycles)*cycle+3*time.Second)
}

// renewalInterval is 2·io_timeout + 0.5 s, sanlock's and ours.
func renewalInterval(io int) time.Duration {
	return time.Duration(2*io)*time.Second + 500*time.Millisecond
}

// slkWindow is the idle window of real sanlock daemons: they read the
// whole area at every renewal, so two renewal intervals hold a whole one.
func slkWindow(io int) time.Duration {
	return max(24*time.Second, 2*renewalInterval(io)+3*time.Second)
}

func runScale(ctx context.Context, sc *scaleConfig) error {
	if err := setup(ctx, &sc.benchEnv, sc.keepLogs); err != nil {
		return err
	}
	if sc.parts["sanlock"] {
		if err := checkSanlock(ctx); err != nil {
			return fmt.Errorf("%w (or leave out --parts sanlock)", err)
		}
	}
	if sc.parts["cpu"] {
		var err error
		if sc.floorBin, err = buildCLI(ctx, sc.tmp, "./bench/floor"); err != nil {
			return err
		}
	}
	rep := newScaleReport(sc)
	var errs []error
	note := func(part string, err error) {
		if err != nil {
			logf("%s: %v", part, err)
			rep.failed = append(rep.failed, part+": "+err.Error())
			errs = append(errs, err)
		}
	}
	waves := []struct {
		part, name string
		run        func(g geometry, io int) error
	}{
		{"sparse", "sanlock-msg", func(g geometry, io int) error {
			rs, err := sparseWave(ctx, sc, g, io)
			rep.sparse = append(rep.sparse, rs...)
			return err
		}},
		{"sanlock", "sanlock", func(g geometry, io int) error {
			rs, err := sanlockWave(ctx, sc, g, io)
			rep.slk = append(rep.slk, rs...)
			return err
		}},
	}
	for _, w := range waves {
		if !sc.parts[w.part] {
			continue
		}
		for _, g := range sc.geos {
			for _, io := range sc.ios {
				if ctx.Err() != nil {
					break
				}
				rep.wave(fmt.Sprintf("%s %s io %d", w.name, g, io))
				note(fmt.Sprintf("%s %s io %d", w.name, g, io), w.run(g, io))
			}
		}
	}
	if sc.parts["crowd"] && sc.crowd > 0 && ctx.Err() == nil {
		rep.wave(fmt.Sprintf("crowd of %d", sc.crowd))
		var err error
		rep.crowd, err = crowdRun(ctx, sc)
		note("crowd", err)
	}
	if sc.parts["cpu"] && ctx.Err() == nil {
		rep.wave("cpu")
		var err error
		rep.cpu, err = cpuRun(ctx, sc)
		note("cpu", err)
	}
	rep.end = time.Now()
	text := rep.markdown()
	fmt.Print(text)
	if sc.out != "" {
		if err := os.WriteFile(sc.out, []byte(text), 0o644); err != nil {
			return err
		}
		logf("report written to %s", sc.out)
	}
	if sc.svg != "" {
		if err := os.WriteFile(sc.svg, []byte(rep.chart()), 0o644); err != nil {
			return err
		}
		logf("chart written to %s", sc.svg)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d part(s) failed", len(errs))
	}
	return nil
}

// lsResult is what one sanlock-msg lockspace measured.
type lsResult struct {
	geo     geometry
	io      int
	high    int
	ids     []int
	poll    time.Duration // --poll-interval (0: default)
	replica int
	join    []float64
	idle    *idleResult
	cold    *coldStats
	burst   *burstResult
}

// sparseSpecs are the lockspaces of one wave: per HIGH and replica, host
// ids 1, 2 and HIGH.
func sparseSpecs(sc *scaleConfig, g geometry, io int) []clusterSpec {
	var specs []clusterSpec
	for _, high := range sc.highs {
		high = min(high, g.maxHosts())
		for r := 1; r <= sc.replicas; r++ {
			specs = append(specs, clusterSpec{name: fmt.Sprintf("%d-%s-io%d-h%d-r%d", g.ss, strings.ToLower(alignName(g)), io, high, r),
				io: io, ids: []int{1, 2, high}, geo: g})
		}
	}
	return specs
}

func alignName(g geometry) string { return strings.TrimPrefix(g.String(), fmt.Sprintf("%d/", g.ss)) }

// parallel runs f(0..n-1) concurrently and joins their errors.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startAll starts the clusters of specs in parallel.
func startAll(ctx context.Context, e *benchEnv, specs []clusterSpec) ([]*msgCluster, error) {
	cs := make([]*msgCluster, len(specs))
	err := parallel(len(specs), func(i int) (err error) {
		cs[i], err = startMsgCluster(ctx, e, specs[i])
		return err
	})
	return cs, err
}

// stopAll stops the clusters in parallel.
func stopAll(cs []*msgCluster) {
	parallel(len(cs), func(i int) error {
		cs[i].stop()
		return nil
	})
}

// eachCluster runs f on every cluster in parallel.
func eachCluster(cs []*msgCluster, f func(i int, c *msgCluster) error) error {
	return parallel(len(cs), func(i int) error {
		if err := f(i, cs[i]); err != nil {
			return fmt.Errorf("%s: %w", cs[i].spec.name, err)
		}
		return nil
	})
}

// sparseWave runs every HIGH of one geometry and io_timeout at once: join,
// settle, an idle window, cold latency, a burst.
func sparseWave(ctx context.Context, sc *scaleConfig, g geometry, io int) ([]*lsResult, error) {
	specs := sparseSpecs(sc, g, io)
	logf("sanlock-msg %s io %d: %d lockspaces (HIGH %v, %d replicas), %d daemons: starting and joining", g, io, len(specs), sc.highs, sc.replicas, 3*len(specs))
	cs, err := startAll(ctx, &sc.benchEnv, specs)
	defer stopAll(cs)
	if err != nil {
		return nil, err
	}
	rs := make([]*lsResult, len(cs))
	for i, c := range cs {
		rs[i] = &lsResult{geo: g, io: io, high: c.spec.ids[2], ids: c.spec.ids, replica: i%sc.replicas + 1, join: c.joinTimes()}
	}
	if err := sleepCtx(ctx, settle(io)); err != nil {
		return rs, err
	}
	w := sc.scaleWindow(io)
	logf("sanlock-msg %s io %d: idle, %v", g, io, w)
	if err := eachCluster(cs, func(i int, c *msgCluster) (err error) {
		rs[i].idle, err = c.idle(ctx, w)
		return err
	}); err != nil {
		return rs, err
	}
	for _, r := range rs {
		logf("  HIGH %d r%d: %s", r.high, r.replica, r.idle.summary())
	}
	logf("sanlock-msg %s io %d: cold latency, %v", g, io, sc.latency)
	until := time.Now().Add(sc.latency)
	if err := eachCluster(cs, func(i int, c *msgCluster) (err error) {
		rs[i].cold, err = c.cold(ctx, [][]*msgHost{c.hosts}, until, 3*time.Second)
		return err
	}); err != nil {
		return rs, err
	}
	for _, r := range rs {
		logf("  HIGH %d r%d: %s", r.high, r.replica, r.cold.summary())
	}
	if !sc.burst {
		return rs, nil
	}
	logf("sanlock-msg %s io %d: burst, host 1 to host 2 back to back, %v", g, io, w)
	err = eachCluster(cs, func(i int, c *msgCluster) (err error) {
		rs[i].burst, err = c.burst(ctx, w)
		return err
	})
	for _, r := range rs {
		if r.burst != nil {
			logf("  HIGH %d r%d: %s", r.high, r.replica, r.burst.summary())
		}
	}
	return rs, err
}

// slkResult is what one real sanlock lockspace measured.
type slkResult struct {
	geo    geometry
	io     int
	high   int
	join   []float64
	idle   *idleResult
	events *slkEvents
}

// sanlockWave runs real sanlock daemons at host ids 1, 2 and HIGH for
// every HIGH at once: idle reads, CPU and RSS; then events from host 1 to
// host 2 in the 512/1M HIGH-3 lockspace, if asked for at this io.
func sanlockWave(ctx context.Context, sc *scaleConfig, g geometry, io int) ([]*slkResult, error) {
	var specs []clusterSpec
	for _, high := range sc.highs {
		high = min(high, g.maxHosts())
		specs = append(specs, clusterSpec{name: fmt.Sprintf("%d-%s-io%d-h%d", g.ss, strings.ToLower(alignName(g)), io, high),
			io: io, ids: []int{1, 2, high}, geo: g})
	}
	logf("sanlock %s io %d: %d lockspaces, %d daemons: starting and joining", g, io, len(specs), 3*len(specs))
	cs := make([]*slkCluster, len(specs))
	err := parallel(len(specs), func(i int) (err error) {
		cs[i], err = startSlkCluster(ctx, &sc.benchEnv, specs[i])
		return err
	})
	stop := func(cs []*slkCluster) {
		parallel(len(cs), func(i int) error {
			cs[i].stop()
			return nil
		})
	}
	defer func() { stop(cs) }()
	if err != nil {
		return nil, err
	}
	rs := make([]*slkResult, len(cs))
	for i, c := range cs {
		rs[i] = &slkResult{geo: g, io: io, high: c.spec.ids[2], join: c.joinTimes()}
	}
	if err := sleepCtx(ctx, settle(io)); err != nil {
		return rs, err
	}
	w := slkWindow(io)
	logf("sanlock %s io %d: idle, %v", g, io, w)
	if err := parallel(len(cs), func(i int) (err error) {
		rs[i].idle, err = cs[i].idle(ctx, w)
		return err
	}); err != nil {
		return rs, err
	}
	for _, r := range rs {
		logf("  HIGH %d: %s", r.high, r.idle.summary())
	}
	n := sc.events[io]
	if n == 0 || g != geo512 {
		return rs, nil
	}
	for i, c := range cs {
		if rs[i].high != sc.highs[0] {
			continue
		}
		// The others are done: stop them so that they add no I/O.
		others := slices.Delete(slices.Clone(cs), i, i+1)
		stop(others)
		cs = []*slkCluster{c}
		logf("sanlock %s io %d HIGH %d: %d events, host 1 to host 2", g, io, rs[i].high, n)
		var err error
		rs[i].events, err = c.events(ctx, n)
		return rs, err
	}
	return rs, nil
}
