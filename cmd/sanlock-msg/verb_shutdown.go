package main

import (
	"context"
	"fmt"
	"time"
)

const shutdownAbout = `
Asks the daemon to exit. The daemon answers first: it refuses while
lockspaces are joined (exit status 1, naming them), unless --force, which
releases every lockspace before exiting. With --wait the command then
waits until the daemon's process is gone. The watchdog is disarmed only
if every lockspace was released cleanly.`

// runShutdown implements `sanlock-msg shutdown`.
func runShutdown(ctx context.Context, e *env, args []string) int {
	c := newCommand("shutdown", "[--wait] [--force] [--run-dir DIR]", shutdownAbout)
	wait := c.fs.BoolP("wait", "w", false, "wait until the daemon has exited")
	force := c.fs.BoolP("force", "f", false, "release every lockspace, then exit")
	timeout := c.fs.Duration("timeout", 5*time.Minute, "give up waiting after this long")
	runDir := c.runDirFlag()
	if done, st := c.parse(e, args); done {
		return st
	}
	if *timeout <= 0 {
		return c.usageError(e, "--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "shutdown", err)
	}
	defer cl.Close()
	if err := cl.Shutdown(ctx, *force, *wait); err != nil {
		return fail(e, "shutdown", err)
	}
	if *wait {
		fmt.Fprintln(e.stdout, "shutdown done: the daemon has exited")
	} else {
		fmt.Fprintln(e.stdout, "shutdown accepted: the daemon is exiting")
	}
	return exitOK
}
