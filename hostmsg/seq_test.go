package hostmsg

import (
	"errors"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// TestSeqReserve: a caller can push its seqs up to the reserve but no
// further; root's reset (Privileged) still gets a seq, and so does the
// RESETTING reply of a host whose callers used up their seqs, whose
// sector then still encodes.
func TestSeqReserve(t *testing.T) {
	s := newSim(1, 512)
	a, b := s.join(1, false), s.join(2, false)
	s.run(3 * time.Second)
	for _, h := range []*simHost{a, b} {
		h.m.cfg.SeqWindow = leader.MaxSeq // reach the top in one step
	}
	limit := uint64(leader.MaxSeq - SeqReserve)
	if _, err := a.m.Send(s.now, Message{Targets: []uint64{2}, Code: leader.EventUser0, Seq: limit + 1}); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("seq above the reserve: %v, want ErrSeqExhausted", err)
	}
	if seq, err := a.m.Send(s.now, Message{Targets: []uint64{2}, Code: leader.EventUser0, Seq: limit}); err != nil || seq != limit {
		t.Fatalf("seq at the limit: %d, %v", seq, err)
	}
	if _, err := a.m.Send(s.now, Message{Targets: []uint64{2}, Code: leader.EventUser0}); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("next seq past the limit: %v, want ErrSeqExhausted", err)
	}
	// Host 2's callers did the same; then host 1 (root) resets host 2.
	if _, err := b.m.Send(s.now, Message{Targets: []uint64{1}, Code: leader.EventUser0 << 1, Seq: limit}); err != nil {
		t.Fatal(err)
	}
	seq, err := a.m.Send(s.now, Message{Targets: []uint64{2}, Code: leader.EventReset, CurrentGeneration: true, Privileged: true})
	if err != nil || seq != limit+1 {
		t.Fatalf("privileged reset: seq %d, %v; want %d", seq, err, limit+1)
	}
	if !s.quiet(time.Minute) {
		t.Fatalf("not quiet:\n%s", s.tail())
	}
	var resetResult *Result
	for i, r := range a.results[a.gen] {
		if r.Seq == seq {
			resetResult = &a.results[a.gen][i]
		}
	}
	if resetResult == nil || resetResult.Targets[0].Outcome != OutcomeAcked || resetResult.Targets[0].Status != leader.StatusResetting {
		t.Fatalf("reset result %+v, want acked resetting\n%s", resetResult, s.tail())
	}
	if len(b.resets) != 1 {
		t.Fatalf("host 2 resets: %v", b.resets)
	}
	sec, err := leader.DecodeSector(s.disk[2])
	if err != nil || sec.Ext == nil || sec.Ext.Flags&leader.ExtFlagResetting == 0 || sec.Ext.Seq != limit+1 {
		t.Fatalf("host 2's sector: %+v %v, want the resetting flag and its reply at seq %d", sec.Ext, err, limit+1)
	}
}

// TestResendValidation: Resend refuses what cannot be an earlier
// incarnation's message.
func TestResendValidation(t *testing.T) {
	m, err := New(Config{HostID: 1, Generation: 5, SectorSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	msg := Message{Targets: []uint64{2}, Code: leader.EventUser0}
	for _, tt := range []struct {
		name string
		r    Resent
		want error
	}{
		{"origin is ours", Resent{Message: msg, Origin: 5, Seq: 1}, ErrOrigin},
		{"origin later", Resent{Message: msg, Origin: 6, Seq: 1}, ErrOrigin},
		{"no origin", Resent{Message: msg, Seq: 1}, ErrOrigin},
		{"to ourselves", Resent{Message: Message{Targets: []uint64{1}, Code: 1 << 16}, Origin: 4, Seq: 1}, ErrSelf},
		{"no target", Resent{Message: Message{Code: 1 << 16}, Origin: 4, Seq: 1}, ErrNoTarget},
	} {
		if err := m.Resend(now, []Resent{tt.r}); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if m.Pending() != 0 {
		t.Errorf("pending %d after refused resends", m.Pending())
	}
	if err := m.Resend(now, []Resent{{Message: msg, Origin: 4, Seq: 9}}); err != nil || m.Pending() != 1 {
		t.Fatalf("valid resend: %v, pending %d", err, m.Pending())
	}
}

// TestHoldCommit: a held message stays off disk, and so do later ones to
// the same target, until Commit; Abandon drops it without a result.
func TestHoldCommit(t *testing.T) {
	s := newSim(1, 512)
	a, _ := s.join(1, false), s.join(2, false)
	s.join(3, false)
	s.run(3 * time.Second)
	held, err := a.m.Send(s.now, Message{Targets: []uint64{2}, Code: leader.EventUser0, Hold: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.send(a, Message{Targets: []uint64{2}, Code: leader.EventUser0 << 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.send(a, Message{Targets: []uint64{3}, Code: leader.EventUser0 << 2}); err != nil {
		t.Fatal(err)
	}
	s.run(2 * time.Second)
	if n := len(s.hosts[2].delivered[1]); n != 0 {
		t.Fatalf("host 2 got %d messages while the first one was held", n)
	}
	if n := len(s.hosts[3].delivered[1]); n != 1 {
		t.Fatalf("host 3 got %d messages; a held message to host 2 must not block it", n)
	}
	if err := a.m.Commit(s.now, held); err != nil {
		t.Fatal(err)
	}
	if err := a.m.Commit(s.now, held); !errors.Is(err, ErrUnknown) {
		t.Errorf("second Commit: %v, want ErrUnknown", err)
	}
	s.run(2 * time.Second)
	got := s.hosts[2].delivered[1]
	if len(got) != 2 || got[0].Seq != held || got[1].Seq != held+1 {
		t.Fatalf("host 2 got %+v, want seqs %d, %d in order", got, held, held+1)
	}
	drop, _ := a.m.Send(s.now, Message{Targets: []uint64{2}, Code: leader.EventUser0, Hold: true})
	a.m.Abandon(s.now, drop)
	if !s.quiet(time.Minute) || a.m.Pending() != 0 {
		t.Fatalf("abandoned message still pending: %d", a.m.Pending())
	}
	for _, r := range a.results[1] {
		if r.Seq == drop {
			t.Fatalf("abandoned seq %d has a result: %v", drop, r.String())
		}
	}
}

// TestSendBeforeFirstRead: right after the join, before the first read of
// the area, a send is queued (its target's state decides its outcome
// later) rather than refused as "never seen"; one for the target's
// current generation must wait for the first read.
func TestSendBeforeFirstRead(t *testing.T) {
	s := newSim(1, 512)
	a := s.join(1, false)
	s.join(2, false)
	if _, err := a.m.Send(s.now, Message{Targets: []uint64{2}, Code: leader.EventReset, CurrentGeneration: true}); !errors.Is(err, ErrTargetNotLive) {
		t.Fatalf("reset for the current generation before the first read: %v, want ErrTargetNotLive", err)
	}
	seq, err := s.send(a, Message{Targets: []uint64{2}, Code: leader.EventUser0})
	if err != nil {
		t.Fatalf("send before the first read: %v", err)
	}
	never, err := s.send(a, Message{Targets: []uint64{9}, Code: leader.EventUser0, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("send to a host never seen, before the first read: %v", err)
	}
	if !s.quiet(time.Minute) {
		t.Fatalf("not quiet:\n%s", s.tail())
	}
	got := map[uint64]string{}
	for _, r := range a.results[1] {
		got[r.Seq] = r.String()
	}
	if got[seq] != "host 2: acked (delivered)" || got[never] != "host 9: timeout" {
		t.Fatalf("results %v, want seq %d delivered and seq %d timed out\n%s", got, seq, never, s.tail())
	}
}
