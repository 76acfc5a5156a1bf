package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

const statusAbout = `
Shows the daemon (pid, version, run directory, watchdog and whether it is
being fed) and each lockspace: host id, generation, state (joining,
joined, failed, removing), renewal health (ok, late, warn, failed), the
last successful renewal, when the lease expires without another one
(renewal_fail = 8*io_timeout after it), renewal counts and I/O, the
doorbell poll interval, and a line per lockspace on its doorbell: polls of
our doorbell (failed, bad: torn or corrupt, foreign: not a doorbell; all
ignored), rings received and gaps (rings lost: a scan followed), rings
written (refused over a sector that is not a doorbell, recreated over a
torn one, failed), reads of some host sectors and scans of the area
between renewals. --json prints the same as one JSON object with stable
snake_case fields.`

// runStatus implements `sanlock-msg status`.
func runStatus(ctx context.Context, e *env, args []string) int {
	c := newCommand("status", "[--run-dir DIR] [--json]", statusAbout)
	runDir := c.runDirFlag()
	asJSON := c.fs.Bool("json", false, "print JSON")
	if done, st := c.parse(e, args); done {
		return st
	}
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "status", err)
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return fail(e, "status", err)
	}
	if *asJSON {
		return jsonOut(e, "status", st)
	}
	now := time.Now()
	fmt.Fprintf(e.stdout, "daemon pid %d version %s run_dir %s host_name %s\n", st.PID, st.Version, st.RunDir, st.HostName)
	fmt.Fprintf(e.stdout, "watchdog %s timeout %gs: %s\n", st.Watchdog.Device, st.Watchdog.TimeoutSec, st.Watchdog.Decision)
	fmt.Fprintf(e.stdout, "clients %d connected, %d refused over a connection cap since start\n", st.Connections, st.ConnectionsRefused)
	if len(st.Lockspaces) == 0 {
		fmt.Fprintln(e.stdout, "no lockspaces")
		return exitOK
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCKSPACE\tHOST_ID\tGENERATION\tSTATE\tHEALTH\tIO_TIMEOUT\tLAST_RENEWAL\tEXPIRES\tRENEWALS\tFAILS\tREADS\tWRITES\tPOLL\tPATH:OFFSET")
	for _, ls := range st.Lockspaces {
		health := ls.Health
		if health == "" {
			health = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s:%d\n",
			ls.Name, ls.HostID, ls.Generation, ls.State, health, ls.IOTimeout,
			ago(ls.LastRenewalAge, !ls.LastRenewal.IsZero()), until(ls.Expiry, now),
			ls.Renewals, ls.RenewFails, ls.Reads, ls.Writes, fmtSeconds(ls.PollSec), ls.Path, ls.Offset)
	}
	tw.Flush()
	for _, ls := range st.Lockspaces {
		if b := ls.Doorbell; b != nil {
			fmt.Fprintf(e.stdout, "%s: doorbell %d: %d polls (%d failed, %d bad, %d foreign), %d rings received (%d gaps); "+
				"%d rings written to %d targets (%d refused, %d recreated, %d failed); %d planned reads (%d bytes), %d scans\n",
				ls.Name, b.Index, b.Polls, b.PollErrors, b.Bad, b.Foreign, b.RingsReceived, b.Gaps,
				b.RingsWritten, b.TargetsRung, b.RingsRefused, b.Recreated, b.RingErrors, b.TargetedReads, b.TargetedBytes, b.Scans)
		}
		if ls.Error != "" {
			fmt.Fprintf(e.stdout, "%s: %s\n", ls.Name, ls.Error)
		}
	}
	return exitOK
}

// fmtSeconds formats seconds compactly ("250ms", "2.5s"), "-" for zero.
func fmtSeconds(s float64) string {
	if s == 0 {
		return "-"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
