package watchdog

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
)

// DefaultInterval is the Keeper's feeding interval when NewKeeper is given
// an interval <= 0.
const DefaultInterval = time.Second

// Keeper owns a Device and feeds it every interval for as long as its Policy
// allows. It is safe for concurrent use.
//
// Each tick runs from a Clock callback (with clock.Real, a short-lived
// goroutine; with clock.Fake, inside Advance, which makes tests
// deterministic). Ticks never overlap: a tick, SetExpiry, Remove, ResetNow
// and Stop all hold one mutex, so a slow device call delays them by at most
// that call.
//
// The Keeper logs each change of its decision (feeding started, feeding
// stopped and exactly why), device errors when they start and stop, resets
// and shutdown; it does not log individual keepalives.
type Keeper struct {
	dev      Device
	clk      clock.Clock
	interval time.Duration
	log      *slog.Logger

	mu        sync.Mutex // guards the fields below and serializes device calls
	pol       *Policy
	stopTimer func() bool
	started   bool
	stopped   bool
	stopErr   error
	last      Decision // last decision acted on; valid when decided
	decided   bool
	devError  bool      // the last keepalive failed
	lastFed   time.Time // time of the last successful keepalive
}

// NewKeeper returns a Keeper that feeds dev every interval (DefaultInterval if
// interval <= 0) while pol allows. The interval must be well below the
// device's timeout. The Keeper takes over pol: use the Keeper's methods,
// not pol's, from now on. A nil clk means clock.Real; a nil log discards
// logs. Call Start to begin feeding.
func NewKeeper(dev Device, pol *Policy, clk clock.Clock, interval time.Duration, log *slog.Logger) *Keeper {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if pol == nil {
		pol = NewPolicy()
	}
	return &Keeper{
		dev:      dev,
		clk:      orRealClock(clk),
		interval: interval,
		log:      log.With("watchdog", dev.String()),
		pol:      pol,
	}
}

// Start feeds the device at once, if the policy allows, and then every
// interval until Stop. Calling Start again, or after Stop, does nothing.
func (k *Keeper) Start() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.started || k.stopped {
		return
	}
	k.started = true
	k.log.Info("watchdog keeper started", "timeout", k.dev.Timeout(), "interval", k.interval)
	k.tickLocked()
}

// SetExpiry records that lockspace name is healthy until expiry; see
// Policy.SetExpiry. It takes effect at the next tick.
func (k *Keeper) SetExpiry(name string, expiry time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pol.SetExpiry(name, expiry)
}

// Remove forgets lockspace name after a clean release; see Policy.Remove.
func (k *Keeper) Remove(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pol.Remove(name)
}

// Status returns the policy's decision for the current time.
func (k *Keeper) Status() Decision {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pol.Decide(k.clk.Now())
}

// ResetNow latches a reset: once it returns, the Keeper never feeds the
// device again (and neither will a restarted daemon, if the caller has
// written a marker with WriteMarker first). The host then resets within the
// device's timeout of the last keepalive.
//
// To reset sooner, call the returned fireSoon: it sets the device's timeout
// to one second, which (on Linux) also restarts the countdown, so the
// watchdog fires about a second later. The split lets the daemon first write
// its "resetting" acknowledgement to disk, then call fireSoon. fireSoon is
// idempotent and safe to call from any goroutine, even after Stop.
func (k *Keeper) ResetNow(reason string) (fireSoon func()) {
	k.mu.Lock()
	if d := k.pol.Decide(k.clk.Now()); d.Reset {
		k.log.Warn("watchdog reset requested again", "reason", reason, "first_reason", d.ResetReason)
	} else {
		k.pol.Reset(reason)
		k.log.Warn("watchdog reset requested; feeding stops now", "reason", reason)
		k.noteLocked(k.pol.Decide(k.clk.Now()))
	}
	k.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			k.mu.Lock()
			defer k.mu.Unlock()
			got, err := k.dev.SetTimeout(MinTimeout)
			if err != nil {
				k.log.Error("watchdog: cannot shorten the timeout; the host resets when the current timeout expires",
					"timeout", k.dev.Timeout(), "err", err)
				return
			}
			k.log.Warn("watchdog timeout shortened; the host resets now", "timeout", got, "reason", reason)
		})
	}
}

// Stop stops feeding and waits for a running tick to finish; afterwards the
// Keeper makes no device calls (except a later fireSoon). Stop is idempotent
// and returns the first call's result.
//
// With disarm, Stop closes the device with the magic close, so the host does
// not reset, but only if the policy still allows feeding: call Remove for
// each cleanly released lockspace first. If a reset is latched or a
// lockspace has expired, Stop leaves the device armed, so the host still
// resets, and returns an error wrapping ErrNoDisarm.
//
// Without disarm, Stop leaves the device open and armed: the host resets
// within its timeout unless something else feeds or closes it.
func (k *Keeper) Stop(disarm bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return k.stopErr
	}
	k.stopped = true
	if k.stopTimer != nil {
		k.stopTimer()
	}
	d := k.pol.Decide(k.clk.Now())
	switch {
	case !disarm:
		k.log.Warn("watchdog keeper stopped; device left armed, the host resets unless it is fed", "timeout", k.dev.Timeout())
	case !d.Feed:
		k.stopErr = fmt.Errorf("watchdog: %s: not disarming: %s: %w", k.dev, d, ErrNoDisarm)
		k.log.Error("watchdog keeper stopped; device left armed because feeding is stopped, the host resets", "reason", d.String())
	default:
		if err := k.dev.Close(); err != nil {
			k.stopErr = err
			k.log.Error("watchdog keeper stopped; disarming failed, the host may reset", "err", err)
		} else {
			k.log.Info("watchdog keeper stopped; device disarmed")
		}
	}
	return k.stopErr
}

// tick is the timer callback.
func (k *Keeper) tick() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	k.tickLocked()
}

// tickLocked feeds the device if the policy allows and schedules the next
// tick.
func (k *Keeper) tickLocked() {
	d := k.pol.Decide(k.clk.Now())
	k.noteLocked(d)
	if d.Feed {
		err := k.dev.Keepalive()
		switch {
		case err != nil && !k.devError:
			k.log.Error("watchdog keepalive failed; the host resets if this persists", "timeout", k.dev.Timeout(), "err", err)
		case err == nil && k.devError:
			k.log.Info("watchdog keepalive works again")
		}
		k.devError = err != nil
		if err == nil {
			k.lastFed = k.clk.Now()
		}
	}
	k.stopTimer = k.clk.AfterFunc(k.interval, k.tick)
}

// noteLocked logs d if it differs from the last decision.
func (k *Keeper) noteLocked(d Decision) {
	if k.decided && d.equal(k.last) {
		return
	}
	first := !k.decided
	k.last, k.decided = d, true
	switch {
	case d.Feed && first:
		k.log.Info("watchdog feeding")
	case d.Feed:
		k.log.Info("watchdog feeding resumed")
	case k.lastFed.IsZero():
		k.log.Error("watchdog feeding stopped; the host resets when the watchdog fires",
			"reason", d.String(), "timeout", k.dev.Timeout())
	default:
		k.log.Error("watchdog feeding stopped; the host resets when the watchdog fires",
			"reason", d.String(), "timeout", k.dev.Timeout(),
			"last_keepalive", k.lastFed, "fires_by", k.lastFed.Add(k.dev.Timeout()))
	}
}
