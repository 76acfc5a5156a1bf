package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

const addLockspaceAbout = `
Asks the daemon to join lockspace NAME with host id HOST_ID, on the area
at byte OFFSET of PATH (a block device or file; relative paths are made
absolute here). Blocks until joined, like sanlock's add_lockspace: about
2*io_timeout on a free host id, plus the previous owner's host_dead
(8*io_timeout + the watchdog timeout, 68 s at io_timeout 1, 140 s at 10)
if the host id was last written under another host name. A host id that
is still renewed by a live host is never taken: the command then fails
with "host_id N held by live host".

While it waits, the command says what for: on a terminal, one progress
line on stderr with a countdown; otherwise one line on stderr when a wait
of more than 2 seconds starts (after the first second).

Exit status: 0 joined; 1 failed (busy, not a lockspace, name mismatch,
already added, permission, no daemon); 2 usage.`

// runAddLockspace implements `sanlock-msg add-lockspace`.
func runAddLockspace(ctx context.Context, e *env, args []string) int {
	c := newCommand("add-lockspace", "-s NAME:HOST_ID:PATH:OFFSET [-o IO_TIMEOUT] [-e HOST_NAME] [--run-dir DIR] [--json]", addLockspaceAbout)
	s := c.specFlag("lockspace and host id to join: NAME:HOST_ID:PATH:OFFSET")
	io := c.fs.IntP("io-timeout", "o", 10, "io_timeout in seconds, 1..255 (sanlock's -o); every renewal timeout derives from it")
	hostName := c.fs.StringP("host-name", "e", "", "host name to write into our sector (default: the daemon's -e)")
	runDir := c.runDirFlag()
	asJSON := c.fs.Bool("json", false, "print the joined lockspace's status as JSON")
	if done, st := c.parse(e, args); done {
		return st
	}
	sp, ok := c.spec(e, *s, false)
	if !ok {
		return exitUsage
	}
	if sp.HostID == 0 {
		return c.usageError(e, "host_id 0: add-lockspace needs the host id to join, 1..2000")
	}
	if *io < 1 || *io > 255 {
		return c.usageError(e, fmt.Sprintf("io_timeout %d: want 1..255 seconds", *io))
	}
	abs, err := filepath.Abs(sp.Path)
	if err != nil {
		return fail(e, "add-lockspace", err)
	}
	sp.Path = abs
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "add-lockspace", err)
	}
	defer cl.Close()
	start := time.Now()
	ww := watchWait(ctx, e, "add-lockspace", joinWait(e, *runDir, sp.Name, sp.HostID))
	ls, err := cl.AddLockspace(ctx, sp.String(), callback.AddOptions{IOTimeout: time.Duration(*io) * time.Second, HostName: *hostName})
	ww.stop()
	if err != nil {
		return fail(e, "add-lockspace", err)
	}
	if *asJSON {
		return jsonOut(e, "add-lockspace", ls)
	}
	fmt.Fprintf(e.stdout, "add_lockspace %s done: generation %d, host name %s, took %.1fs\n",
		sp, ls.Generation, ls.HostName, time.Since(start).Seconds())
	return exitOK
}

// joinWait polls the daemon's status, on a connection of its own, for what
// the join of lockspace name waits for.
func joinWait(e *env, runDir, name string, hostID uint64) waitPoll {
	var cl *callback.Client
	return func(ctx context.Context) (waitInfo, bool) {
		if cl == nil {
			var err error
			if cl, err = dialDaemon(ctx, e, runDir); err != nil {
				cl = nil
				return waitInfo{}, false
			}
			context.AfterFunc(ctx, func() { cl.Close() })
		}
		st, err := cl.Status(ctx)
		if err != nil {
			return waitInfo{}, false
		}
		for _, ls := range st.Lockspaces {
			if ls.Name != name || ls.State != callback.StateJoining {
				continue
			}
			if ls.Wait != nil {
				return waitInfo{What: ls.Wait.Reason, Until: ls.Wait.Until}, true
			}
			return waitInfo{What: fmt.Sprintf("joining lockspace %s as host %d", name, hostID)}, true
		}
		return waitInfo{}, false
	}
}
