// Command msgbench measures sanlock-msg against real sanlock 3.x on this
// machine: message latency, acked round trip and throughput between two
// sanlock-msg daemons, idle disk I/O, CPU and RSS per host with 2 and 16
// hosts, and the same idle figures and host event latency for real sanlock
// daemons, at io_timeout 1 and 10. It prints a markdown table next to the
// reference numbers of DEVELOPERS.md.
//
// Run it by hand from inside the module (it builds ./cmd/sanlock-msg):
//
//	go run ./bench/msgbench [--io 1,10] [--quick] [--out FILE]
//
// See bench/README.md for what each number means and how long it takes.
// Everything it starts (daemons, Python helpers) is stopped by pid and
// every image removed on exit, Ctrl-C included.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lsName is the lockspace every cluster joins.
const lsName = "BENCH"

type config struct {
	benchEnv
	ios        []int
	many       int // the larger cluster's size
	messages   int
	rtts       int
	gapMin     time.Duration
	gapMax     time.Duration
	throughput time.Duration
	idleWindow time.Duration // 0: automatic per io_timeout
	events     int
	skip       map[string]bool
	out        string
	keepLogs   bool
	quick      bool
}

// skipNames are the parts --skip accepts.
var skipNames = []string{"msg", "sanlock", "idle", "many", "latency", "rtt", "throughput", "events"}

var t0 = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

func parseFlags() *config {
	cfg := &config{skip: map[string]bool{}}
	ios := flag.String("io", "1,10", "io_timeouts to run, comma-separated")
	flag.IntVar(&cfg.many, "hosts", 16, "size of the larger cluster for idle I/O (the smaller one is 2)")
	flag.IntVar(&cfg.messages, "messages", 100, "one-way latency samples (sends without wait)")
	flag.IntVar(&cfg.rtts, "rtt", 0, "acked round-trip samples (default: --messages)")
	flag.DurationVar(&cfg.gapMin, "gap-min", 50*time.Millisecond, "shortest random pause before a latency sample")
	flag.DurationVar(&cfg.gapMax, "gap-max", 3*time.Second, "longest random pause before a latency sample")
	flag.DurationVar(&cfg.throughput, "throughput", 60*time.Second, "how long one sender sends back-to-back with wait (0: skip)")
	flag.DurationVar(&cfg.idleWindow, "idle-window", 0, "idle measurement window (default: 24 s at io 1, 167 s at io 10: two cycles of 4 renewals)")
	flag.IntVar(&cfg.events, "events", 10, "real sanlock events to time (each takes ~2-4 renewal intervals)")
	skip := flag.String("skip", "", "parts to skip, comma-separated: "+strings.Join(skipNames, ", "))
	flag.StringVar(&cfg.out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&cfg.imageDir, "image-dir", "/var/tmp", "directory for the lockspace images (must accept O_DIRECT: not tmpfs)")
	flag.BoolVar(&cfg.keepLogs, "keep-logs", false, "keep the temporary directory with the daemons' logs")
	flag.StringVar(&cfg.bin, "bin", "", "sanlock-msg binary to use (default: build ./cmd/sanlock-msg)")
	flag.BoolVar(&cfg.quick, "quick", false, "fewer samples: 30 latency and round-trip samples, 20 s throughput, 3 events")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./bench/msgbench [flags]\n\nBenchmarks sanlock-msg daemons against real sanlock daemons (see bench/README.md).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, f := range strings.Split(*ios, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 255 {
			fmt.Fprintf(os.Stderr, "msgbench: --io %q: want io_timeouts in 1..255\n", *ios)
			os.Exit(2)
		}
		cfg.ios = append(cfg.ios, n)
	}
	for _, f := range strings.Split(*skip, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !slices.Contains(skipNames, f) {
			fmt.Fprintf(os.Stderr, "msgbench: --skip %q: unknown part %q (want %s)\n", *skip, f, strings.Join(skipNames, ", "))
			os.Exit(2)
		}
		cfg.skip[f] = true
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		if !set["messages"] {
			cfg.messages = 30
		}
		if !set["throughput"] {
			cfg.throughput = 20 * time.Second
		}
		if !set["events"] {
			cfg.events = 3
		}
	}
	if !set["rtt"] {
		cfg.rtts = cfg.messages
	}
	if cfg.gapMax < cfg.gapMin || cfg.many < 2 {
		fmt.Fprintf(os.Stderr, "msgbench: want --gap-max >= --gap-min and --hosts >= 2\n")
		os.Exit(2)
	}
	return cfg
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "scale" {
		sc := parseScaleFlags(os.Args[2:])
		os.Exit(mainWith(func(ctx context.Context) error { return runScale(ctx, sc) }))
	}
	cfg := parseFlags()
	os.Exit(mainWith(func(ctx context.Context) error { return run(ctx, cfg) }))
}

// mainWith runs f with a context that a first Ctrl-C (or SIGTERM) cancels,
// then cleans up everything the bench started; a second Ctrl-C kills it
// all at once. It returns the exit status.
func mainWith(f func(ctx context.Context) error) int {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("%v: stopping; cleaning up (again to kill everything at once)", s)
		cancel()
		<-sigs
		logf("killing everything the bench started")
		reg.cleanup(0)
		os.Exit(130)
	}()
	code := 0
	if err := f(ctx); err != nil {
		logf("msgbench: %v", err)
		code = 1
	}
	cancel()
	reg.cleanup(15 * time.Second)
	if ctx.Err() != nil && code != 0 {
		code = 130
	}
	return code
}

// setup makes the temporary directory (removed at exit unless keepLogs)
// and builds the CLI unless e.bin names one.
func setup(ctx context.Context, e *benchEnv, keepLogs bool) error {
	tmp, err := os.MkdirTemp("", "msgbench-")
	if err != nil {
		return err
	}
	e.tmp = tmp
	if keepLogs {
		logf("logs in %s (kept)", tmp)
	} else {
		reg.removeLater(tmp)
	}
	if e.bin == "" {
		logf("building sanlock-msg")
		if e.bin, err = buildCLI(ctx, tmp, "./cmd/sanlock-msg"); err != nil {
			return err
		}
	}
	return nil
}

func run(ctx context.Context, cfg *config) error {
	if err := setup(ctx, &cfg.benchEnv, cfg.keepLogs); err != nil {
		return err
	}
	if !cfg.skip["sanlock"] {
		if err := checkSanlock(ctx); err != nil {
			return fmt.Errorf("%w (or --skip sanlock)", err)
		}
	}
	rep := newReport(cfg)
	for _, io := range cfg.ios {
		if err := runIO(ctx, cfg, rep, io); err != nil {
			rep.failed = append(rep.failed, fmt.Sprintf("io %d: %v", io, err))
			if ctx.Err() != nil {
				break
			}
			logf("io %d: %v (continuing)", io, err)
		}
	}
	text := rep.markdown()
	fmt.Print(text)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(text), 0o644); err != nil {
			return err
		}
		logf("report written to %s", cfg.out)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(rep.failed) > 0 {
		return fmt.Errorf("%d part(s) failed", len(rep.failed))
	}
	return nil
}

// idleWindow returns the idle measurement window at io: long enough to
// hold two full-area reads of sanlock-msg (every fourth renewal, every
// 4·(2·io + 0.5 s)), so that rates are taken over a whole cycle; at least
// 24 s. Real sanlock reads the whole area at every renewal.
func idleWindow(cfg *config, io int) time.Duration {
	if cfg.idleWindow > 0 {
		return cfg.idleWindow
	}
	cycle := 4 * (time.Duration(2*io)*time.Second + 500*time.Millisecond)
	return max(24*time.Second, 2*cycle+3*time.Second)
}

// settle is how long to wait after the joins before measuring: one
// renewal interval, so the first full scans are over.
func settle(io int) time.Duration { return time.Duration(2*io)*time.Second + time.Second }

// runIO runs every part at one io_timeout, in sequence (never two
// clusters at once).
func runIO(ctx context.Context, cfg *config, rep *report, io int) error {
	var errs []string
	note := func(part string, err error) {
		if err != nil {
			logf("io %d: %s: %v", io, part, err)
			errs = append(errs, part+": "+err.Error())
		}
	}
	if !cfg.skip["msg"] {
		note("sanlock-msg, 2 hosts", msgPair(ctx, cfg, rep, io))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !cfg.skip["idle"] && !cfg.skip["many"] {
			note(fmt.Sprintf("sanlock-msg, %d hosts", cfg.many), msgMany(ctx, cfg, rep, io))
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if !cfg.skip["sanlock"] {
		note("sanlock, 2 hosts", slkPair(ctx, cfg, rep, io))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !cfg.skip["idle"] && !cfg.skip["many"] {
			note(fmt.Sprintf("sanlock, %d hosts", cfg.many), slkMany(ctx, cfg, rep, io))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return ctx.Err()
}

func msgPair(ctx context.Context, cfg *config, rep *report, io int) error {
	logf("io %d: sanlock-msg, 2 daemons: starting and joining", io)
	c, err := startMsgCluster(ctx, &cfg.benchEnv, firstIDs(fmt.Sprintf("io%d-n2", io), io, 2))
	defer c.stop()
	if err != nil {
		return err
	}
	col := rep.col("sanlock-msg", io)
	col.join = c.joinTimes()
	logf("io %d: joined in %s s", io, numRange(col.join, "%.1f"))
	if err := sleepCtx(ctx, settle(io)); err != nil {
		return err
	}
	if !cfg.skip["idle"] {
		w := idleWindow(cfg, io)
		logf("io %d: sanlock-msg idle, 2 hosts, %v", io, w)
		if col.idle2, err = c.idle(ctx, w); err != nil {
			return err
		}
		logf("io %d: %s", io, col.idle2.summary())
	}
	if cfg.skip["latency"] && cfg.skip["rtt"] && cfg.skip["throughput"] {
		return nil
	}
	sub := *cfg
	if cfg.skip["latency"] {
		sub.messages = 0
	}
	if cfg.skip["rtt"] {
		sub.rtts = 0
	}
	if cfg.skip["throughput"] {
		sub.throughput = 0
	}
	col.msg, err = c.latency(ctx, &sub)
	return err
}

func msgMany(ctx context.Context, cfg *config, rep *report, io int) error {
	logf("io %d: sanlock-msg, %d daemons: starting and joining", io, cfg.many)
	c, err := startMsgCluster(ctx, &cfg.benchEnv, firstIDs(fmt.Sprintf("io%d-n%d", io, cfg.many), io, cfg.many))
	defer c.stop()
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, settle(io)); err != nil {
		return err
	}
	w := idleWindow(cfg, io)
	logf("io %d: sanlock-msg idle, %d hosts, %v", io, cfg.many, w)
	col := rep.col("sanlock-msg", io)
	if col.idleN, err = c.idle(ctx, w); err != nil {
		return err
	}
	logf("io %d: %s", io, col.idleN.summary())
	return nil
}

func slkPair(ctx context.Context, cfg *config, rep *report, io int) error {
	logf("io %d: sanlock, 2 daemons: starting and joining", io)
	c, err := startSlkCluster(ctx, &cfg.benchEnv, firstIDs(fmt.Sprintf("io%d-n2", io), io, 2))
	defer c.stop()
	if err != nil {
		return err
	}
	col := rep.col("sanlock", io)
	col.join = c.joinTimes()
	logf("io %d: joined in %s s", io, numRange(col.join, "%.1f"))
	if err := sleepCtx(ctx, settle(io)); err != nil {
		return err
	}
	if !cfg.skip["idle"] {
		w := idleWindow(cfg, io)
		logf("io %d: sanlock idle, 2 hosts, %v", io, w)
		if col.idle2, err = c.idle(ctx, w); err != nil {
			return err
		}
		logf("io %d: %s", io, col.idle2.summary())
	}
	if cfg.skip["events"] || cfg.events == 0 {
		return nil
	}
	logf("io %d: sanlock events, %d", io, cfg.events)
	col.events, err = c.events(ctx, cfg.events)
	return err
}

func slkMany(ctx context.Context, cfg *config, rep *report, io int) error {
	logf("io %d: sanlock, %d daemons: starting and joining", io, cfg.many)
	c, err := startSlkCluster(ctx, &cfg.benchEnv, firstIDs(fmt.Sprintf("io%d-n%d", io, cfg.many), io, cfg.many))
	defer c.stop()
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, settle(io)); err != nil {
		return err
	}
	w := idleWindow(cfg, io)
	logf("io %d: sanlock idle, %d hosts, %v", io, cfg.many, w)
	col := rep.col("sanlock", io)
	if col.idleN, err = c.idle(ctx, w); err != nil {
		return err
	}
	logf("io %d: %s", io, col.idleN.summary())
	return nil
}
