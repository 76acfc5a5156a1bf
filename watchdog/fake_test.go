package watchdog_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

func TestFakeLineFormat(t *testing.T) {
	f, clk, path := openFake(t, 60*time.Second)
	if err := f.Keepalive(); err != nil {
		t.Fatalf("Keepalive: %v", err)
	}
	clk.Advance(1500 * time.Millisecond)
	got, err := f.SetTimeout(2500 * time.Millisecond)
	if err != nil || got != 3*time.Second {
		t.Fatalf("SetTimeout(2.5s) = %v, %v; want 3s, nil", got, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "open timeout=60 t=1732640000.123\n" +
		"keepalive t=1732640000.123\n" +
		"settimeout 3 t=1732640001.623\n" +
		"close t=1732640001.623\n"
	if string(b) != want {
		t.Errorf("event file:\n%s\nwant:\n%s", b, want)
	}
	if s := f.String(); s != "fake:"+path {
		t.Errorf("String() = %q, want %q", s, "fake:"+path)
	}
}

func TestFakeTimeoutRounding(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		want    string
	}{
		{name: "default", timeout: 0, want: "open timeout=60"},
		{name: "negative", timeout: -time.Second, want: "open timeout=60"},
		{name: "fraction rounds up", timeout: 1500 * time.Millisecond, want: "open timeout=2"},
		{name: "sub-second rounds up to one", timeout: time.Millisecond, want: "open timeout=1"},
		{name: "whole", timeout: 10 * time.Second, want: "open timeout=10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, path := openFake(t, tt.timeout)
			evs := readEvents(t, path)
			if len(evs) != 1 || evs[0].what != tt.want {
				t.Errorf("events = %v, want one %q", evs, tt.want)
			}
		})
	}
}

func TestFakeFiresWhenKeepalivesStop(t *testing.T) {
	f, clk, path := openFake(t, 10*time.Second)
	fired := 0
	f.OnFire = func() { fired++ }

	clk.Advance(5 * time.Second)
	if err := f.Keepalive(); err != nil {
		t.Fatalf("Keepalive: %v", err)
	}
	clk.Advance(10*time.Second - time.Millisecond)
	if n := count(readEvents(t, path), "fire"); n != 0 || fired != 0 {
		t.Fatalf("fired %d times (OnFire %d) 1 ms before the timeout", n, fired)
	}
	clk.Advance(time.Millisecond)
	evs := readEvents(t, path)
	fire, ok := find(evs, "fire")
	if !ok {
		t.Fatalf("no fire at the timeout; events %v", evs)
	}
	if want := t0.Add(15 * time.Second); !fire.at.Equal(want) {
		t.Errorf("fire at t0+%v, want t0+15s", fire.at.Sub(t0))
	}
	if fired != 1 {
		t.Errorf("OnFire called %d times, want 1", fired)
	}

	// The fake is dead now.
	if err := f.Keepalive(); !errors.Is(err, watchdog.ErrFired) {
		t.Errorf("Keepalive after fire = %v, want ErrFired", err)
	}
	if _, err := f.SetTimeout(time.Minute); !errors.Is(err, watchdog.ErrFired) {
		t.Errorf("SetTimeout after fire = %v, want ErrFired", err)
	}
	clk.Advance(time.Hour)
	if err := f.Close(); err != nil {
		t.Errorf("Close after fire: %v", err)
	}
	if err := f.Keepalive(); !errors.Is(err, watchdog.ErrFired) {
		t.Errorf("Keepalive after fire and close = %v, want ErrFired", err)
	}
	after := readEvents(t, path)
	if len(after) != len(evs) || fired != 1 {
		t.Errorf("events after fire: %v (OnFire %d), want nothing more than %v", after, fired, evs)
	}
}

func TestFakeFiresWithoutAnyKeepalive(t *testing.T) {
	_, clk, path := openFake(t, 60*time.Second)
	clk.Advance(time.Minute)
	fire, ok := find(readEvents(t, path), "fire")
	if !ok || !fire.at.Equal(t0.Add(time.Minute)) {
		t.Errorf("fire = %v, %v; want at t0+60s", fire, ok)
	}
}

func TestFakeSetTimeoutRestartsCountdown(t *testing.T) {
	f, clk, path := openFake(t, 60*time.Second)
	clk.Advance(30 * time.Second)
	if _, err := f.SetTimeout(time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	fire, ok := find(readEvents(t, path), "fire")
	if !ok || !fire.at.Equal(t0.Add(31*time.Second)) {
		t.Errorf("fire = %v, %v; want at t0+31s", fire, ok)
	}
	if got := f.Timeout(); got != time.Second {
		t.Errorf("Timeout() = %v, want 1s", got)
	}
}

// TestFakeEnd: Close disarms a Fake; Abandon (its process exits while it
// is armed) says so. Either way it then does nothing more: no fire, no
// OnFire, and later calls fail as closed.
func TestFakeEnd(t *testing.T) {
	tests := []struct {
		name string
		end  func(*watchdog.Fake) error
		want string
	}{
		{"close", (*watchdog.Fake).Close, "close"},
		{"abandon", (*watchdog.Fake).Abandon, "abandon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, clk, path := openFake(t, 10*time.Second)
			f.OnFire = func() { t.Error("OnFire called after the end") }
			clk.Advance(5 * time.Second)
			if err := tt.end(f); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if err := tt.end(f); err != nil {
				t.Errorf("second %s: %v", tt.name, err)
			}
			if err := f.Close(); err != nil {
				t.Errorf("Close after %s: %v", tt.name, err)
			}
			clk.Advance(time.Hour)
			var got []string
			for _, e := range readEvents(t, path) {
				got = append(got, e.what)
			}
			if want := []string{"open timeout=10", tt.want}; !slices.Equal(got, want) {
				t.Errorf("events = %q, want %q", got, want)
			}
			if err := f.Keepalive(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("Keepalive after %s = %v, want os.ErrClosed", tt.name, err)
			}
			if err := f.Keepalive(); err == nil || !strings.HasPrefix(err.Error(), "watchdog: ") {
				t.Errorf("error %q lacks the watchdog: prefix", err)
			}
		})
	}
}

func TestFakesShareAFile(t *testing.T) {
	clk := clock.NewFake(t0)
	path := filepath.Join(t.TempDir(), "wd.log")
	a, err := watchdog.OpenFake(path, 10*time.Second, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := watchdog.OpenFake(path, 20*time.Second, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a.Keepalive()
	b.Keepalive()
	evs := readEvents(t, path)
	if len(evs) != 4 || count(evs, "keepalive") != 2 {
		t.Errorf("events = %v, want two opens and two keepalives", evs)
	}
}

func TestOpenFakeBadPath(t *testing.T) {
	_, err := watchdog.OpenFake(filepath.Join(t.TempDir(), "missing", "wd.log"), time.Minute, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenFake in a missing directory = %v, want os.ErrNotExist", err)
	}
}

func TestFakeBroken(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/wd"
	clk := clock.NewFake(time.Unix(1000, 0))
	dev, err := watchdog.OpenSpec("fake-broken:"+file, 2*time.Second, clk)
	if err != nil {
		t.Fatal(err)
	}
	f := dev.(*watchdog.Fake)
	called := false
	f.OnFire = func() { called = true }
	clk.Advance(3 * time.Second)
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), "broken-fire") || strings.Contains(string(b), "\nfire") || called {
		t.Fatalf("broken fake: called=%v, file:\n%s", called, b)
	}
}
