package testimg_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// TestReadWatchdog reads what a real fake watchdog writes.
func TestReadWatchdog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wd")
	before := time.Now().Truncate(time.Millisecond)
	f, err := watchdog.OpenFake(path, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Keepalive()
	f.SetTimeout(time.Second)
	f.Close()
	evs := testimg.ReadWatchdog(t, path)
	var got []string
	for _, e := range evs {
		got = append(got, e.What)
		if e.At.Before(before) || e.At.After(time.Now()) {
			t.Errorf("%q stamped %v, want between %v and now", e.What, e.At, before)
		}
	}
	want := []string{"open timeout=5", "keepalive", "settimeout 1", "close"}
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d is %q, want %q", i, got[i], want[i])
		}
	}
	if e, ok := testimg.FindWatchdog(evs, "settimeout 1"); !ok || e != evs[2] {
		t.Errorf("FindWatchdog(settimeout 1) = %v, %v; want %v", e, ok, evs[2])
	}
	if _, ok := testimg.FindWatchdog(evs, "fire"); ok {
		t.Error("FindWatchdog found a fire")
	}
}
