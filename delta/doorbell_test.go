package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// bellOff returns the offset of host id's doorbell on the net's device.
func (n *lsNet) bellOff(id uint64) int64 { return n.geo.DoorbellOffset(n.geo.DoorbellIndex(id)) }

// bell decodes host id's doorbell as it is on the device now.
func (n *lsNet) bell(id uint64) (leader.Doorbell, error) {
	return leader.DecodeDoorbell(n.dev.Bytes(n.bellOff(id), n.geo.SectorSize))
}

// TestLockspacePlannedReads checks that the loop reads what the Plan asks
// for between renewals, and only that: nearby host ids in one I/O, far
// ones apart, at most maxRuns I/Os per turn; at Plan.Next; a scan of the
// used area when the budget allows it.
func TestLockspacePlannedReads(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	m := &fakeMessenger{}
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m}, false)
	n.edit(40, func(s *leader.Sector) bool {
		s.Record.OwnerID, s.Record.OwnerGeneration, s.Record.Timestamp = 40, 1, 77
		return true
	})
	n.runFor(3 * time.Second) // a renewal: the used part is now 1..48
	rens := a.renewalEvents()
	at := rens[len(rens)-1].at.Add(time.Second + 10*time.Millisecond)
	n.runUntil(n.since(at))
	m.set(func(m *fakeMessenger) { m.plan = Plan{Read: []uint64{2, 5, 30}} })
	a.wakeLoop()
	n.runFor(time.Millisecond)
	got := a.log.ops("read", at, n.clk.Now())
	want := []string{"off 512 len 2048", "off 14848 len 512"} // 2..5 in one, 30 alone
	if s := readsString(got); s != fmt.Sprint(want) {
		t.Fatalf("planned reads %s, want %v", s, want)
	}
	m.mu.Lock()
	last := m.observes[len(m.observes)-1]
	m.mu.Unlock()
	if fmt.Sprint(last.ids) != "[2 3 4 5 30]" || last.area {
		t.Fatalf("observed %+v", last)
	}

	// More runs than maxRuns: the rest in the next turn, minTurn later.
	at = n.clk.Now()
	var many []uint64
	for id := uint64(2); id <= 2+10*(maxRuns+2); id += 10 {
		many = append(many, id)
	}
	m.set(func(m *fakeMessenger) { m.plan = Plan{Read: many} })
	a.wakeLoop()
	n.runFor(time.Millisecond)
	if got := a.log.ops("read", at, n.clk.Now()); len(got) != maxRuns {
		t.Fatalf("first turn: %d reads, want %d", len(got), maxRuns)
	}
	n.runFor(minTurn)
	if got := a.log.ops("read", at, n.clk.Now()); len(got) != len(many) {
		t.Fatalf("after minTurn: %d reads, want %d:\n%s", len(got), len(many), fmtRecs(got))
	}

	// Plan.Next wakes the loop.
	at = n.clk.Now()
	wake := at.Add(70 * time.Millisecond)
	m.set(func(m *fakeMessenger) { m.plan = Plan{Next: wake} })
	a.wakeLoop()
	n.runFor(time.Millisecond)
	m.set(func(m *fakeMessenger) { m.plan.Read = []uint64{7} })
	n.runFor(100 * time.Millisecond)
	if got := a.log.ops("read", at, n.clk.Now()); len(got) != 1 || !got[0].at.Equal(wake) || got[0].off != 6*512 {
		t.Fatalf("reads after a plan for %v:\n%s", n.since(wake), fmtRecs(got))
	}

	// A scan: the used area (1..48) between renewals, once.
	at = n.clk.Now()
	m.set(func(m *fakeMessenger) { m.plan = Plan{Scan: true} })
	a.wakeLoop()
	n.runFor(time.Millisecond)
	if got := a.log.ops("read", at, n.clk.Now()); readsString(got) != "[off 0 len 24576]" {
		t.Fatalf("scan reads %s", readsString(got))
	}
	m.mu.Lock()
	last = m.observes[len(m.observes)-1]
	m.mu.Unlock()
	if !last.area || last.full || len(last.ids) != 48 {
		t.Fatalf("scan observed as %+v", last)
	}
	if st := a.ls.Status(); st.Doorbell.Scans != 1 || st.Doorbell.TargetedReads != int64(2+len(many)+1) {
		t.Errorf("status %+v", st.Doorbell)
	}
	checkWrites(t, a)
}

func readsString(rs []ioRec) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("off %d len %d", r.off, r.n))
	}
	return fmt.Sprint(s)
}

// TestLockspaceScanBudget: on a full area (2000 hosts at io_timeout 10)
// renewals and doorbell polls use all of sanlock's read rate, so a scan or
// a planned read as big as the used area waits for the next renewal,
// which reads the used area anyway.
func TestLockspaceScanBudget(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 10*time.Second)
	n.edit(2000, func(s *leader.Sector) bool {
		s.Record.OwnerID, s.Record.OwnerGeneration, s.Record.Timestamp = 2000, 1, 77
		return true
	})
	m := &fakeMessenger{}
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 10 * time.Second, Messenger: m}, false)
	ri := a.ls.Timeouts().RenewalInterval()
	n.runFor(ri)
	rens := a.renewalEvents()
	next := rens[len(rens)-1].at.Add(ri)
	at := n.clk.Now()
	var half []uint64
	for id := uint64(2); id < 2000; id += 2 {
		half = append(half, id)
	}
	for _, p := range []Plan{{Scan: true}, {Read: half}} {
		m.set(func(m *fakeMessenger) { m.plan = p })
		a.wakeLoop()
		n.runUntil(n.since(next.Add(-time.Millisecond)))
		for _, r := range a.log.ops("read", at, n.clk.Now()) {
			if r.n > 512 {
				t.Fatalf("plan %+v: a %d-byte read at %v, before the renewal at %v", p, r.n, n.since(r.at), n.since(next))
			}
		}
		n.runFor(time.Millisecond)
		m.mu.Lock()
		last := m.observes[len(m.observes)-1]
		left := len(m.plan.Read) > 0 || m.plan.Scan
		m.mu.Unlock()
		if !last.at.Equal(next) || !last.area || left {
			t.Fatalf("plan %+v: last read %+v at %v, renewal at %v; plan left %v", p, last, n.since(last.at), n.since(next), left)
		}
		at, next = n.clk.Now().Add(time.Nanosecond), next.Add(ri)
	}
	checkBudget(t, a, a.joinEnd, n.clk.Now())
}

// TestLockspaceRings checks rings: targets sharing a doorbell are rung in
// one read-modify-write with both bits; a sector that is not a doorbell
// is never written; a torn or corrupt doorbell is recreated with an epoch
// from Config.Rand; a torn ring write is reported and the next ring
// recreates the doorbell. No write ever lands outside our sector and the
// spare sectors.
func TestLockspaceRings(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	m := &fakeMessenger{}
	rnd := bytes.NewReader([]byte{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m, Rand: rnd}, true)
	n.runFor(time.Second)
	ring := func(targets ...uint64) rang {
		t.Helper()
		m.set(func(m *fakeMessenger) { m.plan = Plan{Ring: targets} })
		a.wakeLoop()
		n.runFor(time.Millisecond)
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(m.plan.Ring) != 0 {
			t.Fatalf("ring %v: %v not reported", targets, m.plan.Ring)
		}
		return m.rang[len(m.rang)-1]
	}

	// Hosts 2 and 50 share doorbell 1 (slots 0 and 1).
	if r := ring(2, 50); r.err != nil || fmt.Sprint(r.targets) != "[2 50]" {
		t.Fatalf("Rang %+v", r)
	}
	db, err := n.bell(2)
	if err != nil || db.Epoch != 0x04030201 || db.Counter != 1 || len(db.Rings) != 1 ||
		db.Rings[0] != (leader.Ring{From: 1, FromGen: 1, Counter: 1, Mask: 0b11}) {
		t.Fatalf("doorbell of host 2: %+v, %v", db, err)
	}
	if st := a.ls.Status().Doorbell; st.RingsWritten != 1 {
		t.Fatalf("status %+v", st)
	}

	// Not a doorbell (a sanlock magic in bytes 0..3): never written.
	foreign := make([]byte, 512)
	copy(foreign, []byte{0x10, 0x20, 0x21, 0x12, 9, 9, 9})
	n.dev.Poke(n.bellOff(3), foreign)
	if r := ring(3); !errors.Is(r.err, leader.ErrNotDoorbell) {
		t.Fatalf("ring of a foreign sector: %v", r.err)
	}
	if !bytes.Equal(n.dev.Bytes(n.bellOff(3), 512), foreign) {
		t.Fatal("a foreign sector was written over")
	}

	// Corrupt: recreated with the next epoch from Rand.
	b4, _ := n.bell(4)
	b4.Add(9, 1, 1, 77, 30)
	buf := make([]byte, 512)
	if err := b4.Encode(buf); err != nil {
		t.Fatal(err)
	}
	buf[100] ^= 1
	n.dev.Poke(n.bellOff(4), buf)
	if r := ring(4); r.err != nil {
		t.Fatalf("ring of a corrupt doorbell: %v", r.err)
	}
	if db, err := n.bell(4); err != nil || db.Epoch != 0x08070605 || len(db.Rings) != 1 || db.Rings[0].From != 1 {
		t.Fatalf("recreated doorbell %+v, %v", db, err)
	}

	// A torn ring write (of a fresh doorbell, epoch 0x0c0b0a09): reported;
	// the next ring recreates the doorbell.
	a.fd.Inject(Fault{Kind: FaultTorn, Op: "write", Off: n.bellOff(5), End: n.bellOff(5) + 512, Bytes: 40, Count: 1})
	if r := ring(5); !errors.Is(r.err, syscall.EIO) {
		t.Fatalf("torn ring: %v", r.err)
	}
	if _, err := n.bell(5); !errors.Is(err, leader.ErrDoorbell) {
		t.Fatalf("after a torn ring the doorbell decodes with %v", err)
	}
	if r := ring(5); r.err != nil {
		t.Fatal(r.err)
	}
	if db, err := n.bell(5); err != nil || db.Epoch != 0x100f0e0d {
		t.Fatalf("doorbell after a torn ring and a retry: %+v, %v", db, err)
	}
	if st := a.ls.Status().Doorbell; st.RingsWritten != 3 || st.RingsRefused != 1 || st.Recreated != 2 || st.RingErrors != 1 {
		t.Fatalf("status %+v", st)
	}
	checkWrites(t, a)
}

// TestLockspaceStuckRing hangs a ring write: our renewals go on (a stuck
// doorbell write does not hold up writes of our sector), further rings
// are skipped while it is outstanding, and resume once it returns. A stuck
// write of our own sector still blocks our writes (TestLockspaceHungWrite).
func TestLockspaceStuckRing(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	m := &fakeMessenger{}
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m}, true)
	n.runFor(3 * time.Second)
	spare := int64(2000 * 512)
	a.fd.Inject(Fault{Kind: FaultHang, Op: "write", Off: spare, End: spare + 48*512, Count: 1})
	hungAt := n.clk.Now()
	m.set(func(m *fakeMessenger) { m.plan = Plan{Ring: []uint64{2}} })
	a.wakeLoop()
	n.runWhile(func() bool { return a.fd.Hung() == 0 })
	n.runFor(10 * time.Second)
	m.set(func(m *fakeMessenger) { m.plan = Plan{Ring: []uint64{3}} })
	a.wakeLoop()
	n.runFor(time.Second)
	m.mu.Lock()
	rs := slices.Clone(m.rang)
	m.mu.Unlock()
	if len(rs) != 2 || !errors.Is(rs[0].err, ErrIOTimeout) || !errors.Is(rs[1].err, ErrRingSkipped) {
		t.Fatalf("rings while a doorbell write hangs: %+v", rs)
	}
	if err := a.ls.Err(); err != nil {
		t.Fatal(err)
	}
	ws := a.ownWrites(hungAt.Add(2*time.Second), n.clk.Now())
	if len(ws) < 4 {
		t.Fatalf("renewals stopped while a ring write hung:\n%s", fmtRecs(ws))
	}
	for _, w := range ws {
		if w.err != nil {
			t.Fatalf("renewal failed: %v", w.err)
		}
	}
	a.releaseHung()
	m.set(func(m *fakeMessenger) { m.plan = Plan{Ring: []uint64{3}} })
	a.wakeLoop()
	n.runFor(time.Millisecond)
	m.mu.Lock()
	last := m.rang[len(m.rang)-1]
	m.mu.Unlock()
	if last.err != nil {
		t.Fatalf("ring after the hung write returned: %v", last.err)
	}
	if st := a.ls.Status(); st.Health != HealthOK || st.Doorbell.RingErrors != 2 {
		t.Fatalf("status %+v", st)
	}
	checkWrites(t, a)
}

// TestLockspaceBadDoorbell: our own doorbell torn, corrupt or foreign is
// shown to the Messenger as an error (never as rings) and counted; it is
// not ours to repair, and nothing else happens.
func TestLockspaceBadDoorbell(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	m := &fakeMessenger{}
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m}, false)
	n.runFor(time.Second)
	var d leader.Doorbell
	d.Add(2, 1, 1, 5, 30)
	good := make([]byte, 512)
	if err := d.Encode(good); err != nil {
		t.Fatal(err)
	}
	torn := slices.Clone(good)
	torn[40] ^= 0xff
	foreign := slices.Clone(good)
	foreign[0] = 1
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{{"good", good, nil}, {"torn", torn, leader.ErrDoorbell}, {"foreign", foreign, leader.ErrNotDoorbell}} {
		m.set(func(m *fakeMessenger) { m.doorbells = nil })
		n.dev.Poke(n.bellOff(1), tc.b)
		n.runFor(time.Second)
		m.mu.Lock()
		got := slices.Clone(m.doorbells)
		m.mu.Unlock()
		if len(got) < 3 {
			t.Fatalf("%s: %d polls in 1 s", tc.name, len(got))
		}
		for _, err := range got {
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("%s: Doorbell(%v), want %v", tc.name, err, tc.want)
			}
		}
	}
	st := a.ls.Status().Doorbell
	if st.Bad < 3 || st.Foreign < 3 || st.Polls < 9 || st.PollErrors != 0 {
		t.Fatalf("status %+v", st)
	}
	if !bytes.Equal(n.dev.Bytes(n.bellOff(1), 512), foreign) {
		t.Fatal("our doorbell was written")
	}
	checkWrites(t, a)
}

// TestWriteDoorbellOnlySpare: writeDoorbell panics, before any I/O, for an
// index outside the spare sectors or a buffer that is not a doorbell.
func TestWriteDoorbellOnlySpare(t *testing.T) {
	n := newLSNet(t, 4096, leader.MiB, 1*time.Second)
	ls, err := Start(context.Background(), NewIO(n.dev, n.clk), Config{Name: "LS", HostID: 1, IOTimeout: time.Second, Clock: n.clk})
	if err != nil {
		t.Fatal(err)
	}
	before := n.dev.Bytes(0, leader.MiB)
	zero := make([]byte, 4096)
	notBell := make([]byte, 4096)
	notBell[2] = 1
	for _, tc := range []struct {
		i   int
		buf []byte
	}{{-1, zero}, {6, zero}, {-250, zero}, {0, notBell}, {0, make([]byte, 512)}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("writeDoorbell(%d, %d bytes) did not panic", tc.i, len(tc.buf))
				}
			}()
			_ = ls.writeDoorbell(context.Background(), tc.i, tc.buf)
		}()
	}
	if !bytes.Equal(n.dev.Bytes(0, leader.MiB), before) {
		t.Fatal("the device changed")
	}
	if err := ls.writeDoorbell(context.Background(), 5, zero); err != nil {
		t.Fatalf("the last spare sector: %v", err)
	}
}
