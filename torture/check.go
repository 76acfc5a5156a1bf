package torture

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// Rules a history can break (Violation.Rule).
const (
	// RuleLost: an accepted message reached no listener of a target,
	// and its result does not say it failed for that target.
	RuleLost = "lost"
	// RuleNotEnded: an accepted message has no final result, or one
	// still pending.
	RuleNotEnded = "not-ended"
	// RuleNoReason: a target failed and the result gives no reason.
	RuleNoReason = "failed-without-reason"
	// RuleFailed: with Options.NoFailures, a target failed at all (but
	// see Report.Processed).
	RuleFailed = "failed"
	// RuleDuplicate: a listener slot printed an id again outside the
	// crash window: not flagged redelivered, or with no kill of the
	// receiver (its daemon, or a manual-ack listener: up to
	// listenerGoneSlack before) after the first delivery was read and
	// before the sender saw the receiver's ack.
	RuleDuplicate = "duplicate"
	// RuleOrder: a listener printed a sender's messages (one sender
	// host and origin) out of seq order.
	RuleOrder = "order"
	// RulePhantom: a listener printed a message no sender accepted.
	RulePhantom = "phantom"
	// RuleMisrouted: a listener printed a message not sent to its host.
	RuleMisrouted = "misrouted"
	// RuleCorrupt: a record's sender, seq, origin or data differ from
	// the message accepted under its id, or an id was accepted twice.
	RuleCorrupt = "corrupt"
	// RuleOverflow: a listener was told that it missed messages.
	RuleOverflow = "overflow"
	// RuleHung: a send command never exited.
	RuleHung = "send-hung"
	// RuleMismatch: the result a send --wait printed differs from the
	// final result of that id.
	RuleMismatch = "result-mismatch"
)

// Options are what a history's setup lets the checker assume.
type Options struct {
	// NoFailures: every target was live and had a listener, or a
	// restarting daemon with the listener grace, throughout; a send that
	// did not reach a target is a violation even with a reason.
	NoFailures bool
}

// Violation is one broken promise.
type Violation struct {
	Rule   string
	ID     string // the message, if the rule is about one
	Host   uint64 // the receiver, if the rule is about one
	Detail string
}

func (v Violation) String() string {
	s := v.Rule
	if v.ID != "" {
		s += " " + v.ID
	}
	if v.Host != 0 {
		s += fmt.Sprintf(" at host %d", v.Host)
	}
	return s + ": " + v.Detail
}

// Report is what Check found.
type Report struct {
	// Kills counts SIGKILLs by what was killed.
	Kills map[string]int
	// Joins counts daemon joins, restarts included.
	Joins int
	// Attempts counts send commands run; Messages, the messages
	// accepted (ids printed by send or found in the senders' journals);
	// Targets, their (message, target) pairs.
	Attempts, Messages, Targets int
	// Deliveries counts message records printed by listeners;
	// Redeliveries, those that printed an id the same listener slot had
	// printed before, within the crash window; Flagged, records flagged
	// redelivered (a first print in a slot can be flagged: the previous
	// hand-out never reached the listener's output).
	Deliveries, Redeliveries, Flagged int
	// Failed counts (message, target) pairs that ended failed, by
	// outcome ("acked/no-listener", "timeout", ...).
	Failed map[string]int
	// Processed counts (message, target) pairs that ended
	// processed-status-unknown after a crash of the sender's daemon, and
	// reached the target: the sender's journal lost the outcome (the
	// manual's DELIVERY section), not the message.
	Processed int
	// Lost and Duplicates count the violations of those rules.
	Lost, Duplicates int
	// Violations lists every broken promise.
	Violations []Violation
}

// OK reports whether no promise was broken.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

// Summary is one line of counts.
func (r *Report) Summary() string {
	var kills []string
	for _, w := range []string{KillDaemon, KillListener, KillSender} {
		kills = append(kills, fmt.Sprintf("%s %d", w, r.Kills[w]))
	}
	var failed []string
	for k, n := range r.Failed {
		failed = append(failed, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(failed)
	return fmt.Sprintf("kills (%s), joins %d, sends %d, messages %d (%d targets), deliveries %d, redeliveries in the window %d (flagged records %d), processed-status-unknown after a sender crash %d, failed targets [%s], lost %d, duplicates %d, violations %d",
		strings.Join(kills, ", "), r.Joins, r.Attempts, r.Messages, r.Targets, r.Deliveries, r.Redeliveries, r.Flagged,
		r.Processed, strings.Join(failed, ", "), r.Lost, r.Duplicates, len(r.Violations))
}

func (r *Report) violate(rule, id string, host uint64, format string, args ...any) {
	r.Violations = append(r.Violations, Violation{Rule: rule, ID: id, Host: host, Detail: fmt.Sprintf(format, args...)})
	switch rule {
	case RuleLost:
		r.Lost++
	case RuleDuplicate:
		r.Duplicates++
	}
}

// message is what the history says of one accepted message.
type message struct {
	id       string
	host     uint64 // its sender
	targets  []uint64
	data     uint64
	known    bool                // an accept or a journal told its targets and data
	accepted time.Time           // when send printed its id (zero: found in a journal)
	final    *Event              // its final state
	results  []*Event            // the results send --wait printed
	got      map[uint64][]*Event // its records, by receiving host
}

// outcomeProcessed is the outcome of a target that had acked a later
// message of the same origin: it processed this one, how is not known.
const outcomeProcessed = "processed-status-unknown"

// senderCrashed reports whether the sender's daemon was killed after m was
// accepted (before its final state was asked).
func senderCrashed(m *message, kills []*Event) bool {
	for _, k := range kills {
		if k.What == KillDaemon && k.T.After(m.accepted) && (m.final == nil || k.T.Before(m.final.T)) {
			return true
		}
	}
	return false
}

// ackAt returns when the sender saw host's ack, if its final result says
// host acked.
func (m *message) ackAt(host uint64) (time.Time, bool) {
	if m.final == nil || m.final.Result == nil {
		return time.Time{}, false
	}
	for _, t := range m.final.Result.Targets {
		if t.HostID == host && t.Outcome == "acked" {
			return t.At, true
		}
	}
	return time.Time{}, false
}

// Check reads a history (from Read: every client's log merged by time)
// and returns what it found; Report.OK says whether every promise held.
func Check(events []Event, opt Options) *Report {
	r := &Report{Kills: map[string]int{}, Failed: map[string]int{}}
	msgs := map[string]*message{}
	get := func(id string) *message {
		m := msgs[id]
		if m == nil {
			m = &message{id: id, got: map[uint64][]*Event{}}
			msgs[id] = m
		}
		return m
	}
	learn := func(e *Event, m *message) {
		if m.known {
			if e.Host != m.host || e.Data != m.data || !slices.Equal(sorted(e.Targets), m.targets) {
				r.violate(RuleCorrupt, m.id, 0, "accepted as from host %d to %v with data %#x, and also as from host %d to %v with data %#x",
					m.host, m.targets, m.data, e.Host, e.Targets, e.Data)
			}
			return
		}
		m.known, m.host, m.targets, m.data = true, e.Host, sorted(e.Targets), e.Data
		if e.Kind == KindAccept {
			m.accepted = e.T
		}
	}
	type attemptKey struct {
		client string
		op     int
	}
	attempts := map[attemptKey]*Event{}
	ended := map[attemptKey]bool{}
	kills := map[uint64][]*Event{}
	var records []*Event
	for i := range events {
		e := &events[i]
		switch e.Kind {
		case KindJoin:
			r.Joins++
		case KindKill:
			r.Kills[e.What]++
			kills[e.Host] = append(kills[e.Host], e)
		case KindAttempt:
			r.Attempts++
			attempts[attemptKey{e.Client, e.Op}] = e
		case KindEnd:
			ended[attemptKey{e.Client, e.Op}] = true
		case KindAccept:
			learn(e, get(e.ID))
		case KindResult:
			if e.Result != nil {
				m := get(e.ID)
				m.results = append(m.results, e)
			}
		case KindFinal:
			m := get(e.ID)
			if m.final != nil {
				r.violate(RuleCorrupt, e.ID, 0, "two final states in the history")
			}
			m.final = e
			if len(e.Targets) > 0 {
				learn(e, m)
			}
		case KindRecord:
			if e.Rec != nil {
				records = append(records, e)
			}
		}
	}
	for k, e := range attempts {
		if !ended[k] {
			r.violate(RuleHung, "", 0, "%s attempt %d (send from host %d to %v, wait %v, data %#x) never exited",
				k.client, k.op, e.Host, e.Targets, e.Wait, e.Data)
		}
	}
	r.checkRecords(records, msgs, kills)
	ids := make([]string, 0, len(msgs))
	for id := range msgs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r.checkMessage(msgs[id], opt, kills[msgs[id].host])
	}
	sort.SliceStable(r.Violations, func(i, j int) bool { return r.Violations[i].Rule < r.Violations[j].Rule })
	return r
}

// checkMessage checks that one accepted message ended, and reached each
// target or failed for it with a reason. senderKills are the kills at its
// sender's host.
func (r *Report) checkMessage(m *message, opt Options, senderKills []*Event) {
	if !m.known {
		return // records of an id no one accepted: checkRecords said so
	}
	r.Messages++
	r.Targets += len(m.targets)
	var res *callback.SendReply
	switch {
	case m.final == nil:
		r.violate(RuleNotEnded, m.id, 0, "no final state in the history")
	case m.final.Result == nil:
		r.violate(RuleNotEnded, m.id, 0, "the sender's daemon does not know it: %s", m.final.Err)
	case !m.final.Result.Done:
		r.violate(RuleNotEnded, m.id, 0, "still %q at the end: %+v", m.final.Result.State, m.final.Result.Targets)
	default:
		res = m.final.Result
	}
	for _, h := range m.targets {
		var ts *callback.TargetStatus
		if res != nil {
			for i := range res.Targets {
				if res.Targets[i].HostID == h {
					ts = &res.Targets[i]
				}
			}
			if ts == nil {
				r.violate(RuleNotEnded, m.id, h, "the result has no outcome for this target: %+v", res.Targets)
			}
		}
		got := len(m.got[h]) > 0
		switch {
		case ts != nil && ts.Outcome == outcomeProcessed && got && senderCrashed(m, senderKills):
			// The documented window: the sender's daemon died after
			// the target acked but before its journal recorded the
			// outcome; the resent message finds a later ack there.
			r.Processed++
		case ts != nil && !ts.OK:
			key := ts.Outcome
			if ts.Status != "" {
				key += "/" + ts.Status
			}
			r.Failed[key]++
			if res.Error == "" {
				r.violate(RuleNoReason, m.id, h, "ended %s and the result says no why", key)
			}
			if opt.NoFailures {
				r.violate(RuleFailed, m.id, h, "ended %s (%s), delivered %v", key, res.Error, got)
			}
		case !got && ts != nil:
			r.violate(RuleLost, m.id, h, "ended %s %s (generation %d, seen by the sender at %s) but no listener there printed it",
				ts.Outcome, ts.Status, ts.Generation, stamp(ts.At))
		case !got:
			r.violate(RuleLost, m.id, h, "never printed by a listener there, and no result says it failed")
		}
	}
	if res == nil {
		return
	}
	for _, e := range m.results {
		if d := diffResults(e.Result, res); d != "" {
			r.violate(RuleMismatch, m.id, 0, "%s attempt %d printed %s", e.Client, e.Op, d)
		}
	}
}

// diffResults says how a result a client printed differs from the final
// one, or "".
func diffResults(printed, final *callback.SendReply) string {
	if !printed.Done {
		return fmt.Sprintf("a result that is not done: %+v", printed)
	}
	if printed.OK != final.OK || len(printed.Targets) != len(final.Targets) {
		return fmt.Sprintf("ok %v with %d targets, the final result ok %v with %d", printed.OK, len(printed.Targets), final.OK, len(final.Targets))
	}
	for i, p := range printed.Targets {
		f := final.Targets[i]
		if p.HostID != f.HostID || p.Outcome != f.Outcome || p.Status != f.Status || p.Generation != f.Generation {
			return fmt.Sprintf("host %d %s %s (generation %d), the final result host %d %s %s (generation %d)",
				p.HostID, p.Outcome, p.Status, p.Generation, f.HostID, f.Outcome, f.Status, f.Generation)
		}
	}
	return ""
}

// stream is one (listener slot, sender host, origin) sequence.
type stream struct {
	slot   string
	from   uint64
	origin uint64
}

// checkRecords checks what the listeners printed: only accepted messages,
// to their targets, as accepted; an id again in a slot only within the
// crash window; each sender's messages in seq order.
func (r *Report) checkRecords(records []*Event, msgs map[string]*message, kills map[uint64][]*Event) {
	type last struct {
		op  int    // the listener process
		seq uint64 // the last seq it printed
	}
	printed := map[string]map[string]*Event{} // slot -> id -> its last record
	inProc := map[stream]last{}               // the last record of a stream in one listener process
	firsts := map[stream]uint64{}             // the last seq printed for the first time in a slot
	for _, e := range records {
		rec := e.Rec
		switch rec.Type {
		case callback.RecordOverflow:
			r.violate(RuleOverflow, "", e.Host, "listener %s process %d was told it missed %d messages", e.Client, e.Op, rec.Dropped)
			continue
		case callback.RecordMessage:
		default:
			continue
		}
		r.Deliveries++
		if rec.Redelivered {
			r.Flagged++
		}
		m := msgs[rec.ID]
		switch {
		case m == nil || !m.known:
			r.violate(RulePhantom, rec.ID, e.Host, "listener %s printed %+v, which no sender accepted", e.Client, *rec)
		case !slices.Contains(m.targets, e.Host):
			r.violate(RuleMisrouted, rec.ID, e.Host, "listener %s printed it; its targets are %v", e.Client, m.targets)
		case rec.FromHostID != m.host || rec.Data != m.data || rec.ID != fmt.Sprintf("%d:%d:%d", rec.FromHostID, rec.Origin, rec.Seq):
			r.violate(RuleCorrupt, rec.ID, e.Host, "listener %s printed from host %d origin %d seq %d data %#x; accepted from host %d with data %#x",
				e.Client, rec.FromHostID, rec.Origin, rec.Seq, rec.Data, m.host, m.data)
		}
		if m != nil {
			m.got[e.Host] = append(m.got[e.Host], e)
		}
		if printed[e.Client] == nil {
			printed[e.Client] = map[string]*Event{}
		}
		prev := printed[e.Client][rec.ID]
		printed[e.Client][rec.ID] = e
		if prev != nil {
			r.checkRepeat(prev, e, m, kills[e.Host])
		}
		s := stream{e.Client, rec.FromHostID, rec.Origin}
		// A repeat (checked above) may print the last seq again, as when
		// another listener's kill gave the message back; never an older one.
		if l, ok := inProc[s]; ok && l.op == e.Op && (rec.Seq < l.seq || rec.Seq == l.seq && prev == nil) {
			r.violate(RuleOrder, rec.ID, e.Host, "listener %s process %d printed seq %d after seq %d of host %d origin %d",
				e.Client, e.Op, rec.Seq, l.seq, rec.FromHostID, rec.Origin)
		}
		if l, ok := inProc[s]; !ok || l.op != e.Op || rec.Seq > l.seq {
			inProc[s] = last{e.Op, rec.Seq}
		}
		if prev == nil {
			if l, ok := firsts[s]; ok && rec.Seq <= l {
				r.violate(RuleOrder, rec.ID, e.Host, "listener slot %s printed seq %d for the first time after seq %d of host %d origin %d",
					e.Client, rec.Seq, l, rec.FromHostID, rec.Origin)
			}
			firsts[s] = rec.Seq
		}
	}
}

// listenerGoneSlack is how long before the daemon's first read of a
// message a manual-ack listener's kill still counts as after it (the
// daemon had not seen its connection close yet).
const listenerGoneSlack = time.Second

// checkRepeat checks a listener slot's second print of an id (cur after
// prev): it must be flagged redelivered and follow a kill of the receiver
// (its daemon, or a listener that acks by hand) that happened after the
// daemon read the message the first time (prev's record time, the
// daemon's clock) and before the repeat was read, and before the sender
// saw the receiver's ack: an ack on disk before the kill is carried over
// by the next incarnation, so the window was closed.
func (r *Report) checkRepeat(prev, cur *Event, m *message, kills []*Event) {
	id, host := cur.Rec.ID, cur.Host
	if !cur.Rec.Redelivered {
		r.violate(RuleDuplicate, id, host, "listener %s printed it again (process %d at %s, first process %d at %s) without the redelivered flag",
			cur.Client, cur.Op, stamp(cur.T), prev.Op, stamp(prev.T))
		return
	}
	var ackAt time.Time
	acked := false
	if m != nil {
		ackAt, acked = m.ackAt(host)
	}
	var between []string
	for _, k := range kills {
		if k.What != KillDaemon && !(k.What == KillListener && k.Manual) {
			continue
		}
		from := prev.Rec.Time
		if k.What == KillListener {
			// The daemon learns of a killed listener when its
			// connection closes, a little after the SIGKILL: one
			// killed just before the first read may still have
			// taken the message then.
			from = from.Add(-listenerGoneSlack)
		}
		if !k.T.After(from) || !k.T.Before(cur.T) {
			continue
		}
		if acked && ackAt.Before(k.T) {
			between = append(between, fmt.Sprintf("%s at %s", k.What, stamp(k.T)))
			continue
		}
		r.Redeliveries++
		return
	}
	if len(between) > 0 {
		r.violate(RuleDuplicate, id, host, "listener %s printed it again (flagged) at %s, but the sender saw this host's ack at %s, before every kill since the first read (%s): the ack was on disk",
			cur.Client, stamp(cur.T), stamp(ackAt), strings.Join(between, ", "))
		return
	}
	r.violate(RuleDuplicate, id, host, "listener %s printed it again (flagged) at %s with no kill of this host's daemon or manual-ack listener since the daemon read it first at %s",
		cur.Client, stamp(cur.T), stamp(prev.Rec.Time))
}

func sorted(ids []uint64) []uint64 {
	s := slices.Clone(ids)
	slices.Sort(s)
	return slices.Compact(s)
}

func stamp(t time.Time) string { return t.Format("15:04:05.000000") }
