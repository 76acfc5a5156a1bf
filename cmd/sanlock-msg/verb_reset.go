package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

const resetAbout = `
Fences hosts through their watchdog, over the storage alone, and says
whether it worked. It does what sanlk-reset does, with a clear result:

  1. sends WD_RESET (code reset): to one host naming its current generation
     (or -g), so a host that already restarted is not reset again; to
     several hosts (-i 2,3,5) as one message for any generation (a target
     that reset and rejoined does not act on it again: its acks survive
     its restart);
  2. waits for each target to accept it: a sanlock-msg target acks
     "resetting" and replies RESETTING; a plain sanlock host running
     sanlk-resetd replies RESETTING as an event;
  3. watches each target until its renewals stop and it is DEAD by
     sanlock's rules (no renewal for 8*io_timeout + W), or until it rejoins
     with a new generation (it was reset and came back).

Each step is printed with its time since the start, with the computed
deadlines, and a result line per host at the end. Exit status 0 means every
target is fenced (DEAD or restarted). If a target keeps renewing after its
watchdog must have fired (W plus two renewal intervals after it accepted
the reset), its fence FAILED: the command says so loudly and exits 1; do
not assume the host is gone. A target that cannot be fenced (no watchdog,
refused, not live, no answer) also makes it exit 1.

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

// resetHost is one target's result in reset's report.
type resetHost struct {
	HostID     uint64 `json:"host_id"`
	Generation uint64 `json:"generation"`
	Fenced     bool   `json:"fenced"`
	Outcome    string `json:"outcome"` // dead, restarted, watchdog-failed, refused, no-answer, timeout, not-live
	Error      string `json:"error,omitempty"`
}

// resetReport is reset --json's output. HostID, Generation and Outcome
// repeat the only target's when there is one.
type resetReport struct {
	Lockspace  string      `json:"lockspace"`
	HostID     uint64      `json:"host_id,omitempty"`
	Generation uint64      `json:"generation,omitempty"`
	Seq        uint64      `json:"seq"`
	ID         string      `json:"id,omitempty"`
	Fenced     bool        `json:"fenced"` // every target
	Outcome    string      `json:"outcome,omitempty"`
	Hosts      []resetHost `json:"hosts"`
	Steps      []resetStep `json:"steps"`
}

// runReset implements `sanlock-msg reset`.
func runReset(ctx context.Context, e *env, args []string) int {
	c := newCommand("reset", "-s NAME -i HOST_ID[,HOST_ID...] [-g GENERATION] [--timeout D] [--json]", resetAbout)
	s := c.specFlag("lockspace: NAME (or NAME:HOST_ID:PATH:OFFSET)")
	ids := c.fs.StringP("host-id", "i", "", "the host(s) to reset, comma-separated")
	gen := c.fs.Uint64P("generation", "g", 0, "its generation (default: the one this daemon sees now; one host only)")
	timeout := c.fs.Duration("timeout", 0, "give up after this long (default: enough for the targets to be DEAD: host_dead + W + margin)")
	asJSON := c.fs.Bool("json", false, "print the report as JSON")
	runDir := c.runDirFlag()
	if done, st := c.parse(e, args); done {
		return st
	}
	name, ok := c.lockspaceName(e, *s)
	if !ok {
		return exitUsage
	}
	if *timeout < 0 {
		return c.usageError(e, "--timeout must not be negative")
	}
	targets, err := parseHostIDs(*ids)
	if err != nil {
		return c.usageError(e, err.Error())
	}
	if *gen != 0 && len(targets) > 1 {
		return c.usageError(e, "-g names one host's generation: give one -i")
	}
	r := &resetter{e: e, name: name, gen: *gen, runDir: callback.ResolveRunDir(*runDir, e.getenv),
		start: time.Now(), quiet: *asJSON}
	for _, id := range targets {
		r.targets = append(r.targets, &resetTarget{resetHost: resetHost{HostID: id}})
	}
	r.rep = resetReport{Lockspace: name, Steps: []resetStep{}}
	r.ww = watchWait(ctx, e, "reset", r.wait.poll)
	err = r.run(ctx, *timeout)
	r.ww.stop()
	var ue usageErr
	if errors.As(err, &ue) {
		return c.usageError(e, ue.msg)
	}
	r.report(err)
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

// usageErr is a usage error that reset finds only once it asked the
// daemon (a host id past the lockspace's max_hosts): nothing was done.
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

// resetter runs the fencing handshake.
type resetter struct {
	e       *env
	name    string
	gen     uint64
	runDir  string
	start   time.Time
	quiet   bool
	targets []*resetTarget
	rep     resetReport
	wait    waitState    // what the current step waits for
	ww      *waitWatcher // shows it
	// acceptBy is when the targets must have accepted the reset.
	acceptBy time.Time
}

// resetTarget is one host being fenced.
type resetTarget struct {
	resetHost
	h         callback.HostStatus
	t         delta.Timeouts
	done      bool
	accepted  time.Time
	failAfter time.Time
	lastTS    uint64
	lastSeen  time.Time
	reported  bool
}

// end settles t's outcome; err is nil for a fenced target.
func (t *resetTarget) end(outcome string, err error) {
	t.done, t.Outcome, t.Fenced = true, outcome, err == nil
	if err != nil {
		t.Error = err.Error()
	}
}

func (r *resetter) step(format string, args ...any) {
	at := time.Since(r.start).Seconds()
	what := fmt.Sprintf(format, args...)
	r.rep.Steps = append(r.rep.Steps, resetStep{At: at, What: what})
	if !r.quiet {
		r.ww.above(func() { fmt.Fprintf(r.e.stdout, "%8.3fs  %s\n", at, what) })
	}
}

// updateWait tells the wait watcher what the targets not done wait for:
// their acceptance, their renewals to stop, or DEAD, until the latest
// deadline among them.
func (r *resetter) updateWait() {
	var accept, stop, dead []uint64
	var stopBy, deadBy time.Time
	for _, t := range r.targets {
		switch {
		case t.done:
		case t.accepted.IsZero():
			accept = append(accept, t.HostID)
		case !t.reported:
			stop = append(stop, t.HostID)
			if t.failAfter.After(stopBy) {
				stopBy = t.failAfter
			}
		default:
			dead = append(dead, t.HostID)
			if t.h.DeadAt.After(deadBy) {
				deadBy = t.h.DeadAt
			}
		}
	}
	switch {
	case len(accept) > 0:
		r.wait.set(fmt.Sprintf("waiting for %s to accept the reset (ack resetting, or a RESETTING reply)", hostList(accept)), r.acceptBy)
	case len(stop) > 0:
		r.wait.set(fmt.Sprintf("waiting for the renewals of %s to stop (its watchdog fires by accept + W)", hostList(stop)), stopBy)
	case len(dead) > 0:
		r.wait.set(fmt.Sprintf("renewals stopped; waiting for %s to be DEAD (8*io_timeout + W after its last renewal)", hostList(dead)), deadBy)
	}
}

// report fills the report's per-host results and, unless quiet, prints a
// line per host. err is run's error.
func (r *resetter) report(err error) {
	r.rep.Hosts = []resetHost{}
	r.rep.Fenced = err == nil
	for _, t := range r.targets {
		if !t.done {
			t.end("timeout", fmt.Errorf("host %d: no result", t.HostID))
			if err != nil {
				t.Error = err.Error()
			}
		}
		r.rep.Hosts = append(r.rep.Hosts, t.resetHost)
		r.rep.Fenced = r.rep.Fenced && t.Fenced
		if !r.quiet && len(r.targets) > 1 {
			res := "FENCED"
			if !t.Fenced {
				res = "NOT FENCED: " + t.Error
			}
			fmt.Fprintf(r.e.stdout, "host %d generation %d: %s (%s)\n", t.HostID, t.Generation, t.Outcome, res)
		}
	}
	if len(r.targets) == 1 {
		t := r.targets[0]
		r.rep.HostID, r.rep.Generation, r.rep.Outcome = t.HostID, t.Generation, t.Outcome
	}
}

// hosts returns the lockspace's hosts by id.
func (r *resetter) hosts(ctx context.Context, cl *callback.Client) (map[uint64]callback.HostStatus, error) {
	hs, err := cl.HostStatus(ctx, r.name)
	if err != nil {
		return nil, err
	}
	m := make(map[uint64]callback.HostStatus, len(hs))
	for _, h := range hs {
		m[h.HostID] = h
	}
	return m, nil
}

// hostOf returns host id's status (FREE if never seen).
func hostOf(m map[uint64]callback.HostStatus, id uint64) callback.HostStatus {
	if h, ok := m[id]; ok {
		return h
	}
	return callback.HostStatus{HostID: id, State: delta.StateFree.String()}
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
	for _, t := range r.targets {
		if t.HostID > uint64(ls.MaxHosts) {
			return usageErr{hostIDRange("-i", t.HostID, ls.MaxHosts, r.name)}
		}
		if t.HostID == ls.HostID {
			return usageErr{fmt.Sprintf("-i: host %d is this host", t.HostID)}
		}
	}
	w := time.Duration(st.Watchdog.TimeoutSec * float64(time.Second))
	if w <= 0 {
		w = delta.DefaultWatchdogTimeout
	}
	hosts, err := r.hosts(ctx, cl)
	if err != nil {
		return err
	}
	var live []uint64
	var longest, sendTimeout time.Duration
	for _, t := range r.targets {
		t.h = hostOf(hosts, t.HostID)
		if t.h.State != delta.StateLive.String() && t.h.State != delta.StateUnknown.String() {
			t.end("not-live", fmt.Errorf("host %d is %s, not live: nothing to reset", t.HostID, t.h.State))
			continue
		}
		t.Generation = t.h.Generation
		if r.gen != 0 {
			t.Generation = r.gen
		}
		t.lastTS, t.lastSeen = t.h.Timestamp, time.Now()
		t.t = delta.NewTimeouts(time.Duration(max(t.h.IOTimeout, 1))*time.Second, w)
		longest = max(longest, 2*t.t.RenewalInterval()+w+t.t.HostDead()+10*time.Second)
		sendTimeout = max(sendTimeout, 2*t.t.RenewalInterval()+w)
		live = append(live, t.HostID)
	}
	if len(live) == 0 {
		return r.failed()
	}
	if timeout == 0 {
		timeout = longest
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, t := range r.targets {
		if !t.done {
			r.step("resetting host %d (%s, generation %d, io_timeout %ds) in lockspace %s; watchdog timeout W=%v",
				t.HostID, t.h.HostName, t.Generation, t.h.IOTimeout, r.name, w)
		}
	}

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
			if rec.Type == callback.RecordMessage && rec.Code&leader.EventResetting != 0 {
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
	accepted := make(chan callback.SendReply, 1)
	go func() {
		req := callback.SendRequest{Lockspace: r.name, Targets: live, Code: leader.EventReset, Wait: true,
			Timeout: sendTimeout, OnAccept: func(a callback.SendReply) { accepted <- a }}
		if len(live) == 1 {
			req.Generation = r.targetOf(live[0]).Generation
		}
		rep, err := sc.Send(ctx, req)
		done <- sent{rep, err}
	}()

	// Step 2: the targets accept.
	r.acceptBy = time.Now().Add(sendTimeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !r.allDone() {
		r.updateWait()
		select {
		case a := <-accepted:
			r.rep.Seq, r.rep.ID = a.Seq, a.ID
			if len(live) == 1 {
				r.step("sent WD_RESET (code reset, target generation %d, id %s)", r.targetOf(live[0]).Generation, a.ID)
			} else {
				r.step("sent WD_RESET (code reset, to hosts %v, any generation, id %s)", live, a.ID)
			}
		case s := <-done:
			done = nil
			if s.err != nil {
				for _, t := range r.targets {
					if !t.done && t.accepted.IsZero() {
						t.end("refused", s.err)
					}
				}
				if r.rep.Seq == 0 {
					return s.err
				}
				continue
			}
			r.rep.Seq, r.rep.ID = s.reply.Seq, s.reply.ID
			for _, tg := range s.reply.Targets {
				r.sendOutcome(r.targetOf(tg.HostID), s.reply.Seq, tg)
			}
		case rec, ok := <-replies:
			if !ok {
				replies = nil
				continue
			}
			if t := r.targetOf(rec.FromHostID); t != nil && !t.done && t.accepted.IsZero() {
				r.step("RESETTING reply from host %d generation %d", rec.FromHostID, rec.FromGeneration)
				r.accept(t, rec.Time, w)
			}
		case <-tick.C:
			if err := r.watch(ctx, cl); err != nil && ctx.Err() == nil {
				return err
			}
		case <-ctx.Done():
			for _, t := range r.targets {
				switch {
				case t.done:
				case t.accepted.IsZero():
					t.end("no-answer", fmt.Errorf("host %d did not accept the reset within %v", t.HostID, timeout))
				default:
					t.end("timeout", fmt.Errorf("host %d is not DEAD after %v (state %s)", t.HostID, timeout, t.h.State))
				}
			}
		}
	}
	return r.failed()
}

// failed returns nil if every target is fenced, else an error naming the
// ones that are not (FENCE FAILED first: it must not be missed).
func (r *resetter) failed() error {
	var bad []string
	var fenceFailed []uint64
	for _, t := range r.targets {
		if t.Fenced {
			continue
		}
		if t.Outcome == "watchdog-failed" {
			fenceFailed = append(fenceFailed, t.HostID)
			continue
		}
		bad = append(bad, t.Error)
	}
	if len(fenceFailed) > 0 {
		msg := "FENCE FAILED: the target's watchdog did not fire; it is still renewing its lease. Do not assume it is dead"
		if len(r.targets) > 1 {
			msg = fmt.Sprintf("FENCE FAILED for host(s) %v: their watchdog did not fire; they still renew their lease. Do not assume they are dead", fenceFailed)
		}
		return errors.New(strings.Join(append([]string{msg}, bad...), "; "))
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

func (r *resetter) allDone() bool {
	for _, t := range r.targets {
		if !t.done {
			return false
		}
	}
	return true
}

func (r *resetter) targetOf(id uint64) *resetTarget {
	for _, t := range r.targets {
		if t.HostID == id {
			return t
		}
	}
	return nil
}

// sendOutcome applies one target's outcome of the WD_RESET send.
func (r *resetter) sendOutcome(t *resetTarget, seq uint64, tg callback.TargetStatus) {
	if t == nil || t.done {
		return
	}
	w := t.t.Watchdog
	switch {
	case tg.Outcome == "acked" && tg.Status == "resetting":
		if t.accepted.IsZero() {
			r.step("host %d acked seq %d: resetting (its watchdog fires within about a second)", t.HostID, seq)
			r.accept(t, tg.At, w)
		}
	case tg.Outcome == "delivered-unacknowledged":
		if t.accepted.IsZero() {
			r.step("host %d (plain sanlock) got seq %d as an event; waiting for its RESETTING reply", t.HostID, seq)
		}
	case tg.Outcome == "acked":
		t.end("refused", fmt.Errorf("host %d did not accept the reset: %s", t.HostID, tg.Status))
	case tg.Outcome == "target-restarted":
		r.step("host %d restarted before it read the reset: it is no longer generation %d", t.HostID, t.Generation)
		t.end("restarted", nil)
	default:
		if t.accepted.IsZero() {
			t.end("no-answer", fmt.Errorf("host %d did not accept the reset: %s", t.HostID, tg.Outcome))
		}
	}
}

// accept starts watching t: it accepted the reset at time at.
func (r *resetter) accept(t *resetTarget, at time.Time, w time.Duration) {
	t.accepted = at
	t.failAfter = at.Add(w + 2*t.t.RenewalInterval())
	r.step("host %d: its watchdog must fire by +%.1fs (accept + W); the fence fails if it still renews after +%.1fs",
		t.HostID, at.Add(w).Sub(r.start).Seconds(), t.failAfter.Sub(r.start).Seconds())
}

// watch follows the accepted targets' renewals until they are DEAD.
func (r *resetter) watch(ctx context.Context, cl *callback.Client) error {
	hosts, err := r.hosts(ctx, cl)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, t := range r.targets {
		if t.done {
			continue
		}
		h := hostOf(hosts, t.HostID)
		t.h = h
		if h.Generation != t.Generation && h.Generation != 0 {
			r.step("host %d rejoined with generation %d: it was reset", t.HostID, h.Generation)
			t.end("restarted", nil)
			continue
		}
		if t.accepted.IsZero() {
			continue
		}
		if h.Timestamp != t.lastTS {
			t.lastTS, t.lastSeen = h.Timestamp, now
			if now.After(t.failAfter) {
				r.step("FENCE FAILED: host %d still renews %.1fs after it accepted the reset", t.HostID, now.Sub(t.accepted).Seconds())
				t.end("watchdog-failed", fmt.Errorf("FENCE FAILED: host %d's watchdog did not fire", t.HostID))
			}
			continue
		}
		if !t.reported && now.Sub(t.lastSeen) > 2*t.t.RenewalInterval() {
			t.reported = true
			r.step("host %d: renewals stopped: last renewal seen at +%.1fs (timestamp %d); DEAD expected at %s",
				t.HostID, t.lastSeen.Sub(r.start).Seconds(), t.lastTS, deadAt(h, r.start))
		}
		switch h.State {
		case delta.StateDead.String():
			r.step("host %d is DEAD: fenced", t.HostID)
			t.end("dead", nil)
		case delta.StateFree.String():
			r.step("host %d released its host id (FREE): it left before the reset", t.HostID)
			t.end("dead", nil)
		}
	}
	return nil
}

func deadAt(h callback.HostStatus, start time.Time) string {
	if h.DeadAt.IsZero() {
		return "?"
	}
	return fmt.Sprintf("+%.1fs", h.DeadAt.Sub(start).Seconds())
}
