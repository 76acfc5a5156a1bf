package daemon_test

import (
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// readLog is a device that records the size and time of every read and
// calls onRead after it.
type readLog struct {
	delta.Device
	mu     sync.Mutex
	reads  []timedRead
	onRead func(n int)
}

type timedRead struct {
	at  time.Time
	off int64
	n   int
}

func (d *readLog) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.Device.ReadAt(p, off)
	d.mu.Lock()
	d.reads = append(d.reads, timedRead{time.Now(), off, len(p)})
	f := d.onRead
	d.mu.Unlock()
	if f != nil {
		f(len(p))
	}
	return n, err
}

func (d *readLog) since(t time.Time) []timedRead {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []timedRead
	for _, r := range d.reads {
		if r.at.After(t) {
			out = append(out, r)
		}
	}
	return out
}

// TestDoorbell_deliveredWithoutAreaRead: two daemons on one in-memory
// lockspace. Host 2 (io_timeout 3: a renewal every 6.5 s) has just renewed
// when host 1 sends: the message reaches host 2's listener through its
// doorbell, long before its next renewal, and host 2 read no more than
// single sectors in between (its doorbell, host 1's sector, its own). The
// status of both daemons counts the ring.
func TestDoorbell_deliveredWithoutAreaRead(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	mem := ds.lockspace(t, "img", "LS")
	rl := &readLog{Device: mem}
	ds.add("img-b", rl)
	a := startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-a" })
	b := startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-b" })
	ca, cb := a.dial(t), b.dial(t)
	ctx := ctxT(t, time.Minute)
	if _, err := ca.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.AddLockspace(ctx, "LS:2:img-b:0", callback.AddOptions{IOTimeout: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	waitHostState(t, ca, 2, "LIVE")
	waitHostState(t, cb, 1, "LIVE")
	reg, err := callback.Register(ctx, b.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	for i := range 2 {
		// Send right after host 2's next renewal read.
		renewed := make(chan time.Time, 1)
		rl.mu.Lock()
		rl.onRead = func(n int) {
			if n > 512 {
				select {
				case renewed <- time.Now():
				default:
				}
			}
		}
		rl.mu.Unlock()
		var at time.Time
		select {
		case at = <-renewed:
		case <-time.After(20 * time.Second):
			t.Fatal("host 2 did not renew in 20 s")
		}
		rl.mu.Lock()
		rl.onRead = nil
		rl.mu.Unlock()
		data := uint64(100 + i)
		if _, err := ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventUser0, Data: &data}); err != nil {
			t.Fatal(err)
		}
		rec, err := reg.Next(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := time.Now()
		if rec.FromHostID != 1 || rec.Data != data {
			t.Fatalf("record %+v", rec)
		}
		for _, r := range rl.since(at) {
			if r.n > 512 && r.at.Before(got) {
				t.Fatalf("message %d: host 2 read %d bytes at offset %d %v after its renewal, %v before the delivery",
					i, r.n, r.off, r.at.Sub(at), got.Sub(r.at))
			}
		}
		t.Logf("message %d delivered %v after host 2's renewal read", i, got.Sub(at))
	}
	stB, err := cb.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stA, err := ca.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, da := stB.Lockspaces[0].Doorbell, stA.Lockspaces[0].Doorbell
	if db == nil || da == nil {
		t.Fatalf("no doorbell status: %+v / %+v", stA.Lockspaces[0], stB.Lockspaces[0])
	}
	if db.Index != 1 || db.Polls == 0 || db.RingsReceived < 2 || db.Bad != 0 || db.Foreign != 0 || db.Scans != 0 || db.TargetedReads == 0 {
		t.Errorf("receiver's doorbell status %+v", db)
	}
	if da.Index != 0 || da.RingsWritten < 2 || da.TargetsRung < 2 || da.RingsRefused != 0 || da.RingErrors != 0 {
		t.Errorf("sender's doorbell status %+v", da)
	}
	if p := stB.Lockspaces[0].PollSec; p != 0.25 {
		t.Errorf("receiver's poll interval %vs, want 0.25", p)
	}
}
