package torture

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"
)

var (
	flagKills = flag.Int("torture.kills", 8,
		"daemons to kill -9 (crash points); CI runs the default, the long run 200 or more")
	flagHosts = flag.Int("torture.hosts", 6,
		"daemons (host ids 1..N); with six or more, a receiver's four-entry ack table (512-byte sectors) overflows into its receive marks")
	flagSeed = flag.Int64("torture.seed", 0, "seed of every random choice (0: from the clock; the log says which)")
	flagKeep = flag.String("torture.keep", "",
		"write the clients' logs and the daemons' logs into this directory (created) and keep them")
	flagNoState = flag.Bool("torture.no-state-dir", false,
		"run the daemons with --state-dir none, without durability: the checker must find losses (this run fails)")
)

// TestTorture is issue 11's crash torture (see the package doc):
// -torture.hosts daemons on one image, each host sending to one, two or all the others,
// with and without --wait, and listening with and without --manual-ack;
// daemons, manual-ack listeners and waiting sends killed with SIGKILL at
// random points until -torture.kills daemons were killed, each daemon
// restarted and joined again. Then, once every daemon runs, joined, and
// nothing is pending, the final result of every message is asked, and
// Check must find every promise kept.
func TestTorture(t *testing.T) {
	seed := *flagSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	dir := *flagKeep
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := config{hosts: *flagHosts, daemonKills: *flagKills, seed: seed, durable: !*flagNoState, logDir: dir}
	t.Logf("seed %d, %d hosts, %d daemon kills, durable %v, logs in %s", seed, cfg.hosts, cfg.daemonKills, cfg.durable, dir)
	c := newCluster(t, cfg)
	start := time.Now()
	defer c.teardown()
	c.launch()
	if !waitUntil(60*time.Second, c.allJoined) {
		c.teardown()
		t.Fatalf("the daemons did not all join within 60 s")
	}
	c.startSenders()
	c.killer(c.life)
	t.Logf("killer done after %v", time.Since(start).Round(time.Second))
	if !waitUntil(2*time.Minute, c.allJoined) {
		c.teardown()
		t.Fatalf("the daemons did not all join again within 2 minutes of the last kill")
	}
	// A little traffic with every daemon up, then the senders stop.
	time.Sleep(2 * time.Second)
	c.stopSenders()
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	err := c.settle(sctx)
	cancel()
	if err != nil {
		t.Errorf("%v (the checker reports what never ended)", err)
	}
	time.Sleep(2 * time.Second) // the listeners' last lines
	fctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	if err := c.finals(fctx); err != nil {
		t.Errorf("final results: %v", err)
	}
	cancel()
	for _, h := range c.hosts {
		h.poll(context.Background())
	}
	c.teardown()
	took := time.Since(start)

	evs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := Check(evs, Options{NoFailures: true})
	t.Logf("torture: %s; took %v", r.Summary(), took.Round(time.Second))
	t.Logf("daemon counters, at least: %+v", c.counted())
	if r.Kills[KillDaemon] < cfg.daemonKills {
		t.Errorf("%d daemon kills, want %d", r.Kills[KillDaemon], cfg.daemonKills)
	}
	if r.Messages == 0 || r.Deliveries == 0 {
		t.Errorf("nothing was sent or delivered: the torture proves nothing")
	}
	for i, v := range r.Violations {
		if i == 100 {
			t.Errorf("... and %d more", len(r.Violations)-i)
			break
		}
		t.Errorf("%v", v)
	}
	if !r.OK() && *flagKeep == "" {
		t.Logf("-torture.seed %d makes the same random choices (not the same timing); -torture.keep DIR keeps the logs", seed)
	}
}

// waitUntil polls cond every 100 ms for at most d.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
