package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

const listenAbout = `
Registers with the daemon for the messages of a lockspace and prints each
one as it arrives: its id (HOST:GENERATION:SEQ), sender host id and
generation, seq (0 for an event from a plain sanlock host), code, data and
the ack status this host wrote. While at least one client listens,
messages are acked "delivered"; with none they are acked "no-listener" and
not kept, except for a grace after the join (10 s), during which they wait
on their sender's disk for a listener.

With --manual-ack, a message is acked "delivered" to its sender only once
listen has written its line to stdout and flushed it; messages printed but
not acked when listen dies are printed again by the next listener, with
the same id and marked REDELIVERED (JSON: "redelivered": true). Without it,
a message is acked once the daemon has written it to listen's connection.

With --wait, listen waits for the daemon and the lockspace to appear
instead of failing: start it before add-lockspace, so that a restarting
host's first messages find it. The lockspace may also be still joining.

A listener whose queue (4096) is full while others still take messages
misses them and is told so by an overflow line (JSON:
{"type":"overflow","dropped":N}); when no listener has room, messages wait
on their senders' disks. When the lockspace is removed, an end line is
printed and listen exits 0. With --json every line is one JSON record (see
the manual).`

// runListen implements `sanlock-msg listen`.
func runListen(ctx context.Context, e *env, args []string) int {
	c := newCommand("listen", "-s NAME [--json] [--count N] [--manual-ack] [--wait]", listenAbout)
	s := c.specFlag("lockspace: NAME (or NAME:HOST_ID:PATH:OFFSET)")
	asJSON := c.fs.Bool("json", false, "print each record as one JSON line")
	count := c.fs.Int("count", 0, "exit after N messages (default: until interrupted or the lockspace goes away)")
	manual := c.fs.Bool("manual-ack", false, "ack each message only once its line is written and flushed to stdout")
	wait := c.fs.Bool("wait", false, "wait for the daemon and the lockspace instead of failing")
	runDir := c.runDirFlag()
	if done, st := c.parse(e, args); done {
		return st
	}
	name, ok := c.lockspaceName(e, *s)
	if !ok {
		return exitUsage
	}
	if *count < 0 {
		return c.usageError(e, "--count must not be negative")
	}
	reg, err := register(ctx, callback.ResolveRunDir(*runDir, e.getenv), name, *manual, *wait)
	if err != nil {
		return fail(e, "listen", err)
	}
	defer reg.Close()
	if !*asJSON {
		fmt.Fprintf(e.stderr, "listening for messages in lockspace %s\n", name)
	}
	enc := json.NewEncoder(e.stdout)
	got := 0
	for *count == 0 || got < *count {
		rec, err := reg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return exitOK // interrupted
			}
			return fail(e, "listen", err)
		}
		if *asJSON {
			if err := enc.Encode(rec); err != nil {
				return fail(e, "listen", err)
			}
		} else {
			printRecord(e, rec)
		}
		if f, ok := e.stdout.(interface{ Sync() error }); ok {
			f.Sync()
		}
		if *manual && rec.AckNeeded {
			if err := reg.Ack(rec.ID); err != nil {
				return fail(e, "listen", err)
			}
		}
		switch rec.Type {
		case callback.RecordMessage:
			got++
		case callback.RecordEnd:
			return exitOK
		}
	}
	return exitOK
}

// register registers for lockspace name; with wait, it retries while
// there is no daemon or no such lockspace.
func register(ctx context.Context, runDir, name string, manual, wait bool) (*callback.Registration, error) {
	for {
		reg, err := callback.RegisterWith(ctx, runDir, name, callback.RegisterOptions{ManualAck: manual})
		if err == nil || !wait || !(errors.Is(err, callback.ErrNotJoined) || errors.Is(err, callback.ErrNoDaemon)) {
			return reg, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printRecord(e *env, r callback.Record) {
	switch r.Type {
	case callback.RecordMessage:
		src := "id " + r.ID
		if r.Native {
			src = "sanlock event"
		}
		if r.Redelivered {
			src += " REDELIVERED"
		}
		gen := ""
		if r.Generation != 0 {
			gen = fmt.Sprintf(" for generation %d", r.Generation)
		}
		fmt.Fprintf(e.stdout, "%s from host %d generation %d: %s code %#x (%s) data %d%s [%s]\n",
			r.Time.Format("15:04:05.000"), r.FromHostID, r.FromGeneration, src, r.Code, strings.Join(r.Codes, ","),
			r.Data, gen, r.Status)
	case callback.RecordOverflow:
		fmt.Fprintf(e.stdout, "OVERFLOW: %d message(s) lost: this listener read too slowly\n", r.Dropped)
	case callback.RecordEnd:
		fmt.Fprintf(e.stdout, "end: %s\n", r.Reason)
	default:
		fmt.Fprintf(e.stdout, "unknown record %q\n", r.Type)
	}
}
