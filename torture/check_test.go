package torture

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// The checker on synthetic histories: a clean one passes, with a
// redelivery inside the crash window; every kind of injected fault is
// caught, and only by the rule about it.

var t0 = time.Date(2020, 1, 2, 12, 0, 0, 0, time.UTC) // before any clock a test runs on

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// history builds a synthetic history in time order.
type history struct{ evs []Event }

func (h *history) add(e Event) *Event {
	h.evs = append(h.evs, e)
	return &h.evs[len(h.evs)-1]
}

// send logs client's attempt op from host to targets: the attempt, the
// accept of id, with wait the result, and the end.
func (h *history) send(ms int, client string, op int, host uint64, targets []uint64, data uint64, id string, wait bool, res *callback.SendReply) {
	h.add(Event{T: at(ms), Kind: KindAttempt, Client: client, Op: op, Host: host, Targets: targets, Wait: wait, Data: data})
	h.add(Event{T: at(ms + 1), Kind: KindAccept, Client: client, Op: op, Host: host, Targets: targets, Wait: wait, Data: data, ID: id})
	if wait {
		h.add(Event{T: at(ms + 50), Kind: KindResult, Client: client, Op: op, Host: host, ID: id, Result: res})
	}
	h.add(Event{T: at(ms + 51), Kind: KindEnd, Client: client, Op: op, Host: host})
}

// record logs a message record that listener slot process op on host
// printed at ms, which its daemon read at readMs.
func (h *history) record(ms, readMs int, host uint64, slot string, op int, id string, data uint64, redelivered bool) *Event {
	var from, origin, seq uint64
	mustScan(id, &from, &origin, &seq)
	return h.add(Event{T: at(ms), Kind: KindRecord, Host: host, Client: slot, Op: op, Rec: &callback.Record{
		Type: callback.RecordMessage, Lockspace: "LS", FromHostID: from, FromGeneration: origin, Origin: origin, Seq: seq,
		Code: 1 << 16, Data: data, ID: id, Time: at(readMs), Status: "delivered", Redelivered: redelivered}})
}

func mustScan(id string, from, origin, seq *uint64) {
	var f [3]uint64
	for i, p := range strings.Split(id, ":") {
		for _, c := range p {
			f[i] = f[i]*10 + uint64(c-'0')
		}
	}
	*from, *origin, *seq = f[0], f[1], f[2]
}

// acked is a finished result where every target acked delivered at ms.
func acked(id string, ms int, targets map[uint64]uint64) *callback.SendReply {
	r := &callback.SendReply{ID: id, State: "done", Done: true, OK: true}
	for _, h := range sorted(keys(targets)) {
		r.Targets = append(r.Targets, callback.TargetStatus{HostID: h, Generation: targets[h], Outcome: "acked", Status: "delivered", OK: true, At: at(ms)})
	}
	return r
}

// processed makes a one-target result end processed-status-unknown.
func processed(r *callback.SendReply) {
	r.OK, r.Targets[0].OK, r.Targets[0].Outcome, r.Targets[0].Status = false, false, outcomeProcessed, ""
	r.Error = fmt.Sprintf("host %d: processed-status-unknown", r.Targets[0].HostID)
}

func keys(m map[uint64]uint64) []uint64 {
	var ks []uint64
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// final logs the final state of id, sent from host.
func (h *history) final(ms int, host uint64, id string, res *callback.SendReply) *Event {
	return h.add(Event{T: at(ms), Kind: KindFinal, Host: host, ID: id, Result: res})
}

// clean is a history that keeps every promise: hosts 1..3; host 1 sends
// 1:1:1 to 2 and 3 with --wait, 1:1:2 to 2 without; host 2 sends 2:1:1 to
// 1; host 2's daemon is killed after printing 1:1:3 and before its ack
// reached the disk, and prints it again, flagged, after its restart (the
// crash window); host 3's manual-ack listener is killed holding 1:1:4,
// which the next one prints again, flagged.
func clean() *history {
	h := &history{}
	for host := uint64(1); host <= 3; host++ {
		h.add(Event{T: at(0), Kind: KindJoin, Host: host, Incarnation: 1, Generation: 1})
	}
	r1 := acked("1:1:1", 90, map[uint64]uint64{2: 1, 3: 1})
	h.send(10, "1.w", 1, 1, []uint64{3, 2}, 0x101, "1:1:1", true, r1)
	h.record(40, 30, 2, "2.0", 1, "1:1:1", 0x101, false)
	h.record(41, 31, 3, "3.0", 1, "1:1:1", 0x101, false)
	h.send(100, "1.n", 1, 1, []uint64{2}, 0x201, "1:1:2", false, nil)
	h.record(140, 130, 2, "2.0", 1, "1:1:2", 0x201, false)
	h.send(150, "2.n", 1, 2, []uint64{1}, 0x301, "2:1:1", false, nil)
	h.record(180, 170, 1, "1.0", 1, "2:1:1", 0x301, false)
	// The crash window at host 2.
	h.send(200, "1.n", 2, 1, []uint64{2}, 0x202, "1:1:3", false, nil)
	h.record(240, 230, 2, "2.0", 1, "1:1:3", 0x202, false)
	h.add(Event{T: at(245), Kind: KindKill, Host: 2, What: KillDaemon})
	h.add(Event{T: at(250), Kind: KindListener, Host: 2, Client: "2.0", Op: 1, What: "exit", Exit: 1})
	h.add(Event{T: at(2300), Kind: KindJoin, Host: 2, Incarnation: 2, Generation: 2})
	h.record(2400, 2390, 2, "2.0", 2, "1:1:3", 0x202, true)
	// A manual-ack listener of host 3 killed holding 1:1:4.
	h.send(2500, "1.n", 3, 1, []uint64{3}, 0x203, "1:1:4", false, nil)
	h.record(2540, 2530, 3, "3.0", 1, "1:1:4", 0x203, false)
	h.add(Event{T: at(2545), Kind: KindKill, Host: 3, Client: "3.0", Op: 1, What: KillListener, Manual: true})
	h.record(2600, 2590, 3, "3.0", 2, "1:1:4", 0x203, true)
	h.final(3000, 1, "1:1:1", r1)
	h.final(3000, 1, "1:1:2", acked("1:1:2", 150, map[uint64]uint64{2: 1}))
	h.final(3000, 2, "2:1:1", acked("2:1:1", 190, map[uint64]uint64{1: 1}))
	h.final(3000, 1, "1:1:3", acked("1:1:3", 2410, map[uint64]uint64{2: 2}))
	h.final(3000, 1, "1:1:4", acked("1:1:4", 2610, map[uint64]uint64{3: 1}))
	return h
}

// find returns the index of the first event that matches.
func (h *history) find(t *testing.T, match func(e *Event) bool) int {
	t.Helper()
	for i := range h.evs {
		if match(&h.evs[i]) {
			return i
		}
	}
	t.Fatal("no such event in the clean history")
	return -1
}

func isRecord(host uint64, id string, redelivered bool) func(e *Event) bool {
	return func(e *Event) bool {
		return e.Kind == KindRecord && e.Host == host && e.Rec.ID == id && e.Rec.Redelivered == redelivered
	}
}

func isFinal(id string) func(e *Event) bool {
	return func(e *Event) bool { return e.Kind == KindFinal && e.ID == id }
}

func rules(r *Report) []string {
	var rs []string
	for _, v := range r.Violations {
		rs = append(rs, v.Rule)
	}
	slices.Sort(rs)
	return slices.Compact(rs)
}

func TestCheck_clean(t *testing.T) {
	r := Check(clean().evs, Options{NoFailures: true})
	if !r.OK() {
		t.Fatalf("violations in a clean history:\n%s", violations(r))
	}
	if r.Messages != 5 || r.Targets != 6 || r.Deliveries != 8 || r.Redeliveries != 2 || r.Flagged != 2 ||
		r.Kills[KillDaemon] != 1 || r.Kills[KillListener] != 1 || r.Joins != 4 || r.Attempts != 5 {
		t.Errorf("counts: %s", r.Summary())
	}
}

func violations(r *Report) string {
	var b strings.Builder
	for _, v := range r.Violations {
		b.WriteString(v.String() + "\n")
	}
	return b.String()
}

func TestCheck_faults(t *testing.T) {
	for _, tt := range []struct {
		name   string
		opt    Options
		mutate func(t *testing.T, h *history)
		want   []string
	}{
		{"duplicate without the flag", Options{}, func(t *testing.T, h *history) {
			h.evs[h.find(t, isRecord(2, "1:1:3", true))].Rec.Redelivered = false
		}, []string{RuleDuplicate}},
		{"duplicate with the flag but no kill", Options{}, func(t *testing.T, h *history) {
			h.record(200, 190, 1, "1.0", 1, "2:1:1", 0x301, true)
		}, []string{RuleDuplicate}},
		{"redelivered after a kill that came before the first read", Options{}, func(t *testing.T, h *history) {
			// The kill (245) then came before the daemon read it first.
			h.evs[h.find(t, isRecord(2, "1:1:3", false))].Rec.Time = at(246)
		}, []string{RuleDuplicate}},
		{"redelivered though the ack was on disk before the kill", Options{}, func(t *testing.T, h *history) {
			res := h.evs[h.find(t, isFinal("1:1:3"))].Result
			res.Targets[0].At, res.Targets[0].Generation = at(242), 1
		}, []string{RuleDuplicate}},
		{"a manual-ack listener killed just before the first read", Options{}, func(t *testing.T, h *history) {
			// Its daemon had not seen the connection close yet.
			h.evs[h.find(t, func(e *Event) bool { return e.Kind == KindKill && e.What == KillListener })].T = at(2529)
		}, nil},
		{"a manual-ack listener killed long before the first read", Options{}, func(t *testing.T, h *history) {
			h.evs[h.find(t, func(e *Event) bool { return e.Kind == KindKill && e.What == KillListener })].T = at(1000)
		}, []string{RuleDuplicate}},
		{"a daemon killed just before the first read", Options{}, func(t *testing.T, h *history) {
			h.evs[h.find(t, isRecord(2, "1:1:3", false))].Rec.Time = at(246)
			h.evs[h.find(t, isRecord(2, "1:1:3", false))].T = at(247)
		}, []string{RuleDuplicate}},
		{"processed-status-unknown after the sender's crash", Options{NoFailures: true}, func(t *testing.T, h *history) {
			processed(h.evs[h.find(t, isFinal("1:1:2"))].Result)
			h.add(Event{T: at(2000), Kind: KindKill, Host: 1, What: KillDaemon})
		}, nil},
		{"processed-status-unknown without a crash of the sender", Options{NoFailures: true}, func(t *testing.T, h *history) {
			processed(h.evs[h.find(t, isFinal("1:1:2"))].Result)
		}, []string{RuleFailed}},
		{"processed-status-unknown after a crash before the send", Options{NoFailures: true}, func(t *testing.T, h *history) {
			processed(h.evs[h.find(t, isFinal("1:1:2"))].Result)
			h.add(Event{T: at(50), Kind: KindKill, Host: 1, What: KillDaemon})
		}, []string{RuleFailed}},
		{"processed-status-unknown, never printed", Options{NoFailures: true}, func(t *testing.T, h *history) {
			processed(h.evs[h.find(t, isFinal("1:1:2"))].Result)
			h.add(Event{T: at(2000), Kind: KindKill, Host: 1, What: KillDaemon})
			i := h.find(t, isRecord(2, "1:1:2", false))
			h.evs = slices.Delete(h.evs, i, i+1)
		}, []string{RuleFailed}},
		{"an auto-ack listener's kill does not explain a repeat", Options{}, func(t *testing.T, h *history) {
			h.evs[h.find(t, func(e *Event) bool { return e.Kind == KindKill && e.What == KillListener })].Manual = false
		}, []string{RuleDuplicate}},
		{"a sender's kill does not explain a repeat", Options{}, func(t *testing.T, h *history) {
			k := h.find(t, func(e *Event) bool { return e.Kind == KindKill && e.What == KillListener })
			h.evs[k].What = KillSender
		}, []string{RuleDuplicate}},
		{"acked delivered but never printed", Options{}, func(t *testing.T, h *history) {
			i := h.find(t, isRecord(2, "1:1:2", false))
			h.evs = slices.Delete(h.evs, i, i+1)
		}, []string{RuleLost}},
		{"one target of a multicast never printed", Options{}, func(t *testing.T, h *history) {
			i := h.find(t, isRecord(3, "1:1:1", false))
			h.evs = slices.Delete(h.evs, i, i+1)
		}, []string{RuleLost}},
		{"unknown to its daemon and never printed", Options{}, func(t *testing.T, h *history) {
			i := h.find(t, isRecord(1, "2:1:1", false))
			h.evs = slices.Delete(h.evs, i, i+1)
			f := &h.evs[h.find(t, isFinal("2:1:1"))]
			f.Result, f.Err = nil, "not_found: no message 2:1:1"
		}, []string{RuleLost, RuleNotEnded}},
		{"no final state", Options{}, func(t *testing.T, h *history) {
			i := h.find(t, isFinal("1:1:2"))
			h.evs = slices.Delete(h.evs, i, i+1)
		}, []string{RuleNotEnded}},
		{"still pending", Options{}, func(t *testing.T, h *history) {
			f := h.evs[h.find(t, isFinal("1:1:2"))].Result
			f.Done, f.State = false, "pending"
		}, []string{RuleNotEnded}},
		{"failed without a reason", Options{}, func(t *testing.T, h *history) {
			f := h.evs[h.find(t, isFinal("2:1:1"))].Result
			f.OK, f.Targets[0].OK, f.Targets[0].Outcome, f.Targets[0].Status = false, false, "timeout", ""
		}, []string{RuleNoReason}},
		{"failed with a reason", Options{}, func(t *testing.T, h *history) {
			f := h.evs[h.find(t, isFinal("2:1:1"))].Result
			f.OK, f.Targets[0].OK, f.Targets[0].Status, f.Error = false, false, "no-listener", "host 1: acked (no-listener)"
		}, nil},
		{"failed with a reason, no failures expected", Options{NoFailures: true}, func(t *testing.T, h *history) {
			f := h.evs[h.find(t, isFinal("2:1:1"))].Result
			f.OK, f.Targets[0].OK, f.Targets[0].Status, f.Error = false, false, "no-listener", "host 1: acked (no-listener)"
		}, []string{RuleFailed}},
		{"out of order", Options{}, func(t *testing.T, h *history) {
			h.send(2700, "1.n", 4, 1, []uint64{2}, 0x204, "1:1:5", false, nil)
			h.record(2750, 2740, 2, "2.0", 2, "1:1:5", 0x204, false)
			h.record(2760, 2745, 2, "2.0", 2, "1:1:2", 0x201, false)
			h.final(3000, 1, "1:1:5", acked("1:1:5", 2755, map[uint64]uint64{2: 2}))
		}, []string{RuleDuplicate, RuleOrder}},
		{"out of order across listener processes", Options{}, func(t *testing.T, h *history) {
			h.send(2700, "1.n", 4, 1, []uint64{2}, 0x204, "1:1:5", false, nil)
			h.send(2800, "1.n", 5, 1, []uint64{2}, 0x205, "1:1:6", false, nil)
			h.record(2850, 2840, 2, "2.0", 2, "1:1:6", 0x205, false)
			h.record(2950, 2940, 2, "2.0", 3, "1:1:5", 0x204, false)
			h.final(3000, 1, "1:1:5", acked("1:1:5", 2955, map[uint64]uint64{2: 2}))
			h.final(3000, 1, "1:1:6", acked("1:1:6", 2855, map[uint64]uint64{2: 2}))
		}, []string{RuleOrder}},
		{"phantom", Options{}, func(t *testing.T, h *history) {
			h.record(2800, 2790, 3, "3.0", 2, "2:1:9", 0x399, false)
		}, []string{RulePhantom}},
		{"misrouted", Options{}, func(t *testing.T, h *history) {
			h.record(2800, 2790, 3, "3.0", 2, "2:1:1", 0x301, false)
		}, []string{RuleMisrouted}},
		{"corrupt data", Options{}, func(t *testing.T, h *history) {
			h.evs[h.find(t, isRecord(1, "2:1:1", false))].Rec.Data = 0x302
		}, []string{RuleCorrupt}},
		{"an id accepted twice", Options{}, func(t *testing.T, h *history) {
			h.send(2800, "1.w", 2, 1, []uint64{2}, 0x102, "1:1:2", false, nil)
		}, []string{RuleCorrupt}},
		{"a send that never exited", Options{}, func(t *testing.T, h *history) {
			h.add(Event{T: at(2900), Kind: KindAttempt, Client: "2.w", Op: 1, Host: 2, Targets: []uint64{3}, Wait: true, Data: 0x401})
		}, []string{RuleHung}},
		{"overflow", Options{}, func(t *testing.T, h *history) {
			h.add(Event{T: at(2900), Kind: KindRecord, Host: 1, Client: "1.0", Op: 1, Rec: &callback.Record{Type: callback.RecordOverflow, Dropped: 3}})
		}, []string{RuleOverflow}},
		{"printed result differs from the final one", Options{}, func(t *testing.T, h *history) {
			f := h.evs[h.find(t, isFinal("1:1:1"))]
			res := *f.Result
			res.Targets = slices.Clone(res.Targets)
			res.Targets[1].Generation = 2
			f.Result = &res
			h.evs[h.find(t, isFinal("1:1:1"))] = f
		}, []string{RuleMismatch}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := clean()
			tt.mutate(t, h)
			slices.SortStableFunc(h.evs, func(a, b Event) int { return a.T.Compare(b.T) })
			r := Check(h.evs, tt.opt)
			if got := rules(r); !slices.Equal(got, tt.want) {
				t.Errorf("rules broken: %v, want %v\n%s", got, tt.want, violations(r))
			}
		})
	}
}

// TestCheck_counts: the counts of Lost and Duplicates follow the
// violations.
func TestCheck_counts(t *testing.T) {
	h := clean()
	for _, id := range []string{"1:1:2", "2:1:1"} {
		i := h.find(t, func(e *Event) bool { return e.Kind == KindRecord && e.Rec.ID == id })
		h.evs = slices.Delete(h.evs, i, i+1)
	}
	h.evs[h.find(t, isRecord(2, "1:1:3", true))].Rec.Redelivered = false
	r := Check(h.evs, Options{})
	if r.Lost != 2 || r.Duplicates != 1 || r.Redeliveries != 1 {
		t.Errorf("lost %d duplicates %d redeliveries %d, want 2, 1, 1: %s\n%s", r.Lost, r.Duplicates, r.Redeliveries, r.Summary(), violations(r))
	}
}

// TestRead: logs written by several clients read back merged by time.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	a, err := CreateLog(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := CreateLog(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	a.Add(Event{T: at(2), Kind: KindJoin, Host: 1})
	b.Add(Event{T: at(1), Kind: KindKill, Host: 2, What: KillDaemon})
	b.Add(Event{Kind: KindJoin, Host: 2})
	a.Close()
	b.Close()
	if _, err := CreateLog(dir, "a"); err == nil {
		t.Error("CreateLog over an existing log: no error")
	}
	os.WriteFile(filepath.Join(dir, "other.txt"), []byte("not a log\n"), 0o644)
	evs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Kind+"/"+string(rune('0'+e.Host)))
	}
	if want := []string{"kill/2", "join/1", "join/2"}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	if evs[2].T.IsZero() {
		t.Error("Add did not stamp an event without a time")
	}
	os.WriteFile(filepath.Join(dir, "bad"+LogExt), []byte("{\"kind\":\n"), 0o644)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "bad"+LogExt+":1") {
		t.Errorf("Read of a bad line: %v, want an error naming the file and line", err)
	}
}
