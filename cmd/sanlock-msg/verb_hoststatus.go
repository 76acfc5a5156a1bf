package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

const hostStatusAbout = `
Shows every host id of a lockspace that this daemon has seen in use, as
'sanlock client host_status' does: generation, the last timestamp read,
state by sanlock's rules (UNKNOWN, FREE, LIVE, FAIL, DEAD), its
io_timeout, whether it runs sanlock-msg (its sector carries our message
extension) or plain sanlock, how long ago its timestamp last changed, and
when it will be DEAD if it does not renew again. -s takes NAME or
NAME:HOST_ID:PATH:OFFSET.`

// hostStatusJSON is host-status --json's output.
type hostStatusJSON struct {
	Lockspace string                `json:"lockspace"`
	Hosts     []callback.HostStatus `json:"hosts"`
}

// runHostStatus implements `sanlock-msg host-status`.
func runHostStatus(ctx context.Context, e *env, args []string) int {
	c := newCommand("host-status", "-s NAME [--run-dir DIR] [--json]", hostStatusAbout)
	s := c.specFlag("lockspace: NAME or NAME:HOST_ID:PATH:OFFSET")
	runDir := c.runDirFlag()
	asJSON := c.fs.Bool("json", false, "print JSON")
	if done, st := c.parse(e, args); done {
		return st
	}
	name, ok := c.lockspaceName(e, *s)
	if !ok {
		return exitUsage
	}
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "host-status", err)
	}
	defer cl.Close()
	hosts, err := cl.HostStatus(ctx, name)
	if err != nil {
		return fail(e, "host-status", err)
	}
	if hosts == nil {
		hosts = []callback.HostStatus{}
	}
	if *asJSON {
		return jsonOut(e, "host-status", hostStatusJSON{Lockspace: name, Hosts: hosts})
	}
	now := time.Now()
	fmt.Fprintf(e.stdout, "lockspace %s\n", name)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST_ID\tGENERATION\tTIMESTAMP\tSTATE\tIO_TIMEOUT\tRUNS\tLAST_CHANGE\tDEAD\tHOST_NAME")
	for _, h := range hosts {
		runs, state := h.Runs, h.State
		if runs == "" {
			runs = "-"
		}
		if h.Self {
			state += " (us)"
		}
		dead := "-"
		if h.State != "FREE" {
			dead = until(h.DeadAt, now)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", h.HostID, h.Generation, h.Timestamp, state,
			h.IOTimeout, runs, ago(h.LastChangeAge, !h.LastChange.IsZero()), dead, h.HostName)
	}
	tw.Flush()
	for _, h := range hosts {
		if h.Bad != "" {
			fmt.Fprintf(e.stdout, "host %d: last sector read is bad: %s\n", h.HostID, h.Bad)
		}
	}
	return exitOK
}
