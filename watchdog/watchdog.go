package watchdog

import (
	"errors"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
)

// DefaultTimeout is the watchdog fire timeout used when a caller passes a
// timeout <= 0. It is sanlock's W: 60 seconds, the same on every host.
const DefaultTimeout = 60 * time.Second

// MinTimeout is the shortest timeout a device accepts; shorter requests are
// rounded up to it.
const MinTimeout = time.Second

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrNotWatchdog means the path given to Open is not a watchdog device.
	ErrNotWatchdog = errors.New("watchdog: not a watchdog device")
	// ErrBusy means the watchdog device is already open by another program
	// (Linux watchdog devices are single-open).
	ErrBusy = errors.New("watchdog: device busy")
	// ErrFired means a Fake device has fired; it accepts no more keepalives.
	ErrFired = errors.New("watchdog: fake watchdog has fired")
	// ErrNoDisarm means Keeper.Stop was asked to disarm the device while
	// feeding is stopped (a reset is pending or a lockspace has expired); the
	// device was left armed so the host still resets.
	ErrNoDisarm = errors.New("watchdog: refusing to disarm while feeding is stopped")
)

// Device is a watchdog timer. Once opened it is armed: unless Keepalive is
// called at least once per Timeout, it fires and (for a real device) resets
// the machine.
//
// The implementations in this package are safe for concurrent use.
type Device interface {
	// Keepalive pets the watchdog (WDIOC_KEEPALIVE), restarting its
	// countdown.
	Keepalive() error
	// SetTimeout sets the fire timeout (WDIOC_SETTIMEOUT) in whole seconds,
	// rounding d up, with a minimum of one second, and returns the timeout
	// the driver accepted, which may differ from d. On Linux this also
	// restarts the countdown.
	SetTimeout(d time.Duration) (time.Duration, error)
	// Timeout reports the current fire timeout.
	Timeout() time.Duration
	// Close disarms the watchdog with the magic 'V' write and closes it. It
	// always closes the device, even if the write fails. Close is
	// idempotent.
	Close() error
	// String names the device for logs: "/dev/watchdog", "fake:/tmp/x",
	// "none".
	String() string
}

// Compile-time checks that the package's devices implement Device.
var (
	_ Device = (*Hardware)(nil)
	_ Device = (*Fake)(nil)
	_ Device = None{}
)

// roundTimeout converts d to the whole seconds a watchdog driver takes:
// rounded up, at least one.
func roundTimeout(d time.Duration) int {
	if d < MinTimeout {
		return 1
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	return int(s)
}

// orDefault returns d, or DefaultTimeout if d <= 0.
func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTimeout
	}
	return d
}

// detailError is an error with a hand-written message that matches both a
// package sentinel and the underlying cause with errors.Is.
type detailError struct {
	msg      string
	sentinel error
	cause    error
}

func (e *detailError) Error() string { return e.msg }

func (e *detailError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.cause}
}

// orRealClock returns c, or the real clock if c is nil.
func orRealClock(c clock.Clock) clock.Clock {
	if c == nil {
		return clock.Real{}
	}
	return c
}
