package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

const sendAbout = `
Sends one message to one or more hosts of a lockspace this daemon has
joined. The message is written into our own sector at the daemon's next
poll (well under a second) and stays there until every target acked it,
died, restarted (when -g named its generation) or the send timed out; only
then does the next message go out, so messages are never overwritten
before they are read. Each receiver delivers it once, in seq order, to the
clients that 'listen' there, and acks it.

CODE is a comma-separated list of numbers (0x.. allowed) or names: reset
(0x1, WD_RESET: the target resets itself through its watchdog; root only),
resetting (0x2), reboot (0x4, root only), rebooting (0x8), seq-data (1<<32:
fire and forget, no ack), user0..user15 (bits 16..31, for applications).
A real sanlock host receives the message as a host event
(sanlock_get_event) with the code and data; it cannot ack, so the send ends
"delivered-unacknowledged" once that host has renewed twice.

Prints the seq used. With --wait, also prints each target's outcome and
exits 0 only if every target got the message (acked "delivered" or
"resetting", or delivered-unacknowledged for targets that cannot ack);
otherwise it exits 1 naming the reason: no-listener, wrong-generation,
timeout, target-dead, target-left, target-restarted. A --wait that lasts
more than a second says what it waits for on stderr: a progress line with
a countdown to the timeout on a terminal, else one line.`

// sendJSON is send --json's output.
type sendJSON struct {
	Lockspace string `json:"lockspace"`
	*callback.SendReply
}

// runSend implements `sanlock-msg send`.
func runSend(ctx context.Context, e *env, args []string) int {
	c := newCommand("send", "-s NAME -i HOST_ID[,HOST_ID...] -c CODE[,CODE...] [-g GENERATION] [--seq N] [--data N] [--wait] [--timeout D]", sendAbout)
	s := c.specFlag("lockspace: NAME (or NAME:HOST_ID:PATH:OFFSET)")
	ids := c.fs.StringP("host-id", "i", "", "target host id(s), comma-separated")
	gen := c.fs.Uint64P("generation", "g", 0, "target generation; the message is rejected by any other incarnation (default 0: any; one target only)")
	code := c.fs.StringP("code", "c", "", "message code(s): numbers or names, comma-separated")
	seq := c.fs.Uint64("seq", 0, "seq to use; must be greater than the last one this daemon sent in the lockspace (default: generated)")
	data := c.fs.Uint64("data", 0, "64-bit data carried in the event data field (default: the seq)")
	wait := c.fs.Bool("wait", false, "wait until every target answered and print the outcome per target")
	timeout := c.fs.Duration("timeout", 0, "give up on targets that have not answered after this long (default: the lockspace's host_dead)")
	asJSON := c.fs.Bool("json", false, "print the reply as JSON")
	runDir := c.runDirFlag()
	if done, st := c.parse(e, args); done {
		return st
	}
	name, ok := c.lockspaceName(e, *s)
	if !ok {
		return exitUsage
	}
	targets, err := parseHostIDs(*ids)
	if err != nil {
		return c.usageError(e, err.Error())
	}
	if *code == "" {
		return c.usageError(e, "-c CODE is required")
	}
	cv, err := leader.ParseCodes(*code)
	if err != nil {
		return c.usageError(e, strings.TrimPrefix(err.Error(), "leader: "))
	}
	if *seq > leader.MaxSeq {
		return c.usageError(e, fmt.Sprintf("--seq %d exceeds 48 bits", *seq))
	}
	if *timeout < 0 {
		return c.usageError(e, "--timeout must not be negative")
	}
	req := callback.SendRequest{Lockspace: name, Targets: targets, Generation: *gen, Code: cv, Seq: *seq,
		Wait: *wait, Timeout: *timeout}
	if c.fs.Changed("data") {
		req.Data = data
	}
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "send", err)
	}
	defer cl.Close()
	var ww *waitWatcher
	if *wait {
		ww = watchWait(ctx, e, "send", sendWait(e, *runDir, name, targets, *timeout))
	}
	reply, err := cl.Send(ctx, req)
	if ww != nil {
		ww.stop()
	}
	if err != nil {
		if errors.Is(err, callback.ErrPermission) {
			return fail(e, "send", fmt.Errorf("%w (reset and reboot codes need root)", err))
		}
		return fail(e, "send", err)
	}
	if *asJSON {
		if st := jsonOut(e, "send", sendJSON{Lockspace: name, SendReply: reply}); st != exitOK {
			return st
		}
	} else {
		fmt.Fprintf(e.stdout, "seq %d\n", reply.Seq)
		if reply.Done {
			for _, t := range reply.Targets {
				fmt.Fprintf(e.stdout, "host %d generation %d: %s%s (after %.3fs)\n", t.HostID, t.Generation, t.Outcome,
					statusSuffix(t.Status), t.At.Sub(reply.QueuedAt).Seconds())
			}
		}
	}
	if reply.Done && !reply.OK {
		fmt.Fprintf(e.stderr, "sanlock-msg send: %s\n", strings.TrimPrefix(reply.Error, "hostmsg: "))
		return exitFail
	}
	return exitOK
}

func statusSuffix(st string) string {
	if st == "" {
		return ""
	}
	return " " + st
}

// parseHostIDs parses "2" or "2,3,7".
func parseHostIDs(s string) ([]uint64, error) {
	if s == "" {
		return nil, errors.New("-i HOST_ID is required")
	}
	var ids []uint64
	for _, f := range strings.Split(s, ",") {
		id, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil || id == 0 || id > leader.MaxHostID {
			return nil, fmt.Errorf("bad host id %q: want 1..%d", f, leader.MaxHostID)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// sendWait describes send --wait's wait: the targets' answers, until the
// send's timeout (by default the lockspace's host_dead plus a renewal
// interval, counted from now: a send queued behind others may take longer).
func sendWait(e *env, runDir, name string, targets []uint64, timeout time.Duration) waitPoll {
	start := time.Now()
	what := fmt.Sprintf("waiting for %s to answer in lockspace %s", hostList(targets), name)
	known := timeout != 0
	return func(ctx context.Context) (waitInfo, bool) {
		if !known {
			known = true // ask once
			if t, ok := lockspaceTimeouts(ctx, e, runDir, name); ok {
				timeout = t.HostDead() + t.RenewalInterval()
			}
		}
		if timeout == 0 {
			return waitInfo{What: what}, true
		}
		return waitInfo{What: what, Until: start.Add(timeout)}, true
	}
}

// lockspaceTimeouts returns the timeouts of lockspace name in the daemon:
// its io_timeout and the daemon's watchdog timeout.
func lockspaceTimeouts(ctx context.Context, e *env, runDir, name string) (delta.Timeouts, bool) {
	cl, err := dialDaemon(ctx, e, runDir)
	if err != nil {
		return delta.Timeouts{}, false
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return delta.Timeouts{}, false
	}
	for _, ls := range st.Lockspaces {
		if ls.Name == name && ls.IOTimeout > 0 && st.Watchdog.TimeoutSec > 0 {
			return delta.NewTimeouts(time.Duration(ls.IOTimeout)*time.Second,
				time.Duration(st.Watchdog.TimeoutSec*float64(time.Second))), true
		}
	}
	return delta.Timeouts{}, false
}
