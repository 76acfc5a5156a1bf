package daemon_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// msgPair is two in-process daemons in one in-memory lockspace at
// io_timeout 1: a holds host id 1 and b host id 2. b opens the device
// through rx, a fault injector, so a test can corrupt what b reads.
type msgPair struct {
	a, b   *testDaemon
	ca, cb *callback.Client
	rx     *delta.FaultDevice
}

func newMsgPair(t *testing.T) *msgPair {
	t.Helper()
	ds := newDevices()
	mem := ds.lockspace(t, "img", "LS")
	p := &msgPair{rx: delta.NewFaultDevice(mem)}
	ds.add("img-b", p.rx)
	p.a = startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-a" })
	p.b = startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-b" })
	p.ca, p.cb = p.a.dial(t), p.b.dial(t)
	ctx := ctxT(t, time.Minute)
	errc := make(chan error, 1)
	go func() {
		_, err := p.cb.AddLockspace(ctx, "LS:2:img-b:0", callback.AddOptions{IOTimeout: time.Second})
		errc <- err
	}()
	if _, err := p.ca.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitHostState(t, p.ca, 2, "LIVE")
	waitHostState(t, p.cb, 1, "LIVE")
	return p
}

// register registers for LS on host 2; the registration is closed at
// cleanup.
func (p *msgPair) register(t *testing.T) *callback.Registration {
	t.Helper()
	reg, err := callback.Register(ctxT(t, time.Minute), p.b.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// waitHostState waits until c's daemon sees host id in lockspace LS in
// state.
func waitHostState(t *testing.T, c *callback.Client, id uint64, state string) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	end := time.Now().Add(15 * time.Second)
	var last []callback.HostStatus
	for time.Now().Before(end) {
		hosts, err := c.HostStatus(ctx, "LS")
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			if h.HostID == id && h.State == state {
				return
			}
		}
		last = hosts
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("host %d not %s after 15 s: %+v", id, state, last)
}

// messages returns the message status of c's only lockspace.
func messages(t *testing.T, c *callback.Client) *callback.MessageStatus {
	t.Helper()
	st, err := c.Status(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Lockspaces) != 1 || st.Lockspaces[0].Messages == nil {
		t.Fatalf("status lists %+v, want one joined lockspace with a message status", st.Lockspaces)
	}
	return st.Lockspaces[0].Messages
}

// noRecord checks that reg has nothing more to deliver for d.
func noRecord(t *testing.T, reg *callback.Registration, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if rec, err := reg.Next(ctx); err == nil {
		t.Errorf("unexpected record %+v", rec)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next: %v, want a deadline", err)
	}
}

// TestMessages_sendWait: 30 sends with Wait from host 1 to a listener on
// host 2 are each acked "delivered" and delivered once, in seq order; the
// counters of both daemons say so.
func TestMessages_sendWait(t *testing.T) {
	t.Parallel()
	p := newMsgPair(t)
	ctx := ctxT(t, 2*time.Minute)
	reg := p.register(t)
	if m := messages(t, p.cb); m.Listeners != 1 {
		t.Fatalf("listeners %d, want 1", m.Listeners)
	}

	const n = 30
	start := time.Now()
	for i := range n {
		data := uint64(1000 + i)
		r, err := p.ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2},
			Code: leader.EventUser0, Data: &data, Wait: true})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if r.Seq != uint64(i+1) || !r.Done || !r.OK || r.Error != "" || len(r.Targets) != 1 {
			t.Fatalf("send %d: reply %+v, want seq %d done and OK for one target", i, r, i+1)
		}
		if tg := r.Targets[0]; tg.HostID != 2 || tg.Generation != 1 || tg.Outcome != "acked" || tg.Status != "delivered" || !tg.OK {
			t.Fatalf("send %d: target %+v, want host 2 generation 1 acked delivered", i, tg)
		}
		if r.QueuedAt.IsZero() || r.SentAt.Before(r.QueuedAt) || r.DoneAt.Before(r.SentAt) {
			t.Errorf("send %d: times queued %v sent %v done %v out of order", i, r.QueuedAt, r.SentAt, r.DoneAt)
		}
	}
	t.Logf("%d acked sends in %v (%v each)", n, time.Since(start), time.Since(start)/n)

	for i := range n {
		rec, err := reg.Next(ctx)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want := callback.Record{Type: callback.RecordMessage, Lockspace: "LS", FromHostID: 1, FromGeneration: 1,
			Seq: uint64(i + 1), Code: leader.EventUser0, Data: uint64(1000 + i), Status: "delivered"}
		if rec.Type != want.Type || rec.Lockspace != want.Lockspace || rec.FromHostID != want.FromHostID ||
			rec.FromGeneration != want.FromGeneration || rec.Seq != want.Seq || rec.Code != want.Code ||
			rec.Data != want.Data || rec.Status != want.Status || rec.Native || rec.Generation != 0 ||
			len(rec.Codes) != 1 || rec.Codes[0] != "user0" || rec.Time.IsZero() {
			t.Fatalf("record %d: got %+v, want %+v with codes [user0]", i, rec, want)
		}
	}
	noRecord(t, reg, 3*time.Second) // a renewal later: no duplicate

	if m := messages(t, p.ca); m.Sent != n || m.SendOK != n || m.SendFailed != 0 || m.Pending != 0 || m.Delivered != 0 {
		t.Errorf("sender's counters %+v, want %d sent and OK", m, n)
	} else if len(m.TargetOutcomes) != 1 || m.TargetOutcomes["acked/delivered"] != n {
		t.Errorf("sender's target outcomes %v, want %d acked/delivered", m.TargetOutcomes, n)
	}
	if m := messages(t, p.cb); m.Delivered != n || m.NoListener != 0 || m.Listeners != 1 || m.Overflows != 0 || m.BadExt != 0 {
		t.Errorf("receiver's counters %+v, want %d delivered", m, n)
	}
}

// TestMessages_noListener: a message to a host where nobody listens is
// acked "no-listener" and the send is not OK.
func TestMessages_noListener(t *testing.T) {
	t.Parallel()
	p := newMsgPair(t)
	ctx := ctxT(t, time.Minute)
	r, err := p.cb.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{1}, Code: leader.EventUser0 | leader.EventUser0<<1, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Done || r.OK || len(r.Targets) != 1 {
		t.Fatalf("reply %+v, want done, not OK, one target", r)
	}
	if tg := r.Targets[0]; tg.HostID != 1 || tg.Outcome != "acked" || tg.Status != "no-listener" || tg.OK {
		t.Errorf("target %+v, want host 1 acked no-listener, not OK", tg)
	}
	if !strings.Contains(r.Error, "no-listener") {
		t.Errorf("error %q does not name no-listener", r.Error)
	}
	if m := messages(t, p.ca); m.NoListener != 1 || m.Delivered != 0 {
		t.Errorf("receiver's counters %+v, want 1 no-listener", m)
	}
	if m := messages(t, p.cb); m.SendFailed != 1 || m.SendOK != 0 {
		t.Errorf("sender's counters %+v, want 1 failed send", m)
	} else if len(m.TargetOutcomes) != 1 || m.TargetOutcomes["acked/no-listener"] != 1 {
		t.Errorf("sender's target outcomes %v, want 1 acked/no-listener", m.TargetOutcomes)
	}
}

// TestMessages_badInput: each bad send is refused at once with its code,
// and nothing is sent.
func TestMessages_badInput(t *testing.T) {
	t.Parallel()
	p := newMsgPair(t)
	ctx := ctxT(t, time.Minute)
	// A seq to compare with.
	if r, err := p.ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Seq: 100}); err != nil || r.Seq != 100 {
		t.Fatalf("send seq 100: %+v, %v", r, err)
	}
	user := leader.EventUser0
	tests := []struct {
		name     string
		req      callback.SendRequest
		sentinel error
		code     string
		want     string
	}{
		{"code 0", callback.SendRequest{Targets: []uint64{2}}, callback.ErrInvalid, callback.CodeInvalid, "code 0"},
		{"ourselves", callback.SendRequest{Targets: []uint64{1}, Code: user}, callback.ErrInvalid, callback.CodeInvalid, "ourselves"},
		{"no target", callback.SendRequest{Code: user}, callback.ErrInvalid, callback.CodeInvalid, "no target"},
		{"out of range", callback.SendRequest{Targets: []uint64{2001}, Code: user}, callback.ErrInvalid, callback.CodeInvalid, "out of range 1..2000"},
		{"not live", callback.SendRequest{Targets: []uint64{7}, Code: user}, callback.ErrInvalid, callback.CodeInvalid, "target host not live: host 7"},
		{"generation mismatch", callback.SendRequest{Targets: []uint64{2}, Generation: 5, Code: user}, callback.ErrInvalid, callback.CodeInvalid, "generation 1, not 5"},
		{"generation with two targets", callback.SendRequest{Targets: []uint64{2, 3}, Generation: 1, Code: user}, callback.ErrInvalid, callback.CodeInvalid, "single target"},
		{"seq equal", callback.SendRequest{Targets: []uint64{2}, Code: user, Seq: 100}, callback.ErrInvalid, callback.CodeInvalid, "100 <= 100"},
		{"seq lower", callback.SendRequest{Targets: []uint64{2}, Code: user, Seq: 99}, callback.ErrInvalid, callback.CodeInvalid, "99 <= 100"},
		{"not joined", callback.SendRequest{Lockspace: "NOPE", Targets: []uint64{2}, Code: user}, callback.ErrNotJoined, callback.CodeNotJoined, `"NOPE" is not joined`},
		{"negative timeout", callback.SendRequest{Targets: []uint64{2}, Code: user, Timeout: -time.Second}, callback.ErrInvalid, "", "negative timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.Lockspace == "" {
				tt.req.Lockspace = "LS"
			}
			r, err := p.ca.Send(ctx, tt.req)
			if err == nil {
				t.Fatalf("sent: %+v", r)
			}
			if tt.code != "" {
				wantCode(t, err, tt.sentinel, tt.code)
			} else if !errors.Is(err, tt.sentinel) {
				t.Fatalf("got %v, want %v", err, tt.sentinel)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	if m := messages(t, p.ca); m.Sent+int64(m.Pending) != 1 {
		t.Errorf("%d sent and %d pending, want only the seq 100 message", m.Sent, m.Pending)
	}
	// The seq after a refused one is still free.
	if r, err := p.ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: user}); err != nil || r.Seq != 101 {
		t.Errorf("next send: %+v, %v; want seq 101", r, err)
	}
}

// TestMessages_remLockspace: a receiver that leaves ends its registration
// with an "end" record, then EOF, and a send still waiting for its ack
// ends "target-left".
func TestMessages_remLockspace(t *testing.T) {
	t.Parallel()
	p := newMsgPair(t)
	ctx := ctxT(t, time.Minute)
	reg := p.register(t)
	// Host 2 reads host 1's sector with a bad extension checksum from now
	// on, so it never sees, delivers or acks the message.
	p.rx.Inject(delta.Fault{Kind: delta.FaultCorrupt, Op: "read", Off: 0, End: 512, Bytes: leader.OffExtSeq})
	type result struct {
		r   *callback.SendReply
		err error
	}
	done := make(chan result, 1)
	sender := p.a.dial(t) // a Client runs one request at a time
	go func() {
		r, err := sender.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Wait: true})
		done <- result{r, err}
	}()
	time.Sleep(2 * time.Second) // several polls of host 2
	m := messages(t, p.cb)
	if m.Delivered != 0 || m.BadExt == 0 {
		t.Fatalf("receiver's counters %+v, want nothing delivered and bad extensions counted", m)
	}
	select {
	case res := <-done:
		t.Fatalf("send ended before the receiver left: %+v, %v", res.r, res.err)
	default:
	}
	if m := messages(t, p.ca); m.Pending != 1 {
		t.Errorf("sender's pending %d, want 1", m.Pending)
	}

	if _, err := p.cb.RemLockspace(ctx, "LS"); err != nil {
		t.Fatal(err)
	}
	rec, err := reg.Next(ctx)
	if err != nil || rec.Type != callback.RecordEnd || rec.Lockspace != "LS" || rec.Reason == "" {
		t.Fatalf("after rem_lockspace: %+v, %v; want an end record with a reason", rec, err)
	}
	if rec, err := reg.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end record: %+v, %v; want EOF", rec, err)
	}

	select {
	case res := <-done:
		if res.err != nil {
			t.Fatal(res.err)
		}
		if !res.r.Done || res.r.OK || len(res.r.Targets) != 1 || res.r.Targets[0].Outcome != "target-left" {
			t.Errorf("send: %+v, want done, not OK, target-left", res.r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the send did not end after the target left")
	}
	// A registration for a lockspace that is gone is refused.
	if _, err := callback.Register(ctx, p.b.dir, "LS"); err == nil {
		t.Error("register after rem_lockspace succeeded")
	} else {
		wantCode(t, err, callback.ErrNotJoined, callback.CodeNotJoined)
	}
}

// TestMessages_longRegistration: a registration still delivers long after
// the daemon answered the register request (the answer's write deadline
// must not stay on the stream).
func TestMessages_longRegistration(t *testing.T) {
	t.Parallel()
	p := newMsgPair(t)
	ctx := ctxT(t, time.Minute)
	reg := p.register(t)
	time.Sleep(11 * time.Second) // past the daemon's 10 s response write timeout
	r, err := p.ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Wait: true})
	if err != nil || !r.OK {
		t.Fatalf("send: %+v, %v; want acked delivered", r, err)
	}
	if rec, err := reg.Next(ctx); err != nil || rec.Type != callback.RecordMessage || rec.Seq != r.Seq {
		t.Fatalf("got %+v, %v; want message seq %d", rec, err, r.Seq)
	}
}
