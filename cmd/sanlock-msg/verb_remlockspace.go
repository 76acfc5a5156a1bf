package main

import (
	"context"
	"fmt"
)

const remLockspaceAbout = `
Asks the daemon to leave a lockspace: it stops renewing and releases the
host id (writes timestamp 0), so peers see it FREE at once. -s takes the
full NAME:HOST_ID:PATH:OFFSET, as sanlock's rem_lockspace, or just NAME.
Removing a lockspace that is still joining cancels the join. A lockspace
that had failed is forgotten without release; its watchdog expiry is kept,
so the host still resets (a warning says so).`

// runRemLockspace implements `sanlock-msg rem-lockspace`.
func runRemLockspace(ctx context.Context, e *env, args []string) int {
	c := newCommand("rem-lockspace", "-s NAME[:HOST_ID:PATH:OFFSET] [--run-dir DIR]", remLockspaceAbout)
	s := c.specFlag("lockspace to leave: NAME:HOST_ID:PATH:OFFSET or NAME")
	runDir := c.runDirFlag()
	if done, st := c.parse(e, args); done {
		return st
	}
	spec := *s
	if spec == "" {
		return c.usageError(e, "-s NAME[:HOST_ID:PATH:OFFSET] is required")
	}
	if _, ok := c.lockspaceName(e, spec); !ok {
		return exitUsage
	}
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "rem-lockspace", err)
	}
	defer cl.Close()
	warn, err := cl.RemLockspace(ctx, spec)
	if err != nil {
		return fail(e, "rem-lockspace", err)
	}
	if warn != "" {
		fmt.Fprintf(e.stderr, "sanlock-msg rem-lockspace: warning: %s\n", warn)
	}
	fmt.Fprintf(e.stdout, "rem_lockspace %s done\n", spec)
	return exitOK
}
