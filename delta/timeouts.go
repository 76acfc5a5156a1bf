package delta

import (
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Defaults of sanlock 3.8 (sanlock-format.md §4.0).
const (
	// DefaultIOTimeout is sanlock's default io_timeout.
	DefaultIOTimeout = 10 * time.Second
	// DefaultWatchdogTimeout is the watchdog fire timeout W, the same on
	// every host of a lockspace.
	DefaultWatchdogTimeout = 60 * time.Second
	// InitIOTimeout bounds the single large write of Init, as sanlock's
	// direct init does.
	InitIOTimeout = 60 * time.Second
)

// Timeouts derives every delta-lease timeout from one io_timeout and the
// watchdog fire timeout, with sanlock's formulas. Use Other for the timeouts
// toward another host, which come from the io_timeout in its record.
type Timeouts struct {
	IO       time.Duration // io_timeout of the host the timeouts apply to
	Watchdog time.Duration // W: watchdog fire timeout
}

// NewTimeouts returns the timeouts for io and W, applying sanlock's defaults
// to zero values.
func NewTimeouts(io, w time.Duration) Timeouts {
	if io <= 0 {
		io = DefaultIOTimeout
	}
	if w <= 0 {
		w = DefaultWatchdogTimeout
	}
	return Timeouts{IO: io, Watchdog: w}
}

// Other returns the timeouts toward a host whose record says ioSec; a zero
// ioSec keeps t's own io_timeout, as sanlock does.
func (t Timeouts) Other(ioSec uint16) Timeouts {
	if ioSec == 0 {
		return t
	}
	return Timeouts{IO: time.Duration(ioSec) * time.Second, Watchdog: t.Watchdog}
}

// Of returns the timeouts toward the owner of sector s: its io_timeout from
// its record (Other), and the watchdog timeout its sanlock-msg extension
// states, if any. A plain sanlock host states none, and sanlock assumes one
// W for every host, so t's own W is kept for it.
func (t Timeouts) Of(s *leader.Sector) Timeouts {
	o := t.Other(s.Record.IOTimeout)
	if s.Ext != nil && s.Ext.Watchdog > 0 {
		o.Watchdog = time.Duration(s.Ext.Watchdog) * time.Second
	}
	return o
}

// IDRenewal is the renewal interval: 2·io.
func (t Timeouts) IDRenewal() time.Duration { return 2 * t.IO }

// RenewalInterval is when a renewal actually happens after the previous
// successful one: sanlock checks once a second whether 2·io has passed and
// then sleeps half a second, which averages 2·io + 0.5 s. Keeping the same
// cadence keeps our idle write rate equal to sanlock's.
func (t Timeouts) RenewalInterval() time.Duration { return 2*t.IO + 500*time.Millisecond }

// RenewalWarn is how long without a successful renewal before a warning: 6·io.
func (t Timeouts) RenewalWarn() time.Duration { return 6 * t.IO }

// RenewalFail is how long without a successful renewal before the
// lockspace fails and the watchdog stops being fed: 8·io.
func (t Timeouts) RenewalFail() time.Duration { return 8 * t.IO }

// HostFail is how long a peer may go unchanged before it is FAIL: 8·io of
// that peer.
func (t Timeouts) HostFail() time.Duration { return 8 * t.IO }

// HostDead is how long a peer may go unchanged before it is DEAD: its
// renewal_fail plus the watchdog fire timeout, 8·io + W. By then its
// watchdog has reset it.
func (t Timeouts) HostDead() time.Duration { return 8*t.IO + t.Watchdog }

// SetBitmap is how long sanlock keeps an event bit set: 6·io.
func (t Timeouts) SetBitmap() time.Duration { return 6 * t.IO }

// LargeDelay is delta_large_delay: 2·io + 6·io.
func (t Timeouts) LargeDelay() time.Duration { return 8 * t.IO }

// ShortDelay is the wait between the acquire write and its verify read: 2·io.
func (t Timeouts) ShortDelay() time.Duration { return 2 * t.IO }

// AcquireWait is how long acquire watches a held lease for a change before
// taking it: max(host_dead, large_delay), with t the previous owner's
// timeouts.
func (t Timeouts) AcquireWait() time.Duration { return max(t.HostDead(), t.LargeDelay()) }

// FenceComplete is the longest time from a WD_RESET being accepted until
// peers may consider the host gone: the watchdog fires at most W after the
// last keepalive (the reset path shortens this), and peers see it DEAD
// host_dead after its last renewal.
func (t Timeouts) FenceComplete() time.Duration { return t.HostDead() + t.IDRenewal() }
