package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

const resetAbout = `
Fences a host through its watchdog, over the storage alone, and says
whether it worked. It does what sanlk-reset does, with a clear result:

  1. sends WD_RESET (code reset) to HOST_ID, naming its current generation
     (or -g), so a host that already restarted is not reset again;
  2. waits for the target to accept it: a sanlock-msg target acks
     "resetting" and replies RESETTING; a plain sanlock host running
     sanlk-resetd replies RESETTING as an event;
  3. watches the target until its renewals stop and it is DEAD by sanlock's
     rules (no renewal for 8*io_timeout + W), or until it rejoins with a
     new generation (it was reset and came back).

Each step is printed with its time since the start, with the computed
deadlines. Exit status 0 means the target is fenced (DEAD or restarted). If
the target keeps renewing after its watchdog must have fired (W plus two
renewal intervals after it accepted the reset), the fence FAILED: the
command says so loudly and exits 1; do not assume the host is gone. A
target that cannot be fenced (no watchdog, refused, not live, no answer)
also exits 1.

Storage-based fencing needs the target to still reach the storage; it
complements power fencing, it does not replace it. Needs root.

While it waits (for the acceptance, for the renewals to stop, for DEAD),
it says what for on stderr: a progress line with a countdown on a
terminal, else one line when each wait of more than 2 seconds starts.`

// resetStep is one line of reset's report.
type resetStep struct {
	At   float64 `json:"at_sec"` // since the start
	What string  `json:"what"`
}

// resetReport is reset --json's output.
type resetReport struct {
	Lockspace  string      `json:"lockspace"`
	HostID     uint64      `json:"host_id"`
	Generation uint64      `json:"generation"`
	Seq        uint64      `json:"seq"`
	Fenced     bool        `json:"fenced"`
	Outcome    string      `json:"outcome"` // dead, restarted, watchdog-failed, refused, no-answer, timeout
	Steps      []resetStep `json:"steps"`
}

// runReset implements `sanlock-msg reset`.
func runReset(ctx context.Context, e *env, args []string) int {
	c := newCommand("reset", "-s NAME -i HOST_ID [-g GENERATION] [--timeout D] [--json]", resetAbout)
	s := c.specFlag("lockspace: NAME (or NAME:HOST_ID:PATH:OFFSET)")
	id := c.fs.Uint64P("host-id", "i", 0, "the host to reset")
	gen := c.fs.Uint64P("generation", "g", 0, "its generation (default: the one this daemon sees now)")
	timeout := c.fs.Duration("timeout", 0, "give up after this long (default: enough for the target to be DEAD: host_dead + W + margin)")
	asJSON := c.fs.Bool("json", false, "print the report as JSON")
	runDir := c.runDirFlag()
	if done, st := c.parse(e, args); done {
		return st
	}
	name, ok := c.lockspaceName(e, *s)
	if !ok {
		return exitUsage
	}
	if *id == 0 || *id > leader.MaxHostID {
		return c.usageError(e, fmt.Sprintf("-i HOST_ID is required (1..%d)", leader.MaxHostID))
	}
	r := &resetter{e: e, name: name, target: *id, gen: *gen, runDir: callback.ResolveRunDir(*runDir, e.getenv),
		start: time.Now(), quiet: *asJSON}
	r.rep = resetReport{Lockspace: name, HostID: *id, Steps: []resetStep{}}
	r.ww = watchWait(ctx, e, "reset", r.wait.poll)
	err := r.run(ctx, *timeout)
	r.ww.stop()
	r.rep.Fenced = err == nil
	if *asJSON {
		if st := jsonOut(e, "reset", r.rep); st != exitOK {
			return st
		}
	}
	if err != nil {
		return fail(e, "reset", err)
	}
	return exitOK
}

// resetter runs the fencing handshake.
type resetter struct {
	e      *env
	name   string
	target uint64
	gen    uint64
	runDir string
	start  time.Time
	quiet  bool
	rep    resetReport
	wait   waitState    // what the current step waits for
	ww     *waitWatcher // shows it
}

func (r *resetter) step(format string, args ...any) {
	at := time.Since(r.start).Seconds()
	what := fmt.Sprintf(format, args...)
	r.rep.Steps = append(r.rep.Steps, resetStep{At: at, What: what})
	if !r.quiet {
		r.ww.above(func() { fmt.Fprintf(r.e.stdout, "%8.3fs  %s\n", at, what) })
	}
}

// host returns the target's status.
func (r *resetter) host(ctx context.Context, cl *callback.Client) (callback.HostStatus, error) {
	hosts, err := cl.HostStatus(ctx, r.name)
	if err != nil {
		return callback.HostStatus{}, err
	}
	for _, h := range hosts {
		if h.HostID == r.target {
			return h, nil
		}
	}
	return callback.HostStatus{HostID: r.target, State: delta.StateFree.String()}, nil
}

func (r *resetter) run(ctx context.Context, timeout time.Duration) error {
	cl, err := callback.Dial(ctx, r.runDir)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	var ls *callback.LockspaceStatus
	for i := range st.Lockspaces {
		if st.Lockspaces[i].Name == r.name {
			ls = &st.Lockspaces[i]
		}
	}
	if ls == nil {
		return fmt.Errorf("%w: lockspace %q is not joined by this daemon", callback.ErrNotJoined, r.name)
	}
	if ls.HostID == r.target {
		return fmt.Errorf("host %d is this host", r.target)
	}
	w := time.Duration(st.Watchdog.TimeoutSec * float64(time.Second))
	if w <= 0 {
		w = delta.DefaultWatchdogTimeout
	}
	h, err := r.host(ctx, cl)
	if err != nil {
		return err
	}
	if h.State != delta.StateLive.String() && h.State != delta.StateUnknown.String() {
		r.rep.Outcome = "not-live"
		return fmt.Errorf("host %d is %s, not live: nothing to reset", r.target, h.State)
	}
	gen := r.gen
	if gen == 0 {
		gen = h.Generation
	}
	r.rep.Generation = gen
	t := delta.NewTimeouts(time.Duration(max(h.IOTimeout, 1))*time.Second, w)
	if timeout == 0 {
		timeout = 2*t.RenewalInterval() + w + t.HostDead() + 10*time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r.step("resetting host %d (%s, generation %d, io_timeout %ds) in lockspace %s; watchdog timeout W=%v",
		r.target, h.HostName, gen, h.IOTimeout, r.name, w)

	// Listen before sending, to catch a RESETTING reply sent as an event.
	reg, err := callback.Register(ctx, r.runDir, r.name)
	if err != nil {
		return err
	}
	defer reg.Close()
	replies := make(chan callback.Record, 16)
	go func() {
		for {
			rec, err := reg.Next(ctx)
			if err != nil {
				close(replies)
				return
			}
			if rec.Type == callback.RecordMessage && rec.FromHostID == r.target && rec.Code&leader.EventResetting != 0 {
				replies <- rec
			}
		}
	}()
	sc, err := callback.Dial(ctx, r.runDir)
	if err != nil {
		return err
	}
	defer sc.Close()
	type sent struct {
		reply *callback.SendReply
		err   error
	}
	done := make(chan sent, 1)
	go func() {
		rep, err := sc.Send(ctx, callback.SendRequest{Lockspace: r.name, Targets: []uint64{r.target}, Generation: gen,
			Code: leader.EventReset, Wait: true, Timeout: t.RenewalInterval()*2 + w})
		done <- sent{rep, err}
	}()
	r.step("sent WD_RESET (code reset, target generation %d)", gen)
	r.wait.set(fmt.Sprintf("waiting for host %d to accept the reset (ack resetting, or a RESETTING reply)", r.target),
		time.Now().Add(t.RenewalInterval()*2+w))

	// Step 2: the target accepts.
	var accepted time.Time
	for accepted.IsZero() {
		select {
		case s := <-done:
			if s.err != nil {
				r.rep.Outcome = "refused"
				return s.err
			}
			r.rep.Seq = s.reply.Seq
			done = nil
			tg := s.reply.Targets[0]
			switch {
			case tg.Outcome == "acked" && tg.Status == "resetting":
				accepted = tg.At
				r.step("host %d acked seq %d: resetting (its watchdog fires within about a second)", r.target, s.reply.Seq)
			case tg.Outcome == "delivered-unacknowledged":
				r.step("host %d (plain sanlock) got seq %d as an event; waiting for its RESETTING reply", r.target, s.reply.Seq)
			case tg.Outcome == "acked":
				r.rep.Outcome = "refused"
				return fmt.Errorf("host %d did not accept the reset: %s", r.target, tg.Status)
			case tg.Outcome == "target-restarted":
				r.rep.Outcome = "restarted"
				r.step("host %d restarted before it read the reset: it is no longer generation %d", r.target, gen)
				return nil
			default:
				r.rep.Outcome = "no-answer"
				return fmt.Errorf("host %d did not accept the reset: %s", r.target, tg.Outcome)
			}
		case rec, ok := <-replies:
			if !ok {
				replies = nil
				continue
			}
			accepted = rec.Time
			r.step("RESETTING reply from host %d generation %d", rec.FromHostID, rec.FromGeneration)
		case <-ctx.Done():
			r.rep.Outcome = "no-answer"
			return fmt.Errorf("host %d did not accept the reset within %v", r.target, timeout)
		}
	}
	firedBy := accepted.Add(w)
	failAfter := accepted.Add(w + 2*t.RenewalInterval())
	r.step("its watchdog must fire by +%.1fs (accept + W); the fence fails if it still renews after +%.1fs",
		firedBy.Sub(r.start).Seconds(), failAfter.Sub(r.start).Seconds())
	r.wait.set(fmt.Sprintf("waiting for host %d's renewals to stop (its watchdog fires by accept + W)", r.target), failAfter)

	// Step 3: watch its renewals stop, until DEAD.
	lastTS, lastChange := h.Timestamp, time.Now()
	reported := false
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.rep.Outcome = "timeout"
			return fmt.Errorf("host %d is not DEAD after %v (state %s)", r.target, timeout, h.State)
		case <-tick.C:
		}
		if h, err = r.host(ctx, cl); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return err
		}
		now := time.Now()
		if h.Generation != gen && h.Generation != 0 {
			r.rep.Outcome = "restarted"
			r.step("host %d rejoined with generation %d: it was reset", r.target, h.Generation)
			return nil
		}
		if h.Timestamp != lastTS {
			lastTS, lastChange = h.Timestamp, now
			if now.After(failAfter) {
				r.rep.Outcome = "watchdog-failed"
				r.step("FENCE FAILED: host %d still renews %.1fs after it accepted the reset", r.target, now.Sub(accepted).Seconds())
				return errors.New("FENCE FAILED: the target's watchdog did not fire; it is still renewing its lease. Do not assume it is dead")
			}
			continue
		}
		if !reported && now.Sub(lastChange) > 2*t.RenewalInterval() {
			reported = true
			r.step("renewals stopped: last renewal seen at +%.1fs (timestamp %d); DEAD expected at %s",
				lastChange.Sub(r.start).Seconds(), lastTS, deadAt(h, r.start))
			r.wait.set(fmt.Sprintf("renewals stopped; waiting for host %d to be DEAD (8*io_timeout + W after its last renewal)", r.target), h.DeadAt)
		}
		switch h.State {
		case delta.StateDead.String():
			r.rep.Outcome = "dead"
			r.step("host %d is DEAD: fenced", r.target)
			return nil
		case delta.StateFree.String():
			r.rep.Outcome = "dead"
			r.step("host %d released its host id (FREE): it left before the reset", r.target)
			return nil
		}
	}
}

func deadAt(h callback.HostStatus, start time.Time) string {
	if h.DeadAt.IsZero() {
		return "?"
	}
	return fmt.Sprintf("+%.1fs", h.DeadAt.Sub(start).Seconds())
}
