package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
)

const timeoutsAbout = `
Prints every timeout sanlock-msg (and sanlock) derives from io_timeout and
the watchdog fire timeout W, so operators can size both from one table.
Peers use the io_timeout written in a host's sector for their timeouts
toward that host; W must be the same on every host.

The fencing rows follow a WD_RESET: the target acks it "resetting" at its
next poll, stops feeding its watchdog and sets a 1 s fire timeout once the
ack is on disk (W if it cannot write). Peers, including plain sanlock
hosts, consider it dead host_dead after its last renewal; that is when a
VM manager may act on its resources.`

// timeoutRow is one line of the table.
type timeoutRow struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Formula string  `json:"formula"`
	Meaning string  `json:"meaning"`
}

// timeoutRows computes the table for io_timeout io and watchdog timeout w.
func timeoutRows(io, w time.Duration) []timeoutRow {
	t := delta.NewTimeouts(io, w)
	row := func(name string, d time.Duration, formula, meaning string) timeoutRow {
		return timeoutRow{name, d.Seconds(), formula, meaning}
	}
	const resetFire = time.Second
	return []timeoutRow{
		row("io_timeout", t.IO, "-o", "bound on every read and write"),
		row("watchdog_timeout", t.Watchdog, "W", "watchdog fire timeout, same on every host"),
		row("id_renewal", t.IDRenewal(), "2*io", "a renewal is due this long after the last"),
		row("renewal_interval", t.RenewalInterval(), "2*io + 0.5s", "actual renewal cadence (as sanlock)"),
		row("renewal_warn", t.RenewalWarn(), "6*io", "no successful renewal: warn"),
		row("renewal_fail", t.RenewalFail(), "8*io", "no successful renewal: lockspace fails, watchdog not fed"),
		row("host_fail", t.HostFail(), "8*io_o", "peer shown FAIL after this long without a change"),
		row("host_dead", t.HostDead(), "8*io_o + W", "peer DEAD: its watchdog has reset it"),
		row("set_bitmap", t.SetBitmap(), "6*io", "sanlock keeps an event bit set this long"),
		row("acquire_free", t.ShortDelay(), "2*io_o", "join of a free host id (verify delay)"),
		row("acquire_held", t.AcquireWait()+t.ShortDelay(), "max(8*io_o+W, 8*io_o) + 2*io_o", "join of a host id last held by another host name"),
		row("doorbell_poll", delta.DefaultPollInterval, "daemon --poll-interval", "read of our doorbell between renewals (stretched on a crowded area to stay within sanlock's read rate)"),
		row("ring_retry", hostmsg.DefaultRingRetry, "0.5s, doubling up to renewal_interval", "a message target whose ack is missing is rung again"),
		row("reset_fire", resetFire, "1s after the ack", "a WD_RESET target's watchdog fires (W if the ack cannot be written)"),
		row("fence_complete", t.RenewalInterval()+resetFire+t.HostDead(), "renewal_interval + 1s + host_dead", "worst case from WD_RESET accepted until peers see the target DEAD"),
		row("fence_failed_after", t.Watchdog+2*t.RenewalInterval(), "W + 2*renewal_interval", "`reset` declares the fence failed if the target still renews this long after RESETTING"),
	}
}

// runTimeouts implements `sanlock-msg timeouts`.
func runTimeouts(ctx context.Context, e *env, args []string) int {
	c := newCommand("timeouts", "[-o IO_TIMEOUT] [--watchdog-timeout W] [--json]", timeoutsAbout)
	io := c.fs.IntP("io-timeout", "o", 10, "io_timeout in seconds (1..255), as given to add-lockspace -o")
	w := c.fs.Duration("watchdog-timeout", delta.DefaultWatchdogTimeout, "watchdog fire timeout W")
	asJSON := c.fs.Bool("json", false, "print a JSON array of {name, seconds, formula, meaning}")
	if done, st := c.parse(e, args); done {
		return st
	}
	if *io < 1 || *io > 255 {
		return c.usageError(e, fmt.Sprintf("io_timeout %d: want 1..255 seconds", *io))
	}
	if *w < time.Second {
		return c.usageError(e, fmt.Sprintf("watchdog timeout %v: want at least 1s", *w))
	}
	rows := timeoutRows(time.Duration(*io)*time.Second, *w)
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return fail(e, "timeouts", err)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NAME\tSECONDS\tFORMULA\tMEANING\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%g\t%s\t%s\n", r.Name, r.Seconds, r.Formula, r.Meaning)
	}
	tw.Flush()
	return exitOK
}
