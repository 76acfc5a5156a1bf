package hostmsg_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// planHost is a machine with a hand-made view of its peers, for the
// doorbell tests: each peer's sector is built as its owner would write it.
type planHost struct {
	t   *testing.T
	m   *hostmsg.Machine
	now time.Time
	ts  map[uint64]uint64 // peers' timestamps
}

func newPlanHost(t *testing.T, id uint64, doorbells int) *planHost {
	t.Helper()
	m, err := hostmsg.New(hostmsg.Config{HostID: id, Generation: 1, SectorSize: 512, MaxHosts: 2000, Doorbells: doorbells, RingJitter: -1})
	if err != nil {
		t.Fatal(err)
	}
	m.SetListeners(1)
	return &planHost{t: t, m: m, now: time.Unix(1_000_000, 0), ts: map[uint64]uint64{}}
}

// peer returns peer id's sector: ours (our marker and extension) or a
// plain sanlock host's, io_timeout 1, with p's message fields; renew
// bumps its timestamp.
func (h *planHost) peer(id uint64, ours, renew bool, p hostmsg.Payload) hostmsg.Peer {
	if renew || h.ts[id] == 0 {
		h.ts[id] += 10
	}
	if !ours {
		p.Ext = nil
	} else if p.Ext == nil {
		p.Ext = &leader.Extension{Version: leader.ExtVersion}
	}
	s := benchSector(id, 1, h.ts[id], p)
	s.Record.IOTimeout = 1
	s.Seal()
	return hostmsg.Peer{HostID: id, Sector: &s, State: hostmsg.PeerLive}
}

func (h *planHost) at(d time.Duration) time.Time { return time.Unix(1_000_000, 0).Add(d) }

// plan returns the plan at offset d as "read=[..] ring=[..] scan next=D".
func (h *planHost) plan(d time.Duration) string {
	p := h.m.Plan(h.at(d))
	s := fmt.Sprintf("read=%v ring=%v", p.Read, p.Ring)
	if p.Scan {
		s += " scan"
	}
	if !p.Next.IsZero() {
		s += fmt.Sprintf(" next=%v", p.Next.Sub(h.at(0)))
	}
	if p.Fast {
		s += " fast"
	}
	return s
}

func wantPlan(t *testing.T, h *planHost, d time.Duration, want string) {
	t.Helper()
	if got := h.plan(d); got != want {
		t.Fatalf("plan at %v: %s, want %s", d, got, want)
	}
}

// sendAndWrite sends from h to targets at offset d and writes the message.
func sendAndWrite(t *testing.T, h *planHost, d time.Duration, msg hostmsg.Message) {
	t.Helper()
	if _, err := h.m.Send(h.at(d), msg); err != nil {
		t.Fatal(err)
	}
	if _, urgent := h.m.Payload(h.at(d)); !urgent {
		t.Fatal("send not urgent")
	}
	h.m.Written(h.at(d), nil)
}

// TestPlanSender follows the rings and reads a sender plans for a target
// that runs sanlock-msg, with the default doorbell poll interval P (250
// ms): a ring as soon as the message is on disk, reads 50, 100, 125 (P/2),
// 250 (P) and 375 ms (3P/2) after each ring, rings again 0.5 s (2P), 1 and
// 2 s later and then every renewal interval of the target (2.5 s at
// io_timeout 1), until the ack shows up in a read of the target's sector
// alone.
func TestPlanSender(t *testing.T) {
	h := newPlanHost(t, 1, 48)
	h.m.ObserveArea(h.at(0), []hostmsg.Peer{h.peer(2, true, false, hostmsg.Payload{}), h.peer(3, false, false, hostmsg.Payload{})})
	wantPlan(t, h, 0, "read=[] ring=[]")
	sendAndWrite(t, h, time.Second, hostmsg.Message{Targets: []uint64{2}, Code: leader.EventUser0})
	s := time.Second
	ms := time.Millisecond
	wantPlan(t, h, s, "read=[] ring=[2] next=1.05s fast")
	h.m.Rang(h.at(s), []uint64{2}, nil)
	wantPlan(t, h, s, "read=[] ring=[] next=1.05s fast")
	// Reads after the ring: each done when the target's sector (alone) is
	// observed.
	for _, r := range []time.Duration{1050 * ms, 1100 * ms, 1125 * ms, 1250 * ms, 1375 * ms} {
		wantPlan(t, h, r-ms, fmt.Sprintf("read=[] ring=[] next=%v fast", r))
		wantPlan(t, h, r, "read=[2] ring=[] next=1.5s fast")
		h.m.Observe(h.at(r), []hostmsg.Peer{h.peer(2, true, false, hostmsg.Payload{})})
	}
	// No ack yet: ring again 0.5 s after the first ring, then after 1 s,
	// 2 s, and the target's renewal interval (2.5 s) from then on; reads
	// follow every ring. A failed ring is retried at the next one only.
	rings := []time.Duration{1500 * ms, 2500 * ms, 4500 * ms, 7000 * ms, 9500 * ms}
	for i, at := range rings {
		wantPlan(t, h, at, "read=[] ring=[2] next="+fmt.Sprint(at+50*ms)+fast(at))
		var err error
		if i == 1 {
			err = errors.New("ring lost")
		}
		h.m.Rang(h.at(at), []uint64{2}, err)
		for _, off := range []time.Duration{50 * ms, 100 * ms, 125 * ms, 250 * ms, 375 * ms} {
			h.m.Observe(h.at(at+off), []hostmsg.Peer{h.peer(2, true, false, hostmsg.Payload{})})
		}
		if i+1 < len(rings) {
			wantPlan(t, h, at+375*ms, fmt.Sprintf("read=[] ring=[] next=%v%s", rings[i+1], fast(at+375*ms)))
		}
	}
	if st := h.m.RingStats(); st.RingsSent != 5 || st.RingFailures != 1 {
		t.Errorf("ring stats %+v", st)
	}
	// The ack arrives in a read of the target's sector only: the send
	// ends, and nothing is planned any more.
	ack := hostmsg.Payload{Ext: &leader.Extension{Version: leader.ExtVersion,
		Acks: []leader.Ack{{HostID: 1, Gen16: 1, Status: leader.StatusDelivered, Seq: 1}}}}
	h.m.Observe(h.at(10*s), []hostmsg.Peer{h.peer(2, true, true, ack)})
	if rd := h.m.Ready(); len(rd.Results) != 1 || rd.Results[0].Err() != nil {
		t.Fatalf("results %+v", rd.Results)
	}
	wantPlan(t, h, 10*s, "read=[] ring=[]")
}

// fast returns " fast" if at is within the active window (2 s) of the
// send at 1 s.
func fast(at time.Duration) string {
	if at < 3*time.Second {
		return " fast"
	}
	return ""
}

// TestPlanSenderNoAck: a plain sanlock target is never rung (it does not
// read doorbells) and is read once per ring interval, to see it renew
// twice; so is a sanlock-msg target of a message that is not acked
// (SEQ_DATA), which is rung all the same.
func TestPlanSenderNoAck(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		ours bool
		code uint64
		ring string
	}{{"sanlock target", false, leader.EventUser0, "[]"}, {"seq-data", true, leader.EventUser0 | leader.EventSeqData, "[2]"}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newPlanHost(t, 1, 48)
			h.m.ObserveArea(h.at(0), []hostmsg.Peer{h.peer(2, tc.ours, false, hostmsg.Payload{})})
			sendAndWrite(t, h, 0, hostmsg.Message{Targets: []uint64{2}, Code: tc.code})
			wantPlan(t, h, 0, "read=[] ring="+tc.ring+" next=375ms fast")
			h.m.Rang(h.at(0), []uint64{2}, nil)
			wantPlan(t, h, 374*ms, "read=[] ring=[] next=375ms fast")
			next := " next=500ms" // the next ring
			if !tc.ours {
				next = ""
			}
			wantPlan(t, h, 375*ms, "read=[2] ring=[]"+next+" fast")
			// It renews twice: done, delivered unacknowledged.
			h.m.Observe(h.at(375*ms), []hostmsg.Peer{h.peer(2, tc.ours, true, hostmsg.Payload{})})
			want := "read=[2] ring=[2] next=1.5s fast"
			if !tc.ours {
				want = "read=[2] ring=[] fast"
			}
			wantPlan(t, h, 875*ms, want)
			h.m.Observe(h.at(875*ms), []hostmsg.Peer{h.peer(2, tc.ours, true, hostmsg.Payload{})})
			if rd := h.m.Ready(); len(rd.Results) != 1 || rd.Results[0].Targets[0].Outcome != hostmsg.OutcomeUnacked {
				t.Fatalf("results %+v", rd.Results)
			}
			wantPlan(t, h, 875*ms, "read=[] ring=[] fast")
		})
	}
}

// doorbell builds a doorbell holding rings (oldest first) from hosts to
// slots, as ringers would have written it.
func doorbell(epoch uint32, rings ...[2]uint64) *leader.Doorbell {
	var d leader.Doorbell
	for _, r := range rings {
		d.Add(r[0], 1, r[1], epoch, leader.DoorbellCapacity(512))
	}
	return &d
}

// TestPlanReceiver follows what a receiver does with its doorbell: the
// first read is only a baseline; a new ring naming it makes it read the
// ringer's sector at once, and only that; rings for other slots, from
// itself or from impossible host ids are ignored; a bad doorbell is
// counted and ignored; a recreated doorbell or one that lost rings asks
// for one scan, which a read of the area answers.
func TestPlanReceiver(t *testing.T) {
	ms := time.Millisecond
	// Host 50 at 48 doorbells: doorbell 1, slot 1 (mask 0b10).
	h := newPlanHost(t, 50, 48)
	h.m.ObserveArea(h.at(0), nil)
	h.m.ObserveDoorbell(h.at(0), doorbell(7, [2]uint64{3, 0b10}), nil)
	wantPlan(t, h, 0, "read=[] ring=[]")

	d := doorbell(7, [2]uint64{3, 0b10}, [2]uint64{4, 0b01}, [2]uint64{5, 0b10}, [2]uint64{50, 0b10}, [2]uint64{2001, 0b10})
	h.m.ObserveDoorbell(h.at(250*ms), d, nil)
	wantPlan(t, h, 250*ms, "read=[5] ring=[]")
	// The same doorbell again: nothing new.
	h.m.ObserveDoorbell(h.at(500*ms), d, nil)
	wantPlan(t, h, 500*ms, "read=[5] ring=[]")
	// A read of other sectors does not do; the ringer's does.
	h.m.Observe(h.at(501*ms), []hostmsg.Peer{h.peer(4, true, false, hostmsg.Payload{})})
	wantPlan(t, h, 501*ms, "read=[5] ring=[]")
	h.m.Observe(h.at(502*ms), []hostmsg.Peer{h.peer(5, true, false, hostmsg.Payload{})})
	wantPlan(t, h, 502*ms, "read=[] ring=[]")
	if st := h.m.RingStats(); st.RingsReceived != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Bad doorbells: counted, never acted on.
	for _, err := range []error{leader.ErrDoorbell, leader.ErrNotDoorbell} {
		h.m.ObserveDoorbell(h.at(750*ms), nil, err)
	}
	wantPlan(t, h, 750*ms, "read=[] ring=[]")
	if st := h.m.RingStats(); st.BadDoorbell != 2 {
		t.Fatalf("stats %+v", st)
	}

	// Recreated (a new epoch): its rings are new, and what the old one
	// held may be lost: one scan.
	h.m.ObserveDoorbell(h.at(time.Second), doorbell(8, [2]uint64{6, 0b10}), nil)
	wantPlan(t, h, time.Second, "read=[6] ring=[] scan")
	h.m.ObserveArea(h.at(1100*ms), []hostmsg.Peer{h.peer(6, true, false, hostmsg.Payload{})})
	wantPlan(t, h, 1100*ms, "read=[] ring=[]")

	// More rings than the doorbell holds since the last read: one scan.
	full := doorbell(8, [2]uint64{6, 0b10})
	for i := range 40 {
		full.Add(uint64(100+i), 1, 0b01, 8, leader.DoorbellCapacity(512))
	}
	h.m.ObserveDoorbell(h.at(1250*ms), full, nil)
	wantPlan(t, h, 1250*ms, "read=[] ring=[] scan")
	// A read of some sectors is not a scan.
	h.m.Observe(h.at(1300*ms), []hostmsg.Peer{h.peer(6, true, false, hostmsg.Payload{})})
	wantPlan(t, h, 1300*ms, "read=[] ring=[] scan")
	h.m.ObserveArea(h.at(1400*ms), nil)
	wantPlan(t, h, 1400*ms, "read=[] ring=[]")
	// One ringer ringing again and again replaces its own entry: no gap.
	for i := range 40 {
		full.Add(7, 1, 0b10, 8, leader.DoorbellCapacity(512))
		h.m.ObserveDoorbell(h.at(1500*ms+time.Duration(i)*ms), full, nil)
	}
	wantPlan(t, h, 1600*ms, "read=[7] ring=[]")
	if st := h.m.RingStats(); st.Gaps != 2 || st.Scans != 2 || st.RingsReceived != 42 {
		t.Fatalf("stats %+v", st)
	}
}

// TestObservePartial checks the protocol when reads cover some sectors
// only: a read without a peer changes nothing about it (no delivery
// again, no loss, no result), and acks and deliveries come from whichever
// read holds them.
func TestObservePartial(t *testing.T) {
	h := newPlanHost(t, 1, 48)
	idle := hostmsg.Payload{}
	h.m.ObserveArea(h.at(0), []hostmsg.Peer{h.peer(2, true, false, idle), h.peer(3, true, false, idle), h.peer(4, true, false, idle)})
	sendAndWrite(t, h, time.Second, hostmsg.Message{Targets: []uint64{2, 3}, Code: leader.EventUser0})
	h.m.Rang(h.at(time.Second), []uint64{2, 3}, nil)
	// Host 4 sends us a message; seen in a read of host 4 alone.
	msg := hostmsg.Payload{WriteGeneration: leader.EventUser0 << 1, WriteTimestamp: 9,
		Ext: &leader.Extension{Version: leader.ExtVersion, Seq: 1}}
	msg.Bitmap.Set(1)
	h.m.Observe(h.at(1100*time.Millisecond), []hostmsg.Peer{h.peer(4, true, true, msg)})
	rd := h.m.Ready()
	if len(rd.Deliveries) != 1 || rd.Deliveries[0].From != 4 {
		t.Fatalf("deliveries %+v", rd.Deliveries)
	}
	// The listener's queue took it: the driver acks it.
	if err := h.m.Ack(h.at(1100*time.Millisecond), rd.Deliveries[0].ID(), leader.StatusDelivered); err != nil {
		t.Fatal(err)
	}
	// Host 2 acks; read alone. The send waits for host 3.
	ack := hostmsg.Payload{Ext: &leader.Extension{Version: leader.ExtVersion,
		Acks: []leader.Ack{{HostID: 1, Gen16: 1, Status: leader.StatusDelivered, Seq: 1}}}}
	h.m.Observe(h.at(1200*time.Millisecond), []hostmsg.Peer{h.peer(2, true, true, ack)})
	if rd := h.m.Ready(); len(rd.Results) != 0 || len(rd.Deliveries) != 0 {
		t.Fatalf("after host 2's ack: %+v", rd)
	}
	if got := h.plan(1300 * time.Millisecond); got != "read=[3] ring=[] next=1.5s fast" {
		t.Fatalf("plan %s: want only host 3, the target still waited for", got)
	}
	// Reads without host 3, and host 4's message again: nothing happens.
	for i := range 20 {
		at := h.at(1300*time.Millisecond + time.Duration(i)*100*time.Millisecond)
		h.m.Observe(at, []hostmsg.Peer{h.peer(2, true, true, ack), h.peer(4, true, true, msg)})
		if rd := h.m.Ready(); len(rd.Results) != 0 || len(rd.Deliveries) != 0 {
			t.Fatalf("read %d without host 3: %+v", i, rd)
		}
	}
	// Host 3 acks: the send ends, acked by both.
	h.m.Observe(h.at(4*time.Second), []hostmsg.Peer{h.peer(3, true, true, ack)})
	rd = h.m.Ready()
	if len(rd.Results) != 1 || rd.Results[0].Err() != nil || len(rd.Results[0].Targets) != 2 {
		t.Fatalf("results %+v", rd.Results)
	}
	// Our ack to host 4 stands in our payload.
	p, _ := h.m.Payload(h.at(4 * time.Second))
	if !slices.ContainsFunc(p.Ext.Acks, func(a leader.Ack) bool { return a.HostID == 4 && a.Seq == 1 }) {
		t.Fatalf("acks %+v", p.Ext.Acks)
	}
}

// TestPlanHeld: a message left on its sender's disk (no listener yet,
// within the grace after the join; or no listener room) is read again as
// soon as it can be taken, without waiting for a re-ring or a renewal.
func TestPlanHeld(t *testing.T) {
	msg := hostmsg.Payload{WriteGeneration: leader.EventUser0, WriteTimestamp: 9,
		Ext: &leader.Extension{Version: leader.ExtVersion, Seq: 1, Origin: 1}}
	msg.Bitmap.Set(1)

	m, err := hostmsg.New(hostmsg.Config{HostID: 1, Generation: 1, SectorSize: 512, MaxHosts: 2000, Doorbells: 48, RingJitter: -1,
		ListenerGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := &planHost{t: t, m: m, now: time.Unix(1_000_000, 0), ts: map[uint64]uint64{}}
	h.m.Observe(h.at(0), []hostmsg.Peer{h.peer(4, true, true, msg)})
	if rd := h.m.Ready(); len(rd.Deliveries) != 0 || h.m.Stats().HeldBack != 1 {
		t.Fatalf("within the grace: %+v, held %d", rd, h.m.Stats().HeldBack)
	}
	wantPlan(t, h, time.Second, "read=[] ring=[] next=5s")
	wantPlan(t, h, 5*time.Second, "read=[4] ring=[]")

	// Listeners, no room: nothing to read until the room is back.
	h.m.SetListeners(1)
	h.m.SetRoom(0)
	h.m.Observe(h.at(6*time.Second), []hostmsg.Peer{h.peer(4, true, false, msg)})
	if rd := h.m.Ready(); len(rd.Deliveries) != 0 {
		t.Fatalf("no room: %+v", rd)
	}
	wantPlan(t, h, 6*time.Second, "read=[] ring=[]")
	h.m.SetRoom(1)
	wantPlan(t, h, 6*time.Second, "read=[4] ring=[]")
	h.m.Observe(h.at(6*time.Second), []hostmsg.Peer{h.peer(4, true, false, msg)})
	if rd := h.m.Ready(); len(rd.Deliveries) != 1 {
		t.Fatalf("room back: %+v", rd)
	}
}

// TestPlanAckWait: a receiver whose four-entry ack table (512-byte
// sectors) holds acks that their senders still need, and that have not
// been on disk for AckHold (1 s), keeps a fifth sender's ack waiting,
// places it without any further read once the oldest entry may go, and
// then rings that sender's doorbell: the sender's own reading schedule
// may be over by then.
func TestPlanAckWait(t *testing.T) {
	h := newPlanHost(t, 1, 48)
	msg := func(seq uint64) hostmsg.Payload {
		p := hostmsg.Payload{WriteGeneration: uint64(leader.EventUser0), Ext: &leader.Extension{Version: leader.ExtVersion, Seq: seq, Origin: 1}}
		p.Bitmap.Set(1)
		return p
	}
	var peers []hostmsg.Peer
	for id := uint64(2); id <= 6; id++ {
		peers = append(peers, h.peer(id, true, false, hostmsg.Payload{}))
	}
	h.m.ObserveArea(h.at(0), peers)
	// Four senders, then a fifth, each with one message for us.
	peers = peers[:0]
	for id := uint64(2); id <= 5; id++ {
		peers = append(peers, h.peer(id, true, true, msg(1)))
	}
	h.m.Observe(h.at(time.Second), peers)
	ackAll(t, h, time.Second)
	if p, urgent := h.m.Payload(h.at(time.Second)); !urgent || len(p.Ext.Acks) != 4 {
		t.Fatalf("four messages: our payload acks %v (urgent %v), want four", p.Ext.Acks, urgent)
	}
	h.m.Written(h.at(time.Second), nil)
	h.m.Observe(h.at(1200*time.Millisecond), []hostmsg.Peer{h.peer(6, true, true, msg(1))})
	ackAll(t, h, 1200*time.Millisecond)
	if p, _ := h.m.Payload(h.at(1200 * time.Millisecond)); slices.ContainsFunc(p.Ext.Acks, func(a leader.Ack) bool { return a.HostID == 6 }) {
		t.Fatalf("the fifth ack took an entry still needed and on disk for 0.2 s only: %v", p.Ext.Acks)
	}
	if st := h.m.Stats(); st.AckDeferred != 1 {
		t.Fatalf("stats %+v, want one ack deferred", st)
	}
	// It waits until the first entries have been on disk for AckHold.
	wantPlan(t, h, 1200*time.Millisecond, "read=[] ring=[] next=2s fast")
	h.m.Tick(h.at(2 * time.Second))
	p, urgent := h.m.Payload(h.at(2 * time.Second))
	if !urgent || !slices.ContainsFunc(p.Ext.Acks, func(a leader.Ack) bool { return a.HostID == 6 && a.Seq == 1 }) {
		t.Fatalf("at 2 s our payload acks %v (urgent %v), want host 6's seq 1", p.Ext.Acks, urgent)
	}
	wantPlan(t, h, 2*time.Second, "read=[] ring=[] fast")
	h.m.Written(h.at(2*time.Second), nil)
	// On disk: its sender is rung, once.
	wantPlan(t, h, 2*time.Second, "read=[] ring=[6] fast")
	h.m.Rang(h.at(2*time.Second), []uint64{6}, nil)
	wantPlan(t, h, 2*time.Second, "read=[] ring=[] fast")
}

// ackAll acks, as the driver does, every delivery h has ready.
func ackAll(t *testing.T, h *planHost, d time.Duration) {
	t.Helper()
	for _, dl := range h.m.Ready().Deliveries {
		if err := h.m.Ack(h.at(d), dl.ID(), leader.StatusDelivered); err != nil {
			t.Fatal(err)
		}
	}
}
