package main

import (
	"context"
	"fmt"

	"github.com/sanlock-msg/sanlock-msg/metrics"
)

const metricsAbout = `
Prints the daemon's counters in the Prometheus text exposition format, for
node_exporter's textfile collector (or any scraper): per lockspace its
state, renewal health, renewals and failures, device reads, writes, bytes
and latency sums, messages sent, delivered and failed (per target by
outcome and ack status), and how many of its hosts are UNKNOWN, FREE,
LIVE, FAIL or DEAD; and the daemon's watchdog state. Every metric is named
sanlock_msg_*; the manual lists them (METRICS).

For the textfile collector, run it from a timer and rename the file into
place, so the collector never reads half a file:

  sanlock-msg metrics > /var/lib/prometheus/node-exporter/sanlock-msg.prom.$$;
  mv /var/lib/prometheus/node-exporter/sanlock-msg.prom.$$ /var/lib/prometheus/node-exporter/sanlock-msg.prom

Without a daemon it still prints sanlock_msg_up 0 (and exits 1), so the
graph shows the daemon down instead of stale numbers.`

// runMetrics implements `sanlock-msg metrics`.
func runMetrics(ctx context.Context, e *env, args []string) int {
	c := newCommand("metrics", "[--run-dir DIR]", metricsAbout)
	runDir := c.runDirFlag()
	if done, st := c.parse(e, args); done {
		return st
	}
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		if werr := metrics.Write(e.stdout, metrics.Snapshot{}); werr != nil {
			return fail(e, "metrics", werr)
		}
		return fail(e, "metrics", err)
	}
	defer cl.Close()
	snap, err := metrics.Gather(ctx, cl)
	if err != nil {
		if werr := metrics.Write(e.stdout, metrics.Snapshot{}); werr != nil {
			return fail(e, "metrics", werr)
		}
		return fail(e, "metrics", fmt.Errorf("status: %w", err))
	}
	if err := metrics.Write(e.stdout, snap); err != nil {
		return fail(e, "metrics", err)
	}
	return exitOK
}
