package watchdog_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// t0 is the start of every fake clock in these tests.
var t0 = time.Unix(1732640000, 123e6)

// event is one parsed line of a Fake's event file.
type event struct {
	what string    // the line without its " t=..." suffix
	at   time.Time // the t= stamp
}

// readEvents parses a Fake's event file.
func readEvents(t *testing.T, path string) []event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	var evs []event
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		what, stamp, ok := strings.Cut(line, " t=")
		if !ok {
			t.Fatalf("event line %q has no t= stamp", line)
		}
		secs, err := strconv.ParseFloat(stamp, 64)
		if err != nil {
			t.Fatalf("event line %q: bad stamp: %v", line, err)
		}
		ms := int64(secs*1000 + 0.5)
		evs = append(evs, event{what: what, at: time.UnixMilli(ms)})
	}
	return evs
}

// count returns how many events are exactly what.
func count(evs []event, what string) int {
	n := 0
	for _, e := range evs {
		if e.what == what {
			n++
		}
	}
	return n
}

// find returns the first event that is exactly what.
func find(evs []event, what string) (event, bool) {
	for _, e := range evs {
		if e.what == what {
			return e, true
		}
	}
	return event{}, false
}

// last returns the last event that is exactly what.
func last(evs []event, what string) (event, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].what == what {
			return evs[i], true
		}
	}
	return event{}, false
}

// openFake opens a Fake in a temporary directory on a new clock.Fake at t0.
func openFake(t *testing.T, timeout time.Duration) (*watchdog.Fake, *clock.Fake, string) {
	t.Helper()
	clk := clock.NewFake(t0)
	path := filepath.Join(t.TempDir(), "wd.log")
	f, err := watchdog.OpenFake(path, timeout, clk)
	if err != nil {
		t.Fatalf("OpenFake: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f, clk, path
}
