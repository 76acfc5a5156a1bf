package testimg

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WatchdogEvent is one line of a fake watchdog's event file (a daemon run
// with --watchdog fake:FILE; see watchdog.Fake).
type WatchdogEvent struct {
	// What is the line without its " t=..." stamp: "open timeout=60",
	// "keepalive", "settimeout 1", "close", "fire", "broken-fire" or
	// "abandon" (the daemon exited leaving it armed).
	What string
	// At is the stamp, to the millisecond.
	At time.Time
}

// ReadWatchdog parses the event file of a fake watchdog; a malformed line
// fails the test.
func ReadWatchdog(t testing.TB, path string) []WatchdogEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("testimg: %v", err)
	}
	var evs []WatchdogEvent
	for line := range strings.Lines(string(b)) {
		what, stamp, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " t=")
		secs, err := strconv.ParseFloat(stamp, 64)
		if !ok || err != nil {
			t.Fatalf("testimg: watchdog file %s: bad line %q", path, line)
		}
		evs = append(evs, WatchdogEvent{What: what, At: time.UnixMilli(int64(secs*1000 + 0.5))})
	}
	return evs
}

// FindWatchdog returns the first of evs that is exactly what, and whether
// there is one.
func FindWatchdog(evs []WatchdogEvent, what string) (WatchdogEvent, bool) {
	for _, e := range evs {
		if e.What == what {
			return e, true
		}
	}
	return WatchdogEvent{}, false
}
