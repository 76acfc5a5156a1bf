package watchdog

import "time"

// None is the absent watchdog ("--watchdog none"): every operation is a
// no-op that succeeds. A host running with None is not fenced: if its
// lockspace renewals fail or it is asked to reset, nothing resets it.
type None struct{}

// Keepalive does nothing.
func (None) Keepalive() error { return nil }

// SetTimeout does nothing and reports a zero timeout.
func (None) SetTimeout(time.Duration) (time.Duration, error) { return 0, nil }

// Timeout reports zero: there is no timeout.
func (None) Timeout() time.Duration { return 0 }

// Close does nothing.
func (None) Close() error { return nil }

// String returns "none".
func (None) String() string { return "none" }
