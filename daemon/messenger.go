package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/msgloop"
	"github.com/sanlock-msg/sanlock-msg/state"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// messenger is the message side of one lockspace: it adapts a
// hostmsg.Machine to the lockspace loop (delta.Messenger), hands deliveries
// to the registered listeners, results to waiting senders, keeps the
// durable outbox and receive marks, and turns an accepted WD_RESET into a
// watchdog reset.
//
// The loop calls the delta.Messenger methods from its goroutine; op
// handlers call send, register and ack from theirs: mu serialises them,
// and is never held across a blocking operation (journal appends are
// queued, marks are plain writes to a local file).
type messenger struct {
	d      *Daemon
	name   string
	hostID uint64
	io     time.Duration
	log    *slog.Logger
	// outbox and marks are the durable state (nil without a state dir).
	outbox *state.Outbox
	marks  *state.Marks
	// stateDir is their directory; stateErr says why they could not be
	// reopened after the area was re-initialised (sends are then refused).
	stateDir string
	stateErr error

	mu       sync.Mutex
	m        *hostmsg.Machine // nil until Joined
	wake     func()           // Lockspace.Wake, once joined
	prev     []leader.Ack     // the ack table our previous incarnation left (Inherit)
	regs     map[*registration]struct{}
	waiters  map[hostmsg.MsgID]chan callback.SendReply
	inflight map[hostmsg.MsgID]*inflight
	// expiredDown are the journaled messages whose deadline passed while
	// the daemon was down, until their result is recorded.
	expiredDown map[string]bool
	fireSoon    func() // set once a reset is accepted, until called
	stopped     bool
	outcomes    map[string]int64 // finished sends per target outcome (MessageStatus.TargetOutcomes)
}

// inflight is a delivery that waits for its ack: by a manual-ack
// listener's application, or, when only auto-ack listeners took it, for
// one of them to have it written to its connection.
type inflight struct {
	holders map[*registration]struct{} // the listeners whose ack counts
	manual  bool                       // the holders ack by hand
}

var (
	_ delta.Messenger = (*messenger)(nil)
	_ delta.Inheritor = (*messenger)(nil)
)

// newMessenger returns the Messenger that rides on lockspace name's loop.
func (d *Daemon) newMessenger(name string, hostID uint64, io time.Duration) *messenger {
	return &messenger{d: d, name: name, hostID: hostID, io: io, log: d.log.With("lockspace", name),
		regs: make(map[*registration]struct{}), waiters: make(map[hostmsg.MsgID]chan callback.SendReply),
		inflight: make(map[hostmsg.MsgID]*inflight), expiredDown: make(map[string]bool)}
}

// openState opens the lockspace's durable outbox and receive marks.
func (ms *messenger) openState(st *state.Store) error {
	return ms.openStateDir(st.Dir(ms.name, ms.hostID))
}

// openStateDir opens the durable outbox and receive marks in dir.
func (ms *messenger) openStateDir(dir string) error {
	o, err := state.OpenOutbox(dir, 0, ms.log)
	if err != nil {
		return err
	}
	mk, err := state.OpenMarks(dir)
	if err != nil {
		o.Close()
		return err
	}
	ms.outbox, ms.marks, ms.stateDir = o, mk, dir
	return nil
}

// checkAreaLocked retires the durable state of an area that was
// re-initialised since our last join (state.Reinitialised): its unfinished
// messages end failed, and the outbox and marks start empty, so that no
// old message id or receive mark is taken for a new one. It then records
// our generation. Callers hold mu.
func (ms *messenger) checkAreaLocked(now time.Time, generation uint64) {
	if ms.stateDir == "" {
		return
	}
	if reinit, old := state.Reinitialised(ms.stateDir, generation); reinit {
		ms.log.Warn("the lockspace area was re-initialised since our last join: the durable outbox and receive marks of the old area are retired",
			"generation", generation, "recorded", old)
		for _, f := range ms.outbox.Unfinished() {
			ms.failJournaled(now, f, "restarted", fmt.Sprintf("not sent again: the lockspace area was re-initialised (our generation %d, %d before)", generation, old))
		}
		ms.closeState()
		moved, err := state.Retire(ms.stateDir, now.UTC().Format("20060102T150405Z"))
		if err == nil {
			err = ms.openStateDir(ms.stateDir)
		}
		if err != nil {
			// Without a journal sends are refused rather than lost.
			ms.log.Error("cannot start a new durable outbox; sends are refused", "err", err)
			ms.outbox, ms.marks, ms.stateErr = nil, nil, err
			return
		}
		ms.log.Info("old durable state kept for reading", "files", moved)
	}
	if err := state.RecordGeneration(ms.stateDir, generation); err != nil {
		ms.log.Error("cannot record our generation in the state directory", "err", err)
	}
}

// closeState closes the durable state once the lockspace is gone.
func (ms *messenger) closeState() {
	if ms.outbox != nil {
		ms.outbox.Close()
	}
	if ms.marks != nil {
		ms.marks.Close()
	}
}

// Inherit keeps the ack table our previous incarnation left in our
// sector; the acquire wrote it back, and Joined seeds the machine with it.
func (ms *messenger) Inherit(prev leader.Sector) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if prev.Ext != nil {
		ms.prev = prev.Ext.Acks
	}
}

// Joined creates the protocol machine for our new identity and queues the
// durable outbox's unfinished messages again, ahead of any new send.
func (ms *messenger) Joined(hostID, generation uint64, geo leader.Geometry) {
	t := delta.NewTimeouts(ms.io, ms.d.cfg.WatchdogTimeout)
	_, none := ms.d.wdev.(watchdog.None)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.checkAreaLocked(ms.d.clk.Now(), generation)
	cfg := hostmsg.Config{
		// A send to a live target ends by host_dead at the latest.
		SendTimeout:   t.HostDead() + t.RenewalInterval(),
		CanReset:      !none,
		ListenerGrace: ms.d.cfg.ListenerGrace,
		Inherited:     ms.prev,
	}
	if ms.marks != nil {
		cfg.Remembered, cfg.Handed = ms.marks.Forgotten(), ms.marks.Handed()
	}
	m, err := hostmsg.New(msgloop.Config(cfg, hostID, generation, geo))
	if err != nil {
		// Only a delta bug can get here (bad host id or generation).
		panic(fmt.Sprintf("daemon: %s: %v", ms.name, err))
	}
	ms.m = m
	m.SetListeners(len(ms.regs))
	if len(ms.prev) > 0 {
		ms.log.Info("carried our previous incarnation's acks over", "entries", len(ms.prev))
	}
	ms.resendLocked(ms.d.clk.Now(), generation)
}

// resendLocked queues the outbox's unfinished messages under their
// original identity. A message whose deadline passed while we were down
// is settled from the acks on disk (acked if a target took it before we
// died, else "timeout"); one from a generation not below ours (the area was
// re-initialised, or the host id was taken over and given back) cannot be
// told apart from new messages by receivers and ends failed.
func (ms *messenger) resendLocked(now time.Time, generation uint64) {
	if ms.outbox == nil {
		return
	}
	var rs []hostmsg.Resent
	var ids []string
	for _, f := range ms.outbox.Unfinished() {
		msg := f.Message
		waiting := f.Waiting()
		switch {
		case msg.Origin >= generation:
			ms.failJournaled(now, f, "restarted", fmt.Sprintf("not sent again: our generation %d is not above its origin %d (the lockspace area was re-initialised?)", generation, msg.Origin))
			continue
		case len(waiting) == 0:
			ms.finishJournaled(now, f)
			continue
		}
		// One whose deadline passed while we were down is not sent again:
		// the first read tells whether a target took it before we died.
		expired := !now.Before(msg.Deadline)
		if expired {
			ms.expiredDown[msg.ID] = true
		}
		rs = append(rs, hostmsg.Resent{
			Message: hostmsg.Message{Targets: waiting, TargetGeneration: msg.Generation, Code: msg.Code, Data: msg.Data, HasData: true},
			Origin:  msg.Origin, Seq: msg.Seq, QueuedAt: msg.QueuedAt, Deadline: msg.Deadline, Expired: expired,
		})
		ids = append(ids, msg.ID)
	}
	if len(rs) == 0 {
		return
	}
	if err := ms.m.Resend(now, rs); err != nil {
		ms.log.Error("cannot resend the durable outbox", "err", err)
		for _, f := range ms.outbox.Unfinished() {
			ms.failJournaled(now, f, "cancelled", "cannot be resent: "+err.Error())
		}
		return
	}
	ms.log.Info("resending the durable outbox under the messages' original ids", "messages", len(rs), "first", ids[0], "last", ids[len(ids)-1])
}

// failJournaled ends a journaled message that cannot be sent again: every
// target still waiting gets outcome, and the result says why.
func (ms *messenger) failJournaled(now time.Time, f state.Fate, outcome, why string) {
	for _, h := range f.Waiting() {
		ts := callback.TargetStatus{HostID: h, Outcome: outcome, At: now}
		ms.outbox.Target(f.Message.ID, ts)
		f.Targets = append(f.Targets, ts)
	}
	ms.log.Warn("durable message ended without being sent again", "id", f.Message.ID, "why", why)
	ms.finishJournaled(now, f, why)
}

// finishJournaled records the result of a journaled message from the
// target outcomes it has.
func (ms *messenger) finishJournaled(now time.Time, f state.Fate, why ...string) {
	r := callback.SendReply{ID: f.Message.ID, Seq: f.Message.Seq, Origin: f.Message.Origin, Done: true,
		Targets: f.Targets, QueuedAt: f.Message.QueuedAt, DoneAt: now}
	summarize(&r, why...)
	ms.outbox.Done(f.Message.ID, r)
}

// summarize sets r.OK and r.Error from r.Targets.
func summarize(r *callback.SendReply, why ...string) {
	r.OK, r.Error = true, ""
	var bad []string
	for _, t := range r.Targets {
		if !t.OK {
			s := fmt.Sprintf("host %d: %s", t.HostID, t.Outcome)
			if t.Status != "" {
				s = fmt.Sprintf("host %d: %s (%s)", t.HostID, t.Outcome, t.Status)
			}
			if t.HeldBack && t.Outcome == hostmsg.OutcomeTimeout.String() {
				s += " (it held the message back: its listeners had no room, or none was registered yet)"
			}
			bad = append(bad, s)
		}
	}
	if len(bad) > 0 {
		r.OK = false
		r.Error = fmt.Sprintf("message %s: %s", r.ID, strings.Join(bad, "; "))
		for _, w := range why {
			r.Error += ": " + w
		}
	}
}

// Observe feeds a read to the machine and dispatches what it produced.
func (ms *messenger) Observe(now time.Time, v *delta.View) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return
	}
	ms.m.SetRoom(ms.roomLocked())
	msgloop.Observe(ms.m, now, v)
	ms.dispatchLocked(now, ms.m.Ready())
}

// roomLocked is the most any listener's queue can take now.
func (ms *messenger) roomLocked() int {
	room := 0
	for r := range ms.regs {
		room = max(room, r.room())
	}
	return room
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
	ms.m.SetRoom(ms.roomLocked())
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

func (ms *messenger) wakeLocked() {
	if ms.wake != nil {
		ms.wake()
	}
}

// overflowLogEvery rate-limits the overflow log line of a listener.
const overflowLogEvery = 10 * time.Second

// dispatchLocked notes receive marks, hands deliveries to listeners,
// records outcomes and results in the outbox and gives them to waiters,
// and starts a reset. Callers hold mu.
func (ms *messenger) dispatchLocked(now time.Time, rd hostmsg.Ready) {
	if ms.marks != nil && (len(rd.Deliveries) > 0 || len(rd.Forgotten) > 0) {
		var handed []hostmsg.MsgID
		for _, dl := range rd.Deliveries {
			if !dl.Native {
				handed = append(handed, dl.ID())
			}
		}
		// Before the records go out: a crash after this flags the
		// redelivery its ack (not on disk yet) will cause.
		if err := ms.marks.Record(handed, rd.Forgotten); err != nil {
			ms.log.Error("cannot write receive marks; a redelivery after a crash would not be flagged", "err", err)
		}
	}
	for _, dl := range rd.Deliveries {
		ms.deliverLocked(now, dl)
	}
	for _, td := range rd.TargetsDone {
		if ms.outbox != nil {
			id := hostmsg.MsgID{Host: ms.hostID, Origin: td.Origin, Seq: td.Seq}
			ms.outbox.Target(id.String(), targetStatus(td.Target))
		}
	}
	for _, res := range rd.Results {
		ms.finishLocked(res)
	}
	if rd.Reset != nil {
		ms.resetLocked(*rd.Reset)
	}
}

// deliverLocked hands one delivery to every listener with room, and
// waits for its ack, or gives it back. The ack is a manual-ack
// listener's, if one took it; else it is written once an auto-ack
// listener's connection has the record: a record still queued in the
// daemon would be lost with it, while one the kernel holds is read by the
// client even after a crash.
func (ms *messenger) deliverLocked(now time.Time, dl hostmsg.Delivery) {
	rec := messageRecord(ms.name, dl)
	manual, auto := map[*registration]struct{}{}, map[*registration]struct{}{}
	for r := range ms.regs {
		rr := rec
		rr.AckNeeded = dl.AwaitsAck && r.manual
		if !r.enqueue(rr) {
			if r.shouldLog(now, overflowLogEvery) {
				ms.log.Warn("listener queue full: it misses messages that other listeners get (an overflow record tells it)",
					"listener", r.by, "missed_total", r.overflows())
			}
			continue
		}
		if r.manual {
			manual[r] = struct{}{}
		} else {
			auto[r] = struct{}{}
		}
	}
	if !dl.AwaitsAck {
		return
	}
	id := dl.ID()
	switch {
	case len(manual) > 0:
		ms.inflight[id] = &inflight{holders: manual, manual: true}
	case len(auto) > 0:
		ms.inflight[id] = &inflight{holders: auto}
	default:
		// No listener took it after all: leave it to its sender's disk.
		if err := ms.m.Return(now, id); err != nil {
			ms.log.Error("cannot give a delivery back", "id", id, "err", err)
		}
	}
}

func (ms *messenger) ackLocked(now time.Time, id hostmsg.MsgID) {
	if err := ms.m.Ack(now, id, leader.StatusDelivered); err != nil {
		ms.log.Error("cannot ack a delivery", "id", id, "err", err)
	}
}

// written acks the deliveries that auto-ack registration r has written
// to its connection and that wait for no manual ack.
func (ms *messenger) written(r *registration, ids []string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		return
	}
	acked := false
	for _, s := range ids {
		id, err := hostmsg.ParseMsgID(s)
		if err != nil {
			continue
		}
		if inf := ms.inflight[id]; inf != nil && !inf.manual {
			if _, ok := inf.holders[r]; ok {
				delete(ms.inflight, id)
				ms.ackLocked(ms.d.clk.Now(), id)
				acked = true
			}
		}
	}
	if acked {
		ms.wakeLocked()
	}
}

// appAck is a manual ack of record id by registration r.
func (ms *messenger) appAck(r *registration, s string) {
	id, err := hostmsg.ParseMsgID(s)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	inf := ms.inflight[id]
	if err != nil || inf == nil || !inf.manual || ms.m == nil {
		ms.log.Debug("ack of a message not waiting for one", "id", s, "listener", r.by)
		return
	}
	if _, ok := inf.holders[r]; !ok {
		ms.log.Debug("ack from a listener that does not hold the message", "id", s, "listener", r.by)
		return
	}
	delete(ms.inflight, id)
	ms.ackLocked(ms.d.clk.Now(), id)
	ms.wakeLocked()
}

// targetStatus is a target's outcome on the wire.
func targetStatus(t hostmsg.TargetResult) callback.TargetStatus {
	ts := callback.TargetStatus{HostID: t.HostID, Generation: t.Generation, Outcome: t.Outcome.String(), OK: t.OK(), At: t.At,
		HeldBack: t.HeldBack}
	if t.Outcome == hostmsg.OutcomeAcked {
		ts.Status = t.Status.String()
	}
	return ts
}

// finishLocked records a finished send and wakes its waiter.
func (ms *messenger) finishLocked(res hostmsg.Result) {
	id := hostmsg.MsgID{Host: ms.hostID, Origin: res.Origin, Seq: res.Seq}
	ms.countOutcomesLocked(res)
	reply := ms.reply(id, res)
	if ch, ok := ms.waiters[id]; ok {
		ch <- reply // buffered: never blocks
		delete(ms.waiters, id)
	}
	if ms.outbox != nil {
		ms.outbox.Done(id.String(), reply)
	}
	lvl := slog.LevelInfo
	if !reply.OK {
		lvl = slog.LevelWarn
	}
	ms.log.Log(context.Background(), lvl, "send finished", "id", id.String(), "code", fmt.Sprintf("%#x", res.Code), "result", res.String())
}

// reply builds the result of message id: res's targets and, for a
// message resent after a restart, those its journal recorded before.
// Callers hold mu.
func (ms *messenger) reply(id hostmsg.MsgID, res hostmsg.Result) callback.SendReply {
	r := callback.SendReply{ID: id.String(), Seq: res.Seq, Origin: res.Origin, Done: true,
		QueuedAt: res.QueuedAt, SentAt: res.SentAt, DoneAt: res.DoneAt}
	for _, t := range res.Targets {
		r.Targets = append(r.Targets, targetStatus(t))
	}
	if ms.outbox != nil {
		if f, ok := ms.outbox.Lookup(id.String()); ok {
			for _, t := range f.Targets {
				if !hasTarget(r.Targets, t.HostID) {
					r.Targets = append(r.Targets, t)
				}
			}
			sort.Slice(r.Targets, func(i, j int) bool { return r.Targets[i].HostID < r.Targets[j].HostID })
		}
	}
	var why []string
	if ms.expiredDown[r.ID] {
		delete(ms.expiredDown, r.ID)
		why = append(why, "its deadline passed while the daemon was down")
	}
	summarize(&r, why...)
	return r
}

func hasTarget(ts []callback.TargetStatus, host uint64) bool {
	for _, t := range ts {
		if t.HostID == host {
			return true
		}
	}
	return false
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
	if err := watchdog.WriteMarkerBoot(ms.d.cfg.RunDir, reason, ms.d.bootID); err != nil {
		ms.log.Error("cannot write the reset marker; a restarted daemon could feed the watchdog again", "err", err)
	}
	ms.d.setResetPending(reason)
	fire := ms.d.keeper.ResetNow(reason)
	ms.fireSoon = fire
	ms.d.clk.AfterFunc(2*ms.io, fire) // fireSoon is idempotent
}

// sendTicket is a send that was queued: its id, and its result channel
// if the caller waits.
type sendTicket struct {
	id     hostmsg.MsgID
	result <-chan callback.SendReply
}

// errJournal wraps a failed outbox append.
var errJournal = errors.New("daemon: cannot record the message in the durable outbox")

// send queues a message. With a durable outbox it returns only once the
// message is fsync'd there (it stays off disk until then).
func (ms *messenger) send(now time.Time, msg hostmsg.Message, wait bool) (sendTicket, error) {
	ms.mu.Lock()
	if ms.m == nil || ms.stopped {
		ms.mu.Unlock()
		return sendTicket{}, fmt.Errorf("%w: lockspace %s is not joined yet", callback.ErrNotJoined, ms.name)
	}
	if ms.stateErr != nil {
		ms.mu.Unlock()
		return sendTicket{}, fmt.Errorf("%w: %v", errJournal, ms.stateErr)
	}
	msg.Hold = ms.outbox != nil
	seq, err := ms.m.Send(now, msg)
	if err != nil {
		ms.mu.Unlock()
		return sendTicket{}, err
	}
	cfg := ms.m.Config()
	tk := sendTicket{id: hostmsg.MsgID{Host: ms.hostID, Origin: cfg.Generation, Seq: seq}}
	if wait {
		ch := make(chan callback.SendReply, 1)
		ms.waiters[tk.id] = ch
		tk.result = ch
	}
	if ms.outbox == nil {
		ms.wakeLocked()
		ms.dispatchLocked(now, ms.m.Ready())
		ms.mu.Unlock()
		return tk, nil
	}
	timeout := msg.Timeout
	if timeout <= 0 {
		timeout = cfg.SendTimeout
	}
	data := msg.Data
	if !msg.HasData {
		data = seq
	}
	gen := msg.TargetGeneration
	durable := ms.outbox.Accept(state.Message{ID: tk.id.String(), Origin: tk.id.Origin, Seq: seq, Targets: msg.Targets,
		Generation: gen, Code: msg.Code, Data: data, QueuedAt: now, Deadline: now.Add(timeout)})
	m := ms.m
	ms.mu.Unlock()

	err = <-durable
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if err != nil {
		m.Abandon(now, seq)
		delete(ms.waiters, tk.id)
		ms.outbox.Done(tk.id.String(), callback.SendReply{ID: tk.id.String(), Seq: seq, Origin: tk.id.Origin, Done: true,
			Error: "not sent: the journal write failed"})
		return sendTicket{}, fmt.Errorf("%w: %v", errJournal, err)
	}
	// A reset or the lockspace's removal may have ended it meanwhile: its
	// result is then already out.
	if m.Commit(ms.d.clk.Now(), seq) == nil {
		ms.wakeLocked()
	}
	ms.dispatchLocked(ms.d.clk.Now(), m.Ready())
	return tk, nil
}

// lookup returns what the outbox knows of message id.
func (ms *messenger) lookup(id string) (state.Fate, bool) {
	if ms.outbox == nil {
		return state.Fate{}, false
	}
	return ms.outbox.Lookup(id)
}

// addReg and removeReg track listeners; the machine acks "no-listener"
// while there are none (after its grace).
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
	ms.wakeLocked() // held-back messages may now be taken
	return nil
}

// removeReg forgets a listener; the deliveries only it held unacked are
// given back, to be delivered again (flagged) to the next listener.
func (ms *messenger) removeReg(r *registration) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.regs, r)
	if ms.m == nil {
		return
	}
	ms.m.SetListeners(len(ms.regs))
	now := ms.d.clk.Now()
	for id, inf := range ms.inflight {
		if _, ok := inf.holders[r]; !ok {
			continue
		}
		delete(inf.holders, r)
		if len(inf.holders) == 0 {
			delete(ms.inflight, id)
			if err := ms.m.Return(now, id); err != nil {
				ms.log.Error("cannot give a delivery back", "id", id, "err", err)
			}
		}
	}
	ms.wakeLocked()
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
		now := ms.d.clk.Now()
		rd := ms.m.Ready()
		rd.Results = append(rd.Results, ms.m.Stop(now)...)
		ms.dispatchLocked(now, rd)
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
	st := &callback.MessageStatus{Listeners: len(ms.regs), Durable: ms.outbox != nil}
	if ms.m != nil {
		s := ms.m.Stats()
		st.Pending, st.Resetting = ms.m.Pending(), ms.m.Resetting()
		st.Sent, st.SendOK, st.SendFailed = s.Sent, s.SendOK, s.SendFailed
		st.Delivered, st.NoListener, st.NativeDelivered = s.Delivered, s.NoListener, s.NativeDelivered
		st.Duplicates, st.WrongGeneration = s.Duplicates, s.WrongGeneration
		st.BadExt, st.BadSector = s.BadExt, s.BadSector
		st.AckEvictions, st.AckDeferred = s.AckEvictions, s.AckDeferred
		st.HeldBack, st.Returned, st.Redelivered, st.Inherited = s.HeldBack, s.Returned, s.Redelivered, s.Inherited
	}
	st.Unacked = len(ms.inflight)
	for r := range ms.regs {
		n := r.overflows()
		st.Overflows += n
		rs := callback.RegistrationStatus{By: r.by, ManualAck: r.manual, Since: r.since, Queued: r.queued(), Overflows: n}
		for _, inf := range ms.inflight {
			if _, ok := inf.holders[r]; ok {
				rs.Unacked++
			}
		}
		st.Registrations = append(st.Registrations, rs)
	}
	sort.Slice(st.Registrations, func(i, j int) bool { return st.Registrations[i].Since.Before(st.Registrations[j].Since) })
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
		m.msg.closeState()
	}
}
