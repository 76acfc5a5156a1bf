package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
)

const resultAbout = `
Tells what became of a message this daemon accepted, by its id
(HOST:GENERATION:SEQ, as 'send' printed it), from the daemon's durable
outbox: also after the daemon crashed and restarted, and for a lockspace it
has not joined again yet (a restarted daemon sends unfinished messages
again, under the same id, once it rejoins the lockspace).

  pending   accepted, not finished: the outcomes so far are listed
  done      finished: each target's outcome, as 'send --wait' prints it

Exit status: 0 if the message finished and every target got it; 1 if it
finished otherwise, is still pending, or is unknown (never accepted here,
or older than the last 10000 results kept); 2 on a usage error. With
--wait, a pending message is waited for. -s NAME narrows the search to one
lockspace.`

// runResult implements `sanlock-msg result`.
func runResult(ctx context.Context, e *env, args []string) int {
	c := newCommand("result", "[-s NAME] ID [--wait] [--json]", resultAbout)
	s := c.specFlag("lockspace: NAME (default: every lockspace with a journal for the id's host)")
	wait := c.fs.Bool("wait", false, "wait until the message finished")
	asJSON := c.fs.Bool("json", false, "print the result as JSON")
	runDir := c.runDirFlag()
	err := c.fs.Parse(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		c.usage(e)
		return exitOK
	case err != nil:
		return c.usageError(e, err.Error())
	case c.fs.NArg() != 1:
		return c.usageError(e, "one message ID is required (HOST:GENERATION:SEQ, as send printed it)")
	}
	id := c.fs.Arg(0)
	if _, err := hostmsg.ParseMsgID(id); err != nil {
		return c.usageError(e, strings.TrimPrefix(err.Error(), "hostmsg: "))
	}
	name, _, _ := strings.Cut(*s, ":")
	cl, err := dialDaemon(ctx, e, *runDir)
	if err != nil {
		return fail(e, "result", err)
	}
	defer cl.Close()
	var r *callback.SendReply
	for {
		r, err = cl.Result(ctx, name, id)
		if err != nil {
			return fail(e, "result", err)
		}
		if r.State != "pending" || !*wait {
			break
		}
		select {
		case <-ctx.Done():
			return fail(e, "result", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if *asJSON {
		if st := jsonOut(e, "result", r); st != exitOK {
			return st
		}
	} else {
		fmt.Fprintf(e.stdout, "%s %s\n", r.ID, r.State)
		printTargets(e, r)
	}
	switch {
	case r.State == "pending":
		fmt.Fprintf(e.stderr, "sanlock-msg result: %s is still pending\n", r.ID)
		return exitFail
	case !r.OK:
		fmt.Fprintf(e.stderr, "sanlock-msg result: %s\n", strings.TrimPrefix(r.Error, "hostmsg: "))
		return exitFail
	}
	return exitOK
}
