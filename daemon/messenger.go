package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/msgloop"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// messenger is the message side of one lockspace: it adapts a
// hostmsg.Machine to the lockspace loop (delta.Messenger), hands deliveries
// to the registered listeners, results to waiting senders, and turns an
// accepted WD_RESET into a watchdog reset.
//
// The loop calls the delta.Messenger methods from its goroutine; op
// handlers call Send and register from theirs: mu serialises both, and is
// never held across I/O or a blocking channel operation.
type messenger struct {
	d    *Daemon
	name string
	io   time.Duration
	log  *slog.Logger

	mu       sync.Mutex
	m        *hostmsg.Machine // nil until Joined
	wake     func()           // Lockspace.Wake, once joined
	regs     map[*registration]struct{}
	waiters  map[uint64]chan hostmsg.Result
	fireSoon func() // set once a reset is accepted, until called
	stopped  bool
	outcomes map[string]int64 // finished sends per target outcome (MessageStatus.TargetOutcomes)
}

var _ delta.Messenger = (*messenger)(nil)

// newMessenger returns the Messenger that rides on lockspace name's loop.
func (d *Daemon) newMessenger(name string, io time.Duration) *messenger {
	return &messenger{d: d, name: name, io: io, log: d.log.With("lockspace", name),
		regs: make(map[*registration]struct{}), waiters: make(map[uint64]chan hostmsg.Result)}
}

// Joined creates the protocol machine for our new identity.
func (ms *messenger) Joined(hostID, generation uint64, geo leader.Geometry) {
	t := delta.NewTimeouts(ms.io, ms.d.cfg.WatchdogTimeout)
	_, none := ms.d.wdev.(watchdog.None)
	m, err := hostmsg.New(msgloop.Config(hostmsg.Config{
		// A send to a live target ends by host_dead at the latest.
		SendTimeout: t.HostDead() + t.RenewalInterval(),
		CanReset:    !none,
	}, hostID, generation, geo))
	if err != nil {
		// Only a delta bug can get here (bad host id or generation).
		panic(fmt.Sprintf("daemon: %s: %v", ms.name, err))
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.m = m
	m.SetListeners(len(ms.regs))
}

// Observe feeds a read to the machine and dispatches what it produced.
func (ms *messenger) Observe(now time.Time, v *delta.View) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return
	}
	msgloop.Observe(ms.m, now, v)
	ms.dispatchLocked(now, ms.m.Ready())
}

// Doorbell feeds a poll of our doorbell to the machine.
func (ms *messenger) Doorbell(now time.Time, every time.Duration, db *leader.Doorbell, err error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m != nil {
		msgloop.Doorbell(ms.m, now, every, db, err)
	}
}

// Plan returns the reads and rings the machine wants.
func (ms *messenger) Plan(now time.Time) delta.Plan {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return delta.Plan{}
	}
	return msgloop.Plan(ms.m.Plan(now))
}

// Rang reports rings to the machine.
func (ms *messenger) Rang(now time.Time, targets []uint64, err error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m != nil {
		ms.m.Rang(now, targets, err)
	}
}

// Payload returns the machine's payload for our next write.
func (ms *messenger) Payload(now time.Time) (delta.Payload, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return delta.Payload{Ext: &leader.Extension{Version: leader.ExtVersion}}, false
	}
	p, urgent := ms.m.Payload(now)
	return msgloop.Payload(p), urgent
}

// Written reports a write; once the "resetting" ack is on disk the
// watchdog gets its shortest timeout.
func (ms *messenger) Written(now time.Time, err error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return
	}
	ms.m.Written(now, err)
	if ms.fireSoon != nil && ms.m.ResetWritten() {
		ms.log.Error("WD_RESET: the resetting ack is on disk; watchdog timeout set to its minimum")
		ms.fireSoon()
		ms.fireSoon = nil
	}
}

// Tick runs the machine's timeouts when a read failed.
func (ms *messenger) Tick(now time.Time) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return
	}
	ms.m.Tick(now)
	ms.dispatchLocked(now, ms.m.Ready())
}

// setLockspace gives the messenger the loop to wake on sends.
func (ms *messenger) setLockspace(ls *delta.Lockspace) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.wake = ls.Wake
}

// dispatchLocked hands deliveries to listeners, results to waiters, and
// starts a reset. Callers hold mu.
func (ms *messenger) dispatchLocked(now time.Time, rd hostmsg.Ready) {
	for _, dl := range rd.Deliveries {
		rec := messageRecord(ms.name, dl)
		for r := range ms.regs {
			r.enqueue(rec)
		}
	}
	for _, res := range rd.Results {
		ms.countOutcomesLocked(res)
		if ch, ok := ms.waiters[res.Seq]; ok {
			ch <- res // buffered: never blocks
			delete(ms.waiters, res.Seq)
		}
		lvl := slog.LevelInfo
		if res.Err() != nil {
			lvl = slog.LevelWarn
		}
		ms.log.Log(context.Background(), lvl, "send finished", "seq", res.Seq, "code", fmt.Sprintf("%#x", res.Code), "result", res.String())
	}
	if rd.Reset != nil {
		ms.resetLocked(*rd.Reset)
	}
}

// countOutcomesLocked counts how res ended for each target. Callers hold
// mu.
func (ms *messenger) countOutcomesLocked(res hostmsg.Result) {
	if ms.outcomes == nil {
		ms.outcomes = make(map[string]int64)
	}
	for _, t := range res.Targets {
		key := t.Outcome.String()
		if t.Outcome == hostmsg.OutcomeAcked {
			key += "/" + t.Status.String()
		}
		ms.outcomes[key]++
	}
}

// resetLocked acts on an accepted WD_RESET: persist the marker (a restarted
// daemon must not feed again), stop feeding now, and shorten the watchdog
// timeout once the ack is on disk, or after 2·io_timeout if it cannot be
// written. Lockspaces keep renewing until the reset.
func (ms *messenger) resetLocked(r hostmsg.Reset) {
	reason := fmt.Sprintf("%s in lockspace %s", r, ms.name)
	ms.log.Error("WD_RESET ACCEPTED: this host stops feeding its watchdog and resets", "reason", reason,
		"watchdog", ms.d.wdev.String())
	if err := watchdog.WriteMarker(ms.d.cfg.RunDir, reason); err != nil {
		ms.log.Error("cannot write the reset marker; a restarted daemon could feed the watchdog again", "err", err)
	}
	fire := ms.d.keeper.ResetNow(reason)
	ms.fireSoon = fire
	ms.d.clk.AfterFunc(2*ms.io, fire) // fireSoon is idempotent
}

// send queues a message; with wait it returns a channel for the result.
func (ms *messenger) send(now time.Time, msg hostmsg.Message, wait bool) (uint64, <-chan hostmsg.Result, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil || ms.stopped {
		return 0, nil, fmt.Errorf("%w: lockspace %s is not joined yet", callback.ErrNotJoined, ms.name)
	}
	seq, err := ms.m.Send(now, msg)
	if err != nil {
		return 0, nil, err
	}
	var ch chan hostmsg.Result
	if wait {
		ch = make(chan hostmsg.Result, 1)
		ms.waiters[seq] = ch
	}
	if ms.wake != nil {
		ms.wake()
	}
	ms.dispatchLocked(now, ms.m.Ready())
	return seq, ch, nil
}

// addReg and removeReg track listeners; the machine acks "no-listener"
// while there are none.
func (ms *messenger) addReg(r *registration) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.stopped {
		return fmt.Errorf("%w: lockspace %s is being removed", callback.ErrNotJoined, ms.name)
	}
	ms.regs[r] = struct{}{}
	if ms.m != nil {
		ms.m.SetListeners(len(ms.regs))
	}
	return nil
}

func (ms *messenger) removeReg(r *registration) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.regs, r)
	if ms.m != nil {
		ms.m.SetListeners(len(ms.regs))
	}
}

// stop ends the messenger when its lockspace is gone: pending sends end
// "cancelled" and every registration gets an end record and is closed.
func (ms *messenger) stop(reason string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.stopped {
		return
	}
	ms.stopped = true
	if ms.m != nil {
		ms.dispatchLocked(ms.d.clk.Now(), hostmsg.Ready{Results: ms.m.Stop(ms.d.clk.Now())})
	}
	for r := range ms.regs {
		r.end(reason)
	}
	ms.regs = map[*registration]struct{}{}
}

// status describes the message side for the status op.
func (ms *messenger) status() *callback.MessageStatus {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	st := &callback.MessageStatus{Listeners: len(ms.regs)}
	if ms.m != nil {
		s := ms.m.Stats()
		st.Pending, st.Resetting = ms.m.Pending(), ms.m.Resetting()
		st.Sent, st.SendOK, st.SendFailed = s.Sent, s.SendOK, s.SendFailed
		st.Delivered, st.NoListener, st.NativeDelivered = s.Delivered, s.NoListener, s.NativeDelivered
		st.Duplicates, st.WrongGeneration = s.Duplicates, s.WrongGeneration
		st.BadExt, st.BadSector = s.BadExt, s.BadSector
		st.AckEvictions, st.AckDeferred = s.AckEvictions, s.AckDeferred
	}
	for r := range ms.regs {
		st.Overflows += r.overflows()
	}
	if len(ms.outcomes) > 0 {
		st.TargetOutcomes = make(map[string]int64, len(ms.outcomes))
		for k, v := range ms.outcomes {
			st.TargetOutcomes[k] = v
		}
	}
	return st
}

// ringStats returns the machine's doorbell counters.
func (ms *messenger) ringStats() hostmsg.RingStats {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return hostmsg.RingStats{}
	}
	return ms.m.RingStats()
}

// lockspaceGone is called once a lockspace is forgotten, after its loop
// has stopped.
func (d *Daemon) lockspaceGone(m *member, reason string) {
	if m.msg != nil {
		m.msg.stop(reason)
	}
}
