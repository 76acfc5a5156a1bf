package watchdog_test

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// newKeeper returns a started Keeper feeding a Fake with timeout w every
// second on a clock.Fake at t0, and its captured log.
func newKeeper(t *testing.T, w time.Duration, setup func(k *watchdog.Keeper)) (*watchdog.Keeper, *clock.Fake, string, *testimg.SyncBuffer) {
	t.Helper()
	dev, clk, path := openFake(t, w)
	logs := &testimg.SyncBuffer{}
	k := watchdog.NewKeeper(dev, watchdog.NewPolicy(), clk, time.Second, slog.New(slog.NewTextHandler(logs, nil)))
	if setup != nil {
		setup(k)
	}
	k.Start()
	t.Cleanup(func() { k.Stop(false) })
	return k, clk, path, logs
}

// keepaliveTimes returns the offsets from t0 of the keepalives in path.
func keepaliveTimes(t *testing.T, path string) []time.Duration {
	t.Helper()
	var ds []time.Duration
	for _, e := range readEvents(t, path) {
		if e.what == "keepalive" {
			ds = append(ds, e.at.Sub(t0))
		}
	}
	return ds
}

func TestKeeperFeedsUntilExpiry(t *testing.T) {
	k, clk, path, logs := newKeeper(t, time.Minute, func(k *watchdog.Keeper) {
		k.SetExpiry("ls1", t0.Add(10*time.Second))
	})
	clk.Advance(10 * time.Second)
	kas := keepaliveTimes(t, path)
	if len(kas) != 10 || kas[0] != 0 || kas[9] != 9*time.Second {
		t.Errorf("keepalives at %v, want every second from 0s to 9s", kas)
	}
	if d := k.Status(); d.Feed || d.Lockspace != "ls1" {
		t.Errorf("Status() = %+v, want lockspace ls1 expired", d)
	}

	clk.Advance(2 * time.Minute)
	fire, ok := find(readEvents(t, path), "fire")
	if want := t0.Add(69 * time.Second); !ok || !fire.at.Equal(want) {
		t.Errorf("fire = %v, %v; want at t0+69s (last keepalive + W)", fire, ok)
	}

	log := logs.String()
	if n := strings.Count(log, "feeding stopped"); n != 1 {
		t.Errorf("logged %q %d times, want once:\n%s", "feeding stopped", n, log)
	}
	if !strings.Contains(log, `lockspace \"ls1\" expired at`) {
		t.Errorf("log does not say which lockspace expired:\n%s", log)
	}
	if n := strings.Count(log, "\n"); n > 4 {
		t.Errorf("%d log lines, want a few (no per-keepalive logging):\n%s", n, log)
	}
}

func TestKeeperRenewalsKeepFeeding(t *testing.T) {
	k, clk, path, logs := newKeeper(t, time.Minute, nil)
	for range 100 {
		// A renewal every 20 s (io_timeout 10) moves the expiry to its start + 80 s.
		k.SetExpiry("ls1", clk.Now().Add(80*time.Second))
		clk.Advance(20 * time.Second)
	}
	if n := count(readEvents(t, path), "fire"); n != 0 {
		t.Errorf("fired while renewals succeed")
	}
	if strings.Contains(logs.String(), "stopped") {
		t.Errorf("unexpected log:\n%s", logs)
	}
}

func TestKeeperResetNow(t *testing.T) {
	k, clk, path, logs := newKeeper(t, time.Minute, nil)
	clk.Advance(5 * time.Second)
	fireSoon := k.ResetNow("WD_RESET from host 2")
	clk.Advance(2 * time.Second) // the daemon writes its ack meanwhile

	if kas := keepaliveTimes(t, path); kas[len(kas)-1] != 5*time.Second {
		t.Errorf("keepalives at %v, want none after the reset at 5s", kas)
	}
	fireSoon()
	fireSoon()
	clk.Advance(time.Minute)

	evs := readEvents(t, path)
	st, ok := find(evs, "settimeout 1")
	if !ok || !st.at.Equal(t0.Add(7*time.Second)) || count(evs, "settimeout 1") != 1 {
		t.Errorf("events %v, want one settimeout 1 at t0+7s", evs)
	}
	fire, ok := find(evs, "fire")
	if !ok || !fire.at.Equal(t0.Add(8*time.Second)) {
		t.Errorf("fire = %v, %v; want at t0+8s", fire, ok)
	}
	if d := k.Status(); !d.Reset || d.ResetReason != "WD_RESET from host 2" {
		t.Errorf("Status() = %+v, want the reset", d)
	}
	log := logs.String()
	for _, want := range []string{"reset requested", "feeding stopped", "WD_RESET from host 2", "timeout shortened"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestKeeperResetWithoutFireSoon(t *testing.T) {
	k, clk, path, _ := newKeeper(t, time.Minute, nil)
	clk.Advance(3500 * time.Millisecond)
	k.ResetNow("test")
	clk.Advance(2 * time.Minute)
	fire, ok := find(readEvents(t, path), "fire")
	if !ok || !fire.at.Equal(t0.Add(63*time.Second)) {
		t.Errorf("fire = %v, %v; want at t0+63s (last keepalive at 3s + W)", fire, ok)
	}
}

func TestKeeperStop(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(k *watchdog.Keeper)
		disarm    bool
		wantErr   error
		wantClose bool
		wantFire  time.Duration // after t0; 0 = no fire
	}{
		// The host survives.
		{name: "disarm while healthy", disarm: true, wantClose: true},
		{
			name:      "disarm after clean release",
			setup:     func(k *watchdog.Keeper) { k.SetExpiry("ls1", t0.Add(2*time.Second)); k.Remove("ls1") },
			disarm:    true,
			wantClose: true,
		},

		// The host resets.
		{name: "no disarm", disarm: false, wantFire: 63 * time.Second},
		{
			name:     "disarm refused after reset",
			setup:    func(k *watchdog.Keeper) { k.ResetNow("test") },
			disarm:   true,
			wantErr:  watchdog.ErrNoDisarm,
			wantFire: 60 * time.Second,
		},
		{
			name:     "disarm refused after expiry",
			setup:    func(k *watchdog.Keeper) { k.SetExpiry("ls1", t0.Add(2*time.Second)) },
			disarm:   true,
			wantErr:  watchdog.ErrNoDisarm,
			wantFire: 61 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, clk, path, _ := newKeeper(t, time.Minute, tt.setup)
			clk.Advance(3500 * time.Millisecond)
			err := k.Stop(tt.disarm)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("Stop(%v) = %v, want %v", tt.disarm, err, tt.wantErr)
			}
			if err2 := k.Stop(true); !errors.Is(err2, tt.wantErr) || (err2 == nil) != (tt.wantErr == nil) {
				t.Errorf("second Stop = %v, want the first result %v", err2, err)
			}
			k.Start() // no effect after Stop
			clk.Advance(5 * time.Minute)

			evs := readEvents(t, path)
			if got := count(evs, "close") == 1; got != tt.wantClose {
				t.Errorf("closed = %v, want %v; events %v", got, tt.wantClose, evs)
			}
			if kas := keepaliveTimes(t, path); len(kas) > 0 && kas[len(kas)-1] > 3500*time.Millisecond {
				t.Errorf("keepalives at %v, after Stop at 3.5s", kas)
			}
			fire, fired := find(evs, "fire")
			switch {
			case tt.wantFire == 0 && fired:
				t.Errorf("fired at t0+%v, want no fire", fire.at.Sub(t0))
			case tt.wantFire != 0 && (!fired || fire.at.Sub(t0) != tt.wantFire):
				t.Errorf("fire = %v, %v; want at t0+%v", fire, fired, tt.wantFire)
			}
		})
	}
}

// flakyDevice is a Device whose keepalives fail while fail is set.
type flakyDevice struct {
	mu         sync.Mutex
	fail       bool
	keepalives int
	closed     bool
	fed        chan struct{} // if not nil, gets a value per keepalive, without blocking
}

func (d *flakyDevice) Keepalive() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail {
		return errors.New("watchdog: flaky: EIO")
	}
	d.keepalives++
	if d.fed != nil {
		select {
		case d.fed <- struct{}{}:
		default:
		}
	}
	return nil
}

func (d *flakyDevice) SetTimeout(t time.Duration) (time.Duration, error) { return t, nil }
func (d *flakyDevice) Timeout() time.Duration                            { return time.Minute }
func (d *flakyDevice) String() string                                    { return "flaky" }

func (d *flakyDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

func (d *flakyDevice) setFail(fail bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = fail
}

func TestKeeperLogsKeepaliveErrorsOnce(t *testing.T) {
	dev := &flakyDevice{}
	clk := clock.NewFake(t0)
	logs := &testimg.SyncBuffer{}
	k := watchdog.NewKeeper(dev, nil, clk, 0, slog.New(slog.NewTextHandler(logs, nil)))
	k.Start()
	defer k.Stop(true)

	clk.Advance(3 * time.Second)
	dev.setFail(true)
	clk.Advance(10 * time.Second)
	dev.setFail(false)
	clk.Advance(3 * time.Second)

	log := logs.String()
	if n := strings.Count(log, "keepalive failed"); n != 1 {
		t.Errorf("logged the failure %d times, want once:\n%s", n, log)
	}
	if n := strings.Count(log, "keepalive works again"); n != 1 {
		t.Errorf("logged the recovery %d times, want once:\n%s", n, log)
	}
	if dev.keepalives != 7 { // 0..3 s, then 14..16 s
		t.Errorf("%d successful keepalives, want 7", dev.keepalives)
	}
}

func TestKeeperRealClock(t *testing.T) {
	dev := &flakyDevice{fed: make(chan struct{})}
	k := watchdog.NewKeeper(dev, nil, nil, time.Millisecond, nil)
	k.Start()
	for range 3 {
		select {
		case <-dev.fed:
		case <-time.After(10 * time.Second):
			t.Fatal("the Keeper did not feed within 10 s")
		}
	}
	if err := k.Stop(true); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if !dev.closed {
		t.Error("Stop(true) did not close the device")
	}
}
