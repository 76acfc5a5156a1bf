package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

const shutdownAbout = `
Asks the daemon to exit. The daemon answers first: it refuses while
lockspaces are joined (exit status 1, naming them), unless --force, which
releases every lockspace before exiting. With --wait the command then
waits until the daemon's process is gone. The watchdog is disarmed only
if every lockspace was released cleanly. A --wait that lasts more than a
second says what it waits for on stderr (the lockspaces still being
released, then the process): a progress line with a countdown to
--timeout on a terminal, else one line.`

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
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "shutdown", err)
	}
	defer cl.Close()
	var ww *waitWatcher
	if *wait {
		ww = watchWait(ctx, e, "shutdown", shutdownWait(e, *runDir, time.Now().Add(*timeout)))
	}
	err = cl.Shutdown(ctx, *force, *wait)
	if ww != nil {
		ww.stop()
	}
	if err != nil {
		return fail(e, "shutdown", err)
	}
	if *wait {
		fmt.Fprintln(e.stdout, "shutdown done: the daemon has exited")
	} else {
		fmt.Fprintln(e.stdout, "shutdown accepted: the daemon is exiting")
	}
	return exitOK
}

// shutdownWait describes shutdown --wait's wait: the lockspaces the daemon
// still releases, then its exit, until deadline.
func shutdownWait(e *env, runDir string, deadline time.Time) waitPoll {
	var cl *callback.Client
	pid := 0
	return func(ctx context.Context) (waitInfo, bool) {
		gone := waitInfo{What: "waiting for the daemon to exit", Until: deadline}
		if pid != 0 {
			gone.What = fmt.Sprintf("waiting for the daemon (pid %d) to exit", pid)
		}
		if cl == nil {
			var err error
			if cl, err = dialDaemon(ctx, e, runDir); err != nil {
				cl = nil
				return gone, true
			}
			context.AfterFunc(ctx, func() { cl.Close() })
		}
		st, err := cl.Status(ctx)
		if err != nil {
			return gone, true
		}
		pid = st.PID
		var names []string
		for _, ls := range st.Lockspaces {
			names = append(names, ls.Name)
		}
		if len(names) == 0 {
			return waitInfo{What: fmt.Sprintf("waiting for the daemon (pid %d) to exit", pid), Until: deadline}, true
		}
		return waitInfo{What: fmt.Sprintf("waiting for the daemon (pid %d) to release %s and exit", pid, strings.Join(names, ", ")),
			Until: deadline}, true
	}
}
