//go:build linux && watchdog_hardware

package watchdog_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// TestOpenHardware runs against the real watchdog that
// SANLOCK_MSG_TEST_WATCHDOG names: if the test fails between Open and
// Close, the machine resets. It is built only with -tags
// watchdog_hardware, so that no machine without a watchdog (CI has none)
// has a test that skips:
//
//	SANLOCK_MSG_TEST_WATCHDOG=/dev/watchdog1 go test -tags watchdog_hardware -run Hardware ./watchdog
func TestOpenHardware(t *testing.T) {
	path := os.Getenv("SANLOCK_MSG_TEST_WATCHDOG")
	if path == "" {
		t.Fatal("-tags watchdog_hardware: set SANLOCK_MSG_TEST_WATCHDOG=/dev/watchdogN, the watchdog to test (a failure resets the host)")
	}
	h, err := watchdog.Open(path, 30*time.Second)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	defer h.Close() // safety net: disarm even if the test fails
	t.Logf("%s: identity %q, timeout %v", h, h.Identity(), h.Timeout())

	if h.Timeout() <= 0 {
		t.Errorf("Timeout() = %v after Open", h.Timeout())
	}
	if err := h.Keepalive(); err != nil {
		t.Errorf("Keepalive: %v", err)
	}
	if got, err := h.SetTimeout(20 * time.Second); err != nil || got != h.Timeout() {
		t.Errorf("SetTimeout(20s) = %v, %v; Timeout() = %v", got, err, h.Timeout())
	}
	if h2, err := watchdog.Open(path, 30*time.Second); err == nil {
		h2.Close()
		t.Errorf("second Open(%s) succeeded, want ErrBusy", path)
	} else if !errors.Is(err, watchdog.ErrBusy) {
		t.Errorf("second Open(%s) = %v, want ErrBusy", path, err)
	} else {
		t.Logf("busy: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.Keepalive(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Keepalive after Close = %v, want os.ErrClosed", err)
	}
}
