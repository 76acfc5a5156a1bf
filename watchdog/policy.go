package watchdog

import (
	"fmt"
	"time"
)

// Policy decides when the daemon may feed the watchdog. It is pure: it holds
// no device and reads no clock; time is an argument to Decide. The rule is:
// feed at time t only if no reset is latched and t is before the expiry of
// every lockspace.
//
// A lockspace's expiry is the start of its last successful renewal plus
// renewal_fail (8 × io_timeout). Feeding stops there, so the watchdog fires
// at most W (its timeout) later: by last success + 8 × io_timeout + W, the
// host_dead time after which other hosts treat this host as dead.
//
// The zero Policy is ready to use. A Policy is not safe for concurrent use.
type Policy struct {
	expiry      map[string]time.Time
	reset       bool
	resetReason string
}

// NewPolicy returns a Policy with no lockspaces and no reset.
func NewPolicy() *Policy { return &Policy{} }

// SetExpiry records that lockspace name is healthy until expiry (the start
// of its last successful renewal plus renewal_fail). Feeding stops once
// Decide is asked about a time at or after the expiry of any lockspace. A
// lockspace never given an expiry (one still joining) does not constrain
// feeding; a zero expiry is an expiry in the past, not "none".
func (p *Policy) SetExpiry(name string, expiry time.Time) {
	if p.expiry == nil {
		p.expiry = make(map[string]time.Time)
	}
	p.expiry[name] = expiry
}

// Remove forgets lockspace name: after a clean release it no longer
// constrains feeding.
func (p *Policy) Remove(name string) { delete(p.expiry, name) }

// Reset latches a reset request (a WD_RESET message received, or a reset
// marker found at start): Decide never allows feeding again. The first
// reason is kept; later calls change nothing.
func (p *Policy) Reset(reason string) {
	if p.reset {
		return
	}
	p.reset, p.resetReason = true, reason
}

// Decide reports whether the watchdog may be fed at now and, if not, why.
// When several lockspaces have expired it names the one that expired first
// (ties broken by name).
func (p *Policy) Decide(now time.Time) Decision {
	if p.reset {
		return Decision{Reset: true, ResetReason: p.resetReason}
	}
	var d Decision
	for name, exp := range p.expiry {
		if now.Before(exp) {
			continue
		}
		if d.Lockspace == "" || exp.Before(d.Expiry) || exp.Equal(d.Expiry) && name < d.Lockspace {
			d.Lockspace, d.Expiry = name, exp
		}
	}
	if d.Lockspace == "" {
		d.Feed = true
	}
	return d
}

// Decision is the outcome of Policy.Decide. When Feed is false, exactly one
// of Reset and Lockspace says why.
type Decision struct {
	// Feed reports whether the watchdog may be fed.
	Feed bool
	// Reset reports that a reset is latched; ResetReason is its reason.
	Reset       bool
	ResetReason string
	// Lockspace names the lockspace whose renewals failed, and Expiry is
	// the time it expired (its last successful renewal plus renewal_fail).
	Lockspace string
	Expiry    time.Time
}

// String describes the decision for logs, for example
// `lockspace "ls1" expired at 2024-11-26T17:33:20.000Z (no successful renewal within renewal_fail)`.
func (d Decision) String() string {
	switch {
	case d.Reset:
		return fmt.Sprintf("reset requested: %s", d.ResetReason)
	case !d.Feed:
		return fmt.Sprintf("lockspace %q expired at %s (no successful renewal within renewal_fail)",
			d.Lockspace, d.Expiry.Format("2006-01-02T15:04:05.000Z07:00"))
	}
	return "feeding"
}

// equal reports whether d and e say the same thing.
func (d Decision) equal(e Decision) bool {
	return d.Feed == e.Feed && d.Reset == e.Reset && d.ResetReason == e.ResetReason &&
		d.Lockspace == e.Lockspace && d.Expiry.Equal(e.Expiry)
}
