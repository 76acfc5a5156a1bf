package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// node is one host of a lockspace whose daemon a test can kill and start
// again: the same run directory, state directory and host name, so the
// new daemon reacquires at once and finds its journal.
type node struct {
	t     *testing.T
	ds    *devices
	path  string // the device path it opens
	id    uint64
	name  string
	run   string
	state string
	grace time.Duration
	d     *testDaemon
	c     *callback.Client
}

func newNode(t *testing.T, ds *devices, path string, id uint64) *node {
	return &node{t: t, ds: ds, path: path, id: id, name: fmt.Sprintf("host-%d", id), run: t.TempDir(), state: t.TempDir(),
		grace: -1}
}

// start runs a daemon for n (not joined yet).
func (n *node) start() {
	n.t.Helper()
	n.d = startDaemon(n.t, n.ds, func(c *daemon.Config) {
		c.RunDir, c.StateDir, c.HostName, c.ListenerGrace = n.run, n.state, n.name, n.grace
	})
	n.c = n.d.dial(n.t)
}

// join adds the lockspace (blocking).
func (n *node) join() {
	n.t.Helper()
	ctx := ctxT(n.t, time.Minute)
	if _, err := n.c.AddLockspace(ctx, fmt.Sprintf("LS:%d:%s:0", n.id, n.path), callback.AddOptions{IOTimeout: time.Second}); err != nil {
		n.t.Fatal(err)
	}
}

// kill stops n's daemon as kill -9 would.
func (n *node) kill() {
	n.t.Helper()
	n.d.Kill()
	select {
	case <-n.d.done:
	case <-time.After(30 * time.Second):
		n.t.Fatal("killed daemon did not stop")
	}
	if !errors.Is(n.d.runErr, daemon.ErrKilled) {
		n.t.Fatalf("Run after Kill: %v", n.d.runErr)
	}
}

// register registers with n's daemon, as listen --wait: until the
// lockspace appears (it may still be joining).
func (n *node) register(manual bool) *callback.Registration {
	n.t.Helper()
	end := time.Now().Add(time.Minute)
	for {
		reg, err := callback.RegisterWith(ctxT(n.t, time.Minute), n.run, "LS", callback.RegisterOptions{ManualAck: manual})
		if err == nil {
			n.t.Cleanup(func() { reg.Close() })
			return reg
		}
		if !errors.Is(err, callback.ErrNotJoined) || time.Now().After(end) {
			n.t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// twoNodes starts and joins hosts 1 and 2 on one in-memory lockspace and
// waits until each sees the other LIVE. Host 2 reads through a fault
// injector.
func twoNodes(t *testing.T) (a, b *node, rx *delta.FaultDevice, txRead *delta.FaultDevice) {
	t.Helper()
	ds := newDevices()
	mem := ds.lockspace(t, "img", "LS")
	rx, txRead = delta.NewFaultDevice(mem), delta.NewFaultDevice(mem)
	ds.add("img-a", txRead)
	ds.add("img-b", rx)
	a, b = newNode(t, ds, "img-a", 1), newNode(t, ds, "img-b", 2)
	a.start()
	b.start()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.join() }()
	a.join()
	wg.Wait()
	waitHostState(t, a.c, 2, "LIVE")
	waitHostState(t, b.c, 1, "LIVE")
	return a, b, rx, txRead
}

// sendResult is the outcome of a send with Wait.
type sendResult struct {
	r   *callback.SendReply
	err error
}

// sendWait sends a user0 message with Wait from n to host 2 in a
// goroutine (on its own connection) and returns where its result comes.
func sendWait(ctx context.Context, t *testing.T, n *node) <-chan sendResult {
	t.Helper()
	c := n.d.dial(t)
	done := make(chan sendResult, 1)
	go func() {
		r, err := c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Wait: true})
		done <- sendResult{r, err}
	}()
	return done
}

// nextRecord returns reg's next message record.
func nextRecord(t *testing.T, reg *callback.Registration, d time.Duration) callback.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		rec, err := reg.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for a record: %v", err)
		}
		if rec.Type == callback.RecordMessage {
			return rec
		}
		t.Logf("record %+v", rec)
	}
}

// waitResult polls the result op until message id is done.
func waitResult(t *testing.T, c *callback.Client, id string, d time.Duration) *callback.SendReply {
	t.Helper()
	end := time.Now().Add(d)
	for {
		r, err := c.Result(ctxT(t, 10*time.Second), "LS", id)
		if err != nil {
			t.Fatalf("result %s: %v", id, err)
		}
		if r.State == "done" {
			return r
		}
		if time.Now().After(end) {
			t.Fatalf("result %s still %s after %v: %+v", id, r.State, d, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDurable_senderKilled: a sender killed with 20 messages queued (the
// first delivered but not acked yet) sends them again after its restart
// under their original ids; the receiver gets each exactly once, in
// order, and every id ends acked delivered. Messages sent after the
// restart get the new generation's ids and come after them.
func TestDurable_senderKilled(t *testing.T) {
	t.Parallel()
	a, b, _, _ := twoNodes(t)
	reg := b.register(true)
	ctx := ctxT(t, 2*time.Minute)
	const n = 20
	var ids []string
	for i := range n {
		r, err := a.c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Data: ptr(uint64(100 + i))})
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("1:1:%d", i+1); r.ID != want || r.Origin != 1 || r.Seq != uint64(i+1) {
			t.Fatalf("send %d: reply %+v, want id %s", i, r, want)
		}
		ids = append(ids, r.ID)
	}
	first := nextRecord(t, reg, 30*time.Second)
	if first.ID != "1:1:1" || !first.AckNeeded || first.Redelivered || first.Origin != 1 || first.Status != "delivered" {
		t.Fatalf("first record %+v, want 1:1:1 needing an ack", first)
	}
	if r, err := a.c.Result(ctx, "LS", "1:1:5"); err != nil || r.State != "pending" || len(r.Targets) != 0 {
		t.Fatalf("result of a queued message: %+v, %v; want pending", r, err)
	}
	if _, err := a.c.Result(ctx, "LS", "1:1:99"); !errors.Is(err, callback.ErrNotFound) {
		t.Fatalf("result of an unknown id: %v, want ErrNotFound", err)
	}

	a.kill()
	a.start()
	// Before the rejoin, the journal already answers.
	if r, err := a.c.Result(ctx, "", "1:1:20"); err != nil || r.State != "pending" {
		t.Fatalf("result after the restart, before the join: %+v, %v; want pending", r, err)
	}
	a.join()
	if err := reg.Ack(first.ID); err != nil {
		t.Fatal(err)
	}
	after, err := a.c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Data: ptr(uint64(999))})
	if err != nil || after.ID != "1:2:1" {
		t.Fatalf("send after the restart: %+v, %v; want id 1:2:1", after, err)
	}
	ids = append(ids, after.ID)
	// The listener acks each record once it has it.
	var got []callback.Record
	for len(got) < n { // 1:1:2..1:1:20 and 1:2:1
		rec := nextRecord(t, reg, 30*time.Second)
		got = append(got, rec)
		if err := reg.Ack(rec.ID); err != nil {
			t.Fatal(err)
		}
	}
	for i, rec := range got {
		if rec.ID != ids[i+1] || rec.Redelivered || !rec.AckNeeded {
			t.Fatalf("record %d: %+v, want %s once, in order, not redelivered", i, rec, ids[i+1])
		}
		if i < n-1 && (rec.Data != uint64(101+i) || rec.FromGeneration != 2 || rec.Origin != 1) {
			t.Errorf("resent record %+v: want data %d, sent by generation 2 under origin 1", rec, 101+i)
		}
	}
	noRecord(t, reg, 2*time.Second)
	for _, id := range ids {
		r := waitResult(t, a.c, id, 30*time.Second)
		if !r.OK || len(r.Targets) != 1 || r.Targets[0].Outcome != "acked" || r.Targets[0].Status != "delivered" || r.ID != id {
			t.Errorf("result %s: %+v, want acked delivered", id, r)
		}
	}
	if m := messages(t, a.c); m.Pending != 0 || !m.Durable {
		t.Errorf("sender's status %+v, want nothing pending, durable", m)
	}
	if m := messages(t, b.c); m.Delivered != n+1 || m.Redelivered != 0 {
		t.Errorf("receiver's status %+v, want %d delivered, none redelivered", m, n+1)
	}
}

// TestDurable_expiredWhileDown: a message whose deadline passes while its
// sender's daemon is down is not sent again. The restarted daemon settles
// it from what is on disk: "timeout" if the receiver never took it (it
// could not read it), "acked delivered" if the receiver took it from the
// dead sender's sector before the deadline.
func TestDurable_expiredWhileDown(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		readable  bool // the receiver can read the message while the sender is down
		outcome   string
		delivered int64
	}{
		{"never read", false, "timeout", 0},
		{"read while the sender was down", true, "acked", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b, rx, _ := twoNodes(t)
			b.register(false)
			// Host 2 cannot read host 1's message (bad extension) for now.
			rx.Inject(delta.Fault{Kind: delta.FaultCorrupt, Op: "read", Off: 0, End: 512, Bytes: leader.OffExtSeq})
			ctx := ctxT(t, time.Minute)
			r, err := a.c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Timeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // on host 1's disk
			a.kill()
			if tt.readable {
				rx.Clear()
			}
			time.Sleep(3500 * time.Millisecond)
			a.start()
			a.join()
			res := waitResult(t, a.c, r.ID, 10*time.Second)
			if len(res.Targets) != 1 || res.Targets[0].Outcome != tt.outcome {
				t.Fatalf("result %+v, want %s", res, tt.outcome)
			}
			if !tt.readable && (res.OK || !strings.Contains(res.Error, "deadline passed while the daemon was down")) {
				t.Errorf("result %+v, want not OK, saying the deadline passed while the daemon was down", res)
			}
			if tt.readable && (!res.OK || res.Targets[0].Status != "delivered") {
				t.Errorf("result %+v, want acked delivered", res)
			}
			rx.Clear()
			time.Sleep(time.Second) // host 2 reads host 1's new sector
			if m := messages(t, b.c); m.Delivered != tt.delivered {
				t.Errorf("receiver delivered %d, want %d", m.Delivered, tt.delivered)
			}
		})
	}
}

// TestDurable_waitDaemonGone: a send --wait whose daemon dies gets an
// error naming the message id, which the restarted daemon then sends.
func TestDurable_waitDaemonGone(t *testing.T) {
	t.Parallel()
	a, b, _, _ := twoNodes(t)
	reg := b.register(true)
	ctx := ctxT(t, time.Minute)
	var acceptedID string
	errc := make(chan error, 1)
	go func() {
		_, err := a.d.dial(t).Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Wait: true,
			OnAccept: func(r callback.SendReply) { acceptedID = r.ID }})
		errc <- err
	}()
	rec := nextRecord(t, reg, 30*time.Second) // delivered; not acked
	a.kill()
	err := <-errc
	if err == nil || acceptedID != rec.ID || !strings.Contains(err.Error(), rec.ID) || !strings.Contains(err.Error(), "sanlock-msg result") {
		t.Fatalf("send --wait across a kill: %v (accepted %q), want an error naming %s and how to ask for it", err, acceptedID, rec.ID)
	}
	a.start()
	a.join()
	if err := reg.Ack(rec.ID); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, a.c, rec.ID, 30*time.Second); !r.OK {
		t.Fatalf("result %+v, want acked delivered", r)
	}
}

// TestReceiver_killedKeepsAcks: a receiver killed after it acked a message
// its sender has not read yet carries the ack over: its next incarnation
// does not deliver the message again, and the sender ends it acked.
func TestReceiver_killedKeepsAcks(t *testing.T) {
	t.Parallel()
	a, b, _, txRead := twoNodes(t)
	reg := b.register(false)
	// Host 1 cannot read host 2's extension: it never sees the ack.
	txRead.Inject(delta.Fault{Kind: delta.FaultCorrupt, Op: "read", Off: 512, End: 1024, Bytes: 512 + leader.OffExtSeq, Abs: true})
	ctx := ctxT(t, time.Minute)
	done := sendWait(ctx, t, a)
	rec := nextRecord(t, reg, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // host 2's ack is on disk
	b.kill()
	b.start()
	joined := make(chan struct{})
	go func() { defer close(joined); b.join() }()
	reg2 := b.register(false)
	<-joined
	time.Sleep(2 * time.Second) // host 2 reads host 1's message again, several times
	txRead.Clear()
	res := <-done
	if res.err != nil || !res.r.OK || res.r.Targets[0].Status != "delivered" || res.r.ID != rec.ID {
		t.Fatalf("send: %+v, %v; want %s acked delivered", res.r, res.err, rec.ID)
	}
	noRecord(t, reg2, time.Second)
	if m := messages(t, b.c); m.Delivered != 0 || m.Inherited != 1 || m.Duplicates == 0 {
		t.Errorf("restarted receiver's status %+v, want nothing delivered, one ack inherited, duplicates seen", m)
	}
}

// TestReceiver_killedRedelivers: the documented crash window. A message
// handed to a manual-ack listener and not acked when the receiver's daemon
// dies is delivered again by its next incarnation, with the same id and
// flagged redelivered; a listener registered while the lockspace joins
// gets it, and its ack ends the send "delivered".
func TestReceiver_killedRedelivers(t *testing.T) {
	t.Parallel()
	a, b, _, _ := twoNodes(t)
	reg := b.register(true)
	ctx := ctxT(t, time.Minute)
	done := sendWait(ctx, t, a)
	rec := nextRecord(t, reg, 30*time.Second)
	b.kill()
	b.grace = 5 * time.Second
	b.start()
	joined := make(chan struct{})
	go func() { defer close(joined); b.join() }()
	reg2 := b.register(true) // while joining
	again := nextRecord(t, reg2, 30*time.Second)
	if again.ID != rec.ID || !again.Redelivered || !again.AckNeeded || again.Data != rec.Data {
		t.Fatalf("after the receiver's restart: %+v, want %s again, flagged redelivered", again, rec.ID)
	}
	if err := reg2.Ack(again.ID); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || !res.r.OK || res.r.Targets[0].Status != "delivered" {
		t.Fatalf("send: %+v, %v; want acked delivered", res.r, res.err)
	}
	<-joined
	if m := messages(t, b.c); m.Redelivered != 1 || m.NoListener != 0 {
		t.Errorf("receiver's status %+v, want one redelivery, no no-listener", m)
	}
}

// TestManualAck_givenBack: a manual-ack listener that goes away without
// acking gives its message back: the next listener gets it, same id,
// flagged redelivered; the sender is told "delivered" only once that one
// acks. Until then nothing is acked.
func TestManualAck_givenBack(t *testing.T) {
	t.Parallel()
	a, b, _, _ := twoNodes(t)
	reg := b.register(true)
	ctx := ctxT(t, time.Minute)
	done := sendWait(ctx, t, a)
	rec := nextRecord(t, reg, 30*time.Second)
	if m := messages(t, b.c); m.Unacked != 1 || len(m.Registrations) != 1 || !m.Registrations[0].ManualAck || m.Registrations[0].Unacked != 1 {
		t.Fatalf("receiver's status %+v, want one unacked delivery held by the manual-ack listener", m)
	}
	time.Sleep(time.Second)
	select {
	case res := <-done:
		t.Fatalf("send ended before the listener acked: %+v, %v", res.r, res.err)
	default:
	}
	reg2 := b.register(true)
	reg.Close()
	again := nextRecord(t, reg2, 30*time.Second)
	if again.ID != rec.ID || !again.Redelivered {
		t.Fatalf("second listener got %+v, want %s flagged redelivered", again, rec.ID)
	}
	reg2.Ack(again.ID)
	if res := <-done; res.err != nil || !res.r.OK {
		t.Fatalf("send: %+v, %v", res.r, res.err)
	}
	if m := messages(t, b.c); m.Returned != 1 || m.Redelivered != 1 || m.Unacked != 0 {
		t.Errorf("receiver's status %+v, want one given back and redelivered", m)
	}
}

// TestMessages_damagedExtension is issue 11's "a damaged extension turns
// one message into two": while host 2 reads host 1's sector with a damaged
// extension (version byte, then the whole extension zeroed), it counts
// bad extensions and delivers nothing, not even a plain sanlock event;
// once the sector reads clean, the message arrives once, with its seq.
func TestMessages_damagedExtension(t *testing.T) {
	t.Parallel()
	p := newMsgPair(t)
	reg := p.register(t)
	for _, f := range []delta.Fault{
		{Kind: delta.FaultCorrupt, Op: "read", Off: 0, End: 512, Bytes: leader.OffExtVersion, Count: 5},
		{Kind: delta.FaultCorrupt, Op: "read", Off: 0, End: 512, Bytes: leader.OffExtCRC, Count: 5},
	} {
		p.rx.Inject(f)
	}
	ctx := ctxT(t, 2*time.Minute)
	// Host 2 reads host 1's sector only at its renewals and when rung
	// (rings back off to the renewal interval): ten damaged reads take
	// about as long as the default send timeout, which is not what this
	// test is about.
	r, err := p.ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Wait: true,
		Timeout: time.Minute})
	if err != nil || !r.OK {
		t.Fatalf("send: %+v, %v", r, err)
	}
	rec := nextRecord(t, reg, 10*time.Second)
	if rec.Native || rec.Seq != r.Seq || rec.ID != r.ID {
		t.Fatalf("record %+v, want %s with its seq", rec, r.ID)
	}
	noRecord(t, reg, 2*time.Second)
	if m := messages(t, p.cb); m.BadExt == 0 || m.NativeDelivered != 0 || m.Delivered != 1 {
		t.Errorf("receiver's status %+v, want bad extensions counted, one delivery, no native one", m)
	}
}

// TestSender_areaReinitialised: after `init` over the lockspace area every
// generation starts from 1 again, so old message ids would come back. The
// daemon retires the old outbox and marks (kept beside, for reading): an
// old unfinished message is not sent again, the new message with the same
// id is accepted, and result answers for the new one.
func TestSender_areaReinitialised(t *testing.T) {
	t.Parallel()
	a, b, rx, _ := twoNodes(t)
	ctx := ctxT(t, time.Minute)
	// A message that host 2 never acks: host 2 is killed first.
	b.kill()
	if _, err := a.c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0}); err != nil {
		t.Fatal(err)
	}
	a.kill()
	geo, _ := leader.DefaultGeometry(512)
	if err := delta.Init(ctx, delta.NewIO(rx, clock.Real{}), delta.InitOptions{Name: "LS", Geometry: geo,
		IOTimeout: time.Second, Force: true}); err != nil {
		t.Fatal(err)
	}
	a.start()
	b.start()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.join() }()
	a.join()
	wg.Wait()
	waitHostState(t, a.c, 2, "LIVE")
	reg := b.register(false)
	res := <-sendWait(ctx, t, a)
	if res.err != nil || !res.r.OK || res.r.ID != "1:1:1" {
		t.Fatalf("send after the re-init: %+v, %v; want 1:1:1 acked", res.r, res.err)
	}
	rec := nextRecord(t, reg, 10*time.Second)
	if rec.ID != "1:1:1" || rec.Redelivered {
		t.Fatalf("record %+v, want the new 1:1:1", rec)
	}
	noRecord(t, reg, 2*time.Second) // the old message is not sent again
	got, err := a.c.Result(ctx, "LS", "1:1:1")
	if err != nil || got.State != "done" || !got.OK || !got.QueuedAt.Equal(res.r.QueuedAt) {
		t.Fatalf("result 1:1:1: %+v, %v; want the new message, done", got, err)
	}
	retired, _ := filepath.Glob(filepath.Join(a.state, "lockspaces", "*", "host-1", "outbox.retired-*"))
	if len(retired) != 1 {
		t.Fatalf("retired outboxes %v, want one", retired)
	}
}
