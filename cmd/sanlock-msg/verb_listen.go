package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

const listenAbout = `
Registers with the daemon for the messages of a lockspace and prints each
one as it arrives: sender host id and generation, seq (0 for an event from
a plain sanlock host), code, data and the ack status this host wrote. While
at least one client listens, messages are acked "delivered"; with none they
are acked "no-listener" and not kept.

A client that reads too slowly loses messages past a queue of 4096; it is
told so by an overflow line (JSON: {"type":"overflow","dropped":N}), never
silently. When the lockspace is removed, an end line is printed and listen
exits 0. With --json every line is one JSON record (see the manual).`

// runListen implements `sanlock-msg listen`.
func runListen(ctx context.Context, e *env, args []string) int {
	c := newCommand("listen", "-s NAME [--json] [--count N]", listenAbout)
	s := c.specFlag("lockspace: NAME (or NAME:HOST_ID:PATH:OFFSET)")
	asJSON := c.fs.Bool("json", false, "print each record as one JSON line")
	count := c.fs.Int("count", 0, "exit after N messages (default: until interrupted or the lockspace goes away)")
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
	reg, err := callback.Register(ctx, callback.ResolveRunDir(*runDir, e.getenv), name)
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
		switch rec.Type {
		case callback.RecordMessage:
			got++
		case callback.RecordEnd:
			return exitOK
		}
	}
	return exitOK
}

func printRecord(e *env, r callback.Record) {
	switch r.Type {
	case callback.RecordMessage:
		src := "seq " + fmt.Sprint(r.Seq)
		if r.Native {
			src = "sanlock event"
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
