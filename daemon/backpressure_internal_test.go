package daemon

import (
	"bufio"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// senderSector is host 1's sector carrying message seq to host 2.
func senderSector(seq, ts uint64) leader.Sector {
	r := leader.Record{Magic: leader.Magic, Version: leader.Version, Flags: leader.FlagAlign1M, SectorSize: 512,
		MaxHosts: 1, OwnerID: 1, OwnerGeneration: 1, Timestamp: ts, IOTimeout: 1, WriteGeneration: leader.EventUser0,
		WriteTimestamp: seq}
	copy(r.SpaceName[:], "LS")
	s := leader.Sector{Record: r, Ext: &leader.Extension{Version: leader.ExtVersion, Seq: seq, Origin: 1}}
	s.Bitmap.Set(2)
	s.Seal()
	return s
}

// view is one read of hosts 1 and 2 as host 2 sees it.
func view(sender leader.Sector) *delta.View {
	own := leader.Sector{Record: leader.Record{OwnerID: 2, OwnerGeneration: 1, Timestamp: 1}}
	return &delta.View{IDs: []uint64{1, 2}, Sectors: []leader.Sector{sender, own},
		States: []delta.HostState{delta.StateLive, delta.StateLive}, Bad: []error{nil, nil}}
}

// waitPayload waits up to 10 s for our next payload to satisfy ok.
func waitPayload(t *testing.T, ms *messenger, ok func(delta.Payload) bool) delta.Payload {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, _ := ms.Payload(time.Now())
		if ok(p) || time.Now().After(deadline) {
			return p
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMessenger_autoAckOnceWritten: a message taken only by auto-ack
// listeners is acked once one of them has it written to its connection,
// not when it is queued in the daemon (a crash would lose it there with
// the ack on disk); one whose listener went away before it was written is
// given back and delivered again, flagged, to the next listener.
func TestMessenger_autoAckOnceWritten(t *testing.T) {
	d := &Daemon{cfg: Config{WatchdogTimeout: time.Second, ListenerGrace: -1}, clk: clock.Real{}, wdev: watchdog.None{},
		log: slog.New(slog.DiscardHandler)}
	ms := d.newMessenger("LS", 2, time.Second)
	geo, _ := leader.DefaultGeometry(512)
	ms.Joined(2, 1, geo)
	now := time.Now()

	// A listener whose writer does not run yet: queued, not acked.
	dconn, cconn := socketPair(t)
	first := newRegistration("LS", dconn, 10)
	first.onWritten = func(ids []string) { ms.written(first, ids) }
	if err := ms.addReg(first); err != nil {
		t.Fatal(err)
	}
	ms.Observe(now, view(senderSector(1, 100)))
	if p, _ := ms.Payload(now); len(p.Ext.Acks) != 0 {
		t.Fatalf("queued, not written: our extension %+v, want no ack", p.Ext)
	}
	if st := ms.status(); st.Delivered != 1 || st.Unacked != 1 {
		t.Fatalf("status %+v, want one delivered, waiting for its ack", st)
	}
	// Written: acked.
	go first.serve(bufio.NewReader(dconn))
	cconn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(cconn).ReadString('\n'); err != nil || !strings.Contains(line, `"id":"1:1:1"`) {
		t.Fatalf("the listener read %q, %v; want message 1:1:1", line, err)
	}
	p := waitPayload(t, ms, func(p delta.Payload) bool { return len(p.Ext.Acks) > 0 })
	if len(p.Ext.Acks) != 1 || p.Ext.Acks[0].Seq != 1 || p.Ext.Acks[0].Status != leader.StatusDelivered {
		t.Fatalf("written: our extension %+v, want seq 1 acked delivered", p.Ext)
	}
	ms.removeReg(first)

	// A listener that goes away before its writer ran: given back, and
	// delivered again, flagged, to the next one; its ack waits for that.
	dconn2, _ := socketPair(t)
	gone := newRegistration("LS", dconn2, 10)
	if err := ms.addReg(gone); err != nil {
		t.Fatal(err)
	}
	ms.Observe(now.Add(time.Second), view(senderSector(2, 200)))
	ms.removeReg(gone)
	dconn3, _ := socketPair(t)
	next := newRegistration("LS", dconn3, 10)
	if err := ms.addReg(next); err != nil {
		t.Fatal(err)
	}
	ms.Observe(now.Add(2*time.Second), view(senderSector(2, 300)))
	if next.queued() != 1 || !next.queue[0].Redelivered || next.queue[0].ID != "1:1:2" {
		t.Fatalf("the next listener's queue %+v, want message 1:1:2 flagged redelivered", next.queue)
	}
	if p, _ := ms.Payload(now); len(p.Ext.Acks) != 1 || p.Ext.Acks[0].Seq != 1 {
		t.Fatalf("given back and queued again: our extension %+v, want only seq 1's ack", p.Ext)
	}
}

// TestMessenger_backPressure: a message that no listener has room for is
// left on its sender's disk (not acked, our sector says we hold it back);
// one that only some listeners take is acked "delivered" and counted as
// an overflow, with a log line, for the listener that could not take it.
func TestMessenger_backPressure(t *testing.T) {
	var logBuf testimg.SyncBuffer
	d := &Daemon{cfg: Config{WatchdogTimeout: time.Second, ListenerGrace: -1}, clk: clock.Real{}, wdev: watchdog.None{},
		log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	ms := d.newMessenger("LS", 2, time.Second)
	geo, _ := leader.DefaultGeometry(512)
	ms.Joined(2, 1, geo)

	// A listener whose queue (2 records) is full and never drains: no
	// writer runs for it.
	dconn, _ := socketPair(t)
	full := newRegistration("LS", dconn, 2)
	full.by = "slow client"
	full.enqueue(messageRecord("LS", hostmsg.Delivery{From: 9, Seq: 1}))
	full.enqueue(messageRecord("LS", hostmsg.Delivery{From: 9, Seq: 2}))
	if err := ms.addReg(full); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 5 {
		ms.Observe(now.Add(time.Duration(i)*100*time.Millisecond), view(senderSector(1, 100+uint64(i))))
	}
	p, _ := ms.Payload(now)
	if p.Ext.Flags&leader.ExtFlagHolding == 0 || len(p.Ext.Acks) != 0 {
		t.Fatalf("with no room: our extension %+v, want the holding flag and no ack", p.Ext)
	}
	st := ms.status()
	if st.HeldBack != 1 || st.Delivered != 0 || st.Overflows != 0 || len(st.Registrations) != 1 || st.Registrations[0].Queued != 2 {
		t.Fatalf("status %+v, want one message held back, nothing delivered or overflowed", st)
	}

	// A second listener with room: the message is delivered, and acked
	// once written to its connection; the full one misses it, and is told
	// so.
	dconn2, cconn2 := socketPair(t)
	roomy := newRegistration("LS", dconn2, 10)
	roomy.by = "fast client"
	roomy.onWritten = func(ids []string) { ms.written(roomy, ids) }
	if err := ms.addReg(roomy); err != nil {
		t.Fatal(err)
	}
	ms.Observe(now.Add(time.Second), view(senderSector(1, 200)))
	st = ms.status()
	if st.Delivered != 1 || st.Overflows != 1 || roomy.queued() != 1 || full.overflows() != 1 {
		t.Fatalf("status %+v (roomy queued %d, full overflows %d), want one delivered, one overflow", st, roomy.queued(), full.overflows())
	}
	go roomy.serve(bufio.NewReader(dconn2))
	cconn2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(cconn2).ReadString('\n'); err != nil || !strings.Contains(line, `"id":"1:1:1"`) {
		t.Fatalf("the roomy listener read %q, %v; want message 1:1:1", line, err)
	}
	p = waitPayload(t, ms, func(p delta.Payload) bool { return len(p.Ext.Acks) > 0 })
	if p.Ext.Flags&leader.ExtFlagHolding != 0 || len(p.Ext.Acks) != 1 || p.Ext.Acks[0].Seq != 1 || p.Ext.Acks[0].Status != leader.StatusDelivered {
		t.Fatalf("with a listener with room: our extension %+v, want seq 1 acked delivered", p.Ext)
	}
	if log := logBuf.String(); !strings.Contains(log, "listener queue full") || !strings.Contains(log, `listener="slow client"`) {
		t.Errorf("log lacks the overflow line:\n%s", log)
	}
	// A further overflow within the rate limit is counted, not logged.
	ms.Observe(now.Add(2*time.Second), view(senderSector(2, 300)))
	if n := strings.Count(logBuf.String(), "listener queue full"); n != 1 || full.overflows() != 2 {
		t.Errorf("%d overflow log lines and %d overflows, want 1 and 2", n, full.overflows())
	}
}
