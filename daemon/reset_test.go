package daemon_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// The watchdog side of the daemon, on in-process daemons sharing in-memory
// lockspaces at io_timeout 1: the fake watchdogs log to files and a fire
// makes Run return watchdog.ErrFired, the simulated reset.

// withFakeWatchdog returns a Config mutator giving a daemon a fake
// watchdog with timeout w, and the fake's event file.
func withFakeWatchdog(t *testing.T, w time.Duration) (func(*daemon.Config), string) {
	path := filepath.Join(t.TempDir(), "wd")
	return func(c *daemon.Config) { c.Watchdog, c.WatchdogTimeout = "fake:"+path, w }, path
}

// join adds host id to lockspace LS on path at io_timeout 1.
func join(t *testing.T, c *callback.Client, id, path string) {
	t.Helper()
	if _, err := c.AddLockspace(ctxT(t, time.Minute), "LS:"+id+":"+path+":0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
}

// fired waits up to d for td's Run to return the simulated reset.
func fired(t *testing.T, td *testDaemon, d time.Duration) {
	t.Helper()
	select {
	case <-td.done:
		if !errors.Is(td.runErr, watchdog.ErrFired) {
			t.Fatalf("Run returned %v, want ErrFired", td.runErr)
		}
	case <-time.After(d):
		t.Fatalf("the fake watchdog did not fire within %v", d)
	}
}

// onlyKeepalives checks that a watchdog was only opened and fed, and fed
// at least every gap.
func onlyKeepalives(t *testing.T, who string, evs []testimg.WatchdogEvent, gap time.Duration) {
	t.Helper()
	for i, e := range evs {
		switch {
		case i == 0 && strings.HasPrefix(e.What, "open "):
		case i > 0 && e.What == "keepalive":
			if g := e.At.Sub(evs[i-1].At); g > gap {
				t.Errorf("%s watchdog: %v between keepalives, want at most %v", who, g, gap)
			}
		default:
			t.Errorf("%s watchdog: %q at %d; want an open, then only keepalives: %v", who, e.What, i, evs)
			return
		}
	}
}

// TestReset_fire: a WD_RESET from host 1 is acked "resetting"; host 2
// writes its reset marker, replies RESETTING, stops feeding, sets a 1 s
// timeout once the ack is on disk and fires; host 1 keeps feeding.
func TestReset_fire(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	wdA, fileA := withFakeWatchdog(t, 60*time.Second)
	wdB, fileB := withFakeWatchdog(t, 60*time.Second)
	a, b := startDaemon(t, ds, wdA), startDaemon(t, ds, wdB)
	ca, cb := a.dial(t), b.dial(t)
	join(t, ca, "1", "img")
	join(t, cb, "2", "img")
	waitHostState(t, ca, 2, "LIVE")
	ctx := ctxT(t, time.Minute)
	reg, err := callback.Register(ctx, a.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	start := time.Now()
	rep, err := ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: leader.EventReset, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if tg := rep.Targets; !rep.OK || len(tg) != 1 || tg[0].Outcome != "acked" || tg[0].Status != "resetting" || tg[0].Generation != 1 {
		t.Fatalf("send reply %+v, want host 2 generation 1 acked resetting", rep)
	}
	fired(t, b, 5*time.Second)
	t.Logf("send to fire: %v", time.Since(start))

	evs := testimg.ReadWatchdog(t, fileB)
	set, okSet := testimg.FindWatchdog(evs, "settimeout 1")
	fire, okFire := testimg.FindWatchdog(evs, "fire")
	if !okSet || !okFire || evs[len(evs)-1] != fire {
		t.Fatalf("host 2 watchdog: %v; want settimeout 1, and fire last", evs)
	}
	if d := fire.At.Sub(set.At); d < 900*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("fire %v after settimeout 1, want about 1 s", d)
	}
	for _, e := range evs {
		if e.What == "keepalive" && e.At.After(set.At) {
			t.Errorf("host 2 fed after the reset: %v", evs)
		}
	}
	reason, ok, err := watchdog.ReadMarker(b.dir)
	if !ok || err != nil || !strings.Contains(reason, "WD_RESET from host 1 generation 1") {
		t.Errorf("reset marker %q, %v, %v; want one naming host 1 generation 1", reason, ok, err)
	}

	rec, err := reg.Next(ctxT(t, 5*time.Second))
	if err != nil || rec.FromHostID != 2 || rec.FromGeneration != 1 || rec.Code != leader.EventResetting || rec.Native || rec.Status != "delivered" {
		t.Errorf("host 1 got %+v, %v; want the RESETTING reply from host 2 generation 1, delivered", rec, err)
	}
	time.Sleep(2 * time.Second)
	evsA := testimg.ReadWatchdog(t, fileA)
	onlyKeepalives(t, "host 1", evsA, 1500*time.Millisecond)
	if last := evsA[len(evsA)-1].At; last.Before(fire.At.Add(time.Second)) {
		t.Errorf("host 1's last keepalive at %v, before the fire + 1 s", last)
	}
}

// writeNative writes a sanlock-native sender into host id 3's sector of
// dev: an event with code, target generation tgen and a bit for each of
// bits, at timestamp ts.
func writeNative(t *testing.T, dev *delta.MemDevice, ts, tgen, code uint64, bits ...uint64) {
	t.Helper()
	const off = 2 * 512
	s, err := leader.DecodeSector(dev.Bytes(off, 512))
	if err != nil {
		t.Fatal(err)
	}
	r := &s.Record
	r.OwnerID, r.OwnerGeneration, r.Timestamp, r.IOTimeout = 3, 1, ts, 1
	r.WriteID, r.WriteGeneration, r.WriteTimestamp = tgen, code, 0
	if err := leader.SetName(&r.ResourceName, "native-3", leader.MaxHostName); err != nil {
		t.Fatal(err)
	}
	r.Seal()
	s.Bitmap, s.Ext = leader.Bitmap{}, nil
	for _, h := range bits {
		s.Bitmap.Set(h)
	}
	b := make([]byte, 512)
	if err := s.Encode(b); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestReset_notForUs: a RESET event naming another generation of host 2,
// or addressed to another host, never touches host 2's watchdog; the same
// event for host 2's generation fires it. The sender is a sanlock-native
// host 3 written straight onto the device, as sanlk-reset's set_event
// would have sanlock write it.
func TestReset_notForUs(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	dev := ds.lockspace(t, "img", "LS")
	wd, file := withFakeWatchdog(t, 60*time.Second)
	b := startDaemon(t, ds, wd)
	cb := b.dial(t)
	join(t, cb, "2", "img")
	reg, err := callback.Register(ctxT(t, time.Minute), b.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	writeNative(t, dev, 100, 7, leader.EventReset, 2) // host 2 is at generation 1
	deadline := time.Now().Add(10 * time.Second)
	for messages(t, cb).WrongGeneration == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("host 2 did not count the reset for generation 7: %+v", messages(t, cb))
		}
		time.Sleep(50 * time.Millisecond)
	}
	writeNative(t, dev, 101, 0, leader.EventReset, 1, 4) // hosts 1 and 4, not 2
	deadline = time.Now().Add(10 * time.Second)
	for {
		hosts, err := cb.HostStatus(ctxT(t, 10*time.Second), "LS")
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(hosts, func(h callback.HostStatus) bool { return h.HostID == 3 && h.Timestamp == 101 }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host 2 did not read host 3's second event: %+v", hosts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // a few more polls

	noRecord(t, reg, 100*time.Millisecond)
	st, err := cb.Status(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Lockspaces[0].Messages; !st.Watchdog.Feeding || st.Watchdog.Reset || m.Resetting || m.NativeDelivered != 0 {
		t.Errorf("watchdog %+v, messages %+v; want feeding, no reset, nothing delivered", st.Watchdog, m)
	}
	onlyKeepalives(t, "host 2", testimg.ReadWatchdog(t, file), 1500*time.Millisecond)
	if _, ok, _ := watchdog.ReadMarker(b.dir); ok {
		t.Error("host 2 wrote a reset marker")
	}

	// The same event for generation 1 (0, "any", would do too).
	writeNative(t, dev, 102, 1, leader.EventReset, 2)
	rec, err := reg.Next(ctxT(t, 10*time.Second))
	if err != nil || rec.FromHostID != 3 || !rec.Native || rec.Code != leader.EventReset || rec.Status != "resetting" {
		t.Errorf("record %+v, %v; want the native RESET from host 3, status resetting", rec, err)
	}
	fired(t, b, 5*time.Second)
	if _, ok := testimg.FindWatchdog(testimg.ReadWatchdog(t, file), "settimeout 1"); !ok {
		t.Errorf("host 2's watchdog fired without the 1 s timeout: %v", testimg.ReadWatchdog(t, file))
	}
}

// TestReset_renewalFailure: a host whose storage fails stops feeding at
// renewal_fail (8 s after its last successful renewal) and its watchdog
// fires W after the last keepalive: host_dead after the last renewal, the
// time by which peers consider it dead. Before the failure it feeds every
// W/4 (here W = 2 s).
func TestReset_renewalFailure(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	fd := delta.NewFaultDevice(ds.lockspace(t, "img", "LS"))
	ds.add("img", fd)
	const w = 2 * time.Second
	wd, file := withFakeWatchdog(t, w)
	td := startDaemon(t, ds, wd)
	c := td.dial(t)
	join(t, c, "1", "img")
	// Fail every I/O right after a renewal, so its start is known to
	// within the poll.
	var failed time.Time
	deadline := time.Now().Add(10 * time.Second)
	for failed.IsZero() {
		ls := waitState(t, c, "LS", callback.StateJoined)
		if ls.LastRenewalAge < 0.2 {
			failed = time.Now().Add(-time.Duration(ls.LastRenewalAge * float64(time.Second)))
			fd.Inject(delta.Fault{Kind: delta.FaultEIO})
		} else if time.Now().After(deadline) {
			t.Fatalf("no renewal seen: %+v", ls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fired(t, td, 8*time.Second+w+5*time.Second)

	evs := testimg.ReadWatchdog(t, file)
	fire := evs[len(evs)-1]
	if fire.What != "fire" {
		t.Fatalf("watchdog: %v; want a fire last", evs)
	}
	onlyKeepalives(t, "the failing host", evs[:len(evs)-1], w/4+300*time.Millisecond)
	lastFed := evs[len(evs)-2].At
	if d := fire.At.Sub(lastFed); d < w-100*time.Millisecond || d > w+300*time.Millisecond {
		t.Errorf("fire %v after the last keepalive, want W = %v", d, w)
	}
	// The last keepalive is before renewal_fail, within one feeding
	// interval of it.
	stop := lastFed.Sub(failed)
	t.Logf("last renewal → last keepalive %v, → fire %v (renewal_fail 8s, W %v)", stop, fire.At.Sub(failed), w)
	if stop > 8*time.Second || stop < 8*time.Second-w/4-500*time.Millisecond {
		t.Errorf("last keepalive %v after the last renewal, want just before renewal_fail (8 s)", stop)
	}
}
