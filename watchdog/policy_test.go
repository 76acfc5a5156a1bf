package watchdog_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

func TestPolicyDecide(t *testing.T) {
	exp := t0.Add(80 * time.Second)
	tests := []struct {
		name  string
		setup func(p *watchdog.Policy)
		now   time.Time
		want  watchdog.Decision
	}{
		// Feeding.
		{name: "no lockspaces", setup: func(p *watchdog.Policy) {}, now: t0, want: watchdog.Decision{Feed: true}},
		{name: "healthy", setup: func(p *watchdog.Policy) { p.SetExpiry("ls1", exp) }, now: t0, want: watchdog.Decision{Feed: true}},
		{name: "1 ns before expiry", setup: func(p *watchdog.Policy) { p.SetExpiry("ls1", exp) }, now: exp.Add(-1), want: watchdog.Decision{Feed: true}},
		{
			name: "renewal moved expiry on",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("ls1", exp)
				p.SetExpiry("ls1", exp.Add(20*time.Second))
			},
			now:  exp,
			want: watchdog.Decision{Feed: true},
		},
		{
			name: "removed after expiry",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("ls1", exp)
				p.Remove("ls1")
			},
			now:  exp.Add(time.Hour),
			want: watchdog.Decision{Feed: true},
		},
		{name: "remove unknown", setup: func(p *watchdog.Policy) { p.Remove("nope") }, now: t0, want: watchdog.Decision{Feed: true}},

		// Not feeding.
		{name: "at expiry", setup: func(p *watchdog.Policy) { p.SetExpiry("ls1", exp) }, now: exp, want: watchdog.Decision{Lockspace: "ls1", Expiry: exp}},
		{
			name: "one of two expired",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("ls1", exp.Add(time.Minute))
				p.SetExpiry("ls2", exp)
			},
			now:  exp,
			want: watchdog.Decision{Lockspace: "ls2", Expiry: exp},
		},
		{
			name: "earliest of two expired",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("ls1", exp)
				p.SetExpiry("ls2", exp.Add(-time.Second))
			},
			now:  exp.Add(time.Minute),
			want: watchdog.Decision{Lockspace: "ls2", Expiry: exp.Add(-time.Second)},
		},
		{
			name: "tie broken by name",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("b", exp)
				p.SetExpiry("a", exp)
			},
			now:  exp,
			want: watchdog.Decision{Lockspace: "a", Expiry: exp},
		},
		{name: "zero expiry blocks", setup: func(p *watchdog.Policy) { p.SetExpiry("ls1", time.Time{}) }, now: t0, want: watchdog.Decision{Lockspace: "ls1"}},
		{
			name: "reset beats healthy lockspaces",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("ls1", exp)
				p.Reset("WD_RESET from host 2")
			},
			now:  t0,
			want: watchdog.Decision{Reset: true, ResetReason: "WD_RESET from host 2"},
		},
		{
			name: "reset beats expired lockspaces",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("ls1", exp)
				p.Reset("marker")
			},
			now:  exp,
			want: watchdog.Decision{Reset: true, ResetReason: "marker"},
		},
		{
			name: "reset keeps its first reason and survives Remove",
			setup: func(p *watchdog.Policy) {
				p.SetExpiry("ls1", exp)
				p.Reset("first")
				p.Reset("second")
				p.Remove("ls1")
			},
			now:  t0,
			want: watchdog.Decision{Reset: true, ResetReason: "first"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := watchdog.NewPolicy()
			tt.setup(p)
			got := p.Decide(tt.now)
			if got.Feed != tt.want.Feed || got.Reset != tt.want.Reset || got.ResetReason != tt.want.ResetReason ||
				got.Lockspace != tt.want.Lockspace || !got.Expiry.Equal(tt.want.Expiry) {
				t.Errorf("Decide(t0+%v) = %+v, want %+v", tt.now.Sub(t0), got, tt.want)
			}
		})
	}
}

func TestZeroPolicy(t *testing.T) {
	var p watchdog.Policy
	p.Remove("x")
	p.SetExpiry("x", t0)
	if d := p.Decide(t0); d.Feed || d.Lockspace != "x" {
		t.Errorf("zero Policy: Decide = %+v, want lockspace x expired", d)
	}
}

func TestDecisionString(t *testing.T) {
	exp := time.Date(2024, 11, 26, 17, 33, 20, 0, time.UTC)
	tests := []struct {
		name string
		d    watchdog.Decision
		want string
	}{
		{name: "feed", d: watchdog.Decision{Feed: true}, want: "feeding"},
		{name: "reset", d: watchdog.Decision{Reset: true, ResetReason: "WD_RESET from host 3"}, want: "reset requested: WD_RESET from host 3"},
		{name: "expired", d: watchdog.Decision{Lockspace: "ls1", Expiry: exp},
			want: `lockspace "ls1" expired at 2024-11-26T17:33:20.000Z (no successful renewal within renewal_fail)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// host simulates a daemon: a lockspace renewed every 2·io (until renewals
// stop), a policy, and a Fake watchdog fed on every tick the policy allows.
// Everything runs from clock.Fake callbacks, so one Advance plays it out.
type host struct {
	clk         *clock.Fake
	pol         *watchdog.Policy
	dev         *watchdog.Fake
	path        string
	io          time.Duration
	renewUntil  time.Time // renewals up to this time succeed, later ones fail
	lastSuccess time.Time // start of the last successful renewal
}

func newHost(t *testing.T, io, w, tick time.Duration, renewUntil time.Time) *host {
	t.Helper()
	dev, clk, path := openFake(t, w)
	h := &host{clk: clk, pol: watchdog.NewPolicy(), dev: dev, path: path, io: io, renewUntil: renewUntil}
	h.renew()
	var feed func()
	feed = func() {
		if h.pol.Decide(clk.Now()).Feed {
			dev.Keepalive()
		}
		clk.AfterFunc(tick, feed)
	}
	feed()
	return h
}

// renew is one renewal: if it succeeds, the lockspace's expiry moves to its
// start plus renewal_fail (8·io).
func (h *host) renew() {
	now := h.clk.Now()
	if !now.After(h.renewUntil) {
		h.lastSuccess = now
		h.pol.SetExpiry("ls", now.Add(8*h.io))
	}
	h.clk.AfterFunc(2*h.io, h.renew)
}

// fire returns the time the Fake fired.
func (h *host) fire(t *testing.T) (time.Time, bool) {
	t.Helper()
	e, ok := find(readEvents(t, h.path), "fire")
	return e.at, ok
}

func TestFireBetweenRenewalFailAndHostDead(t *testing.T) {
	tests := []struct {
		name       string
		io, w      time.Duration
		tick       time.Duration
		renewUntil time.Duration // after t0; the renewal at t0 always succeeds
	}{
		{name: "io 10 W 60 (host_dead 140)", io: 10 * time.Second, w: 60 * time.Second, tick: time.Second, renewUntil: 0},
		{name: "io 10 W 60 after renewals", io: 10 * time.Second, w: 60 * time.Second, tick: time.Second, renewUntil: 95 * time.Second},
		{name: "io 1 W 60 (host_dead 68)", io: time.Second, w: 60 * time.Second, tick: time.Second, renewUntil: 7 * time.Second},
		{name: "io 10 W 10", io: 10 * time.Second, w: 10 * time.Second, tick: time.Second, renewUntil: 45 * time.Second},
		{name: "tick 500ms", io: 10 * time.Second, w: 60 * time.Second, tick: 500 * time.Millisecond, renewUntil: 30 * time.Second},
		{name: "tick 3s", io: 10 * time.Second, w: 60 * time.Second, tick: 3 * time.Second, renewUntil: 30 * time.Second},
		{name: "io 20 W 60", io: 20 * time.Second, w: 60 * time.Second, tick: time.Second, renewUntil: 100 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, tt.io, tt.w, tt.tick, t0.Add(tt.renewUntil))
			h.clk.Advance(tt.renewUntil + 8*tt.io + tt.w + time.Minute)

			fire, ok := h.fire(t)
			if !ok {
				t.Fatalf("no fire; last keepalive %v", lastKeepalive(t, h.path))
			}
			renewalFail := h.lastSuccess.Add(8 * tt.io)
			hostDead := renewalFail.Add(tt.w)
			if fire.Before(renewalFail) || fire.After(hostDead) {
				t.Errorf("fire at last_success+%v, want within [8·io, 8·io+W] = [%v, %v]",
					fire.Sub(h.lastSuccess), 8*tt.io, 8*tt.io+tt.w)
			}
			// The last keepalive came before the expiry, at most one tick before.
			ka, _ := last(readEvents(t, h.path), "keepalive")
			if !ka.at.Before(renewalFail) || ka.at.Before(renewalFail.Add(-tt.tick)) {
				t.Errorf("last keepalive at last_success+%v, want within one tick (%v) before 8·io (%v)",
					ka.at.Sub(h.lastSuccess), tt.tick, 8*tt.io)
			}
			if !fire.Equal(ka.at.Add(tt.w)) {
				t.Errorf("fire at %v after the last keepalive, want W = %v", fire.Sub(ka.at), tt.w)
			}
		})
	}
}

func TestNoFireWhileRenewalsSucceed(t *testing.T) {
	h := newHost(t, 10*time.Second, 60*time.Second, time.Second, t0.Add(24*time.Hour))
	h.clk.Advance(2 * time.Hour)
	if fire, ok := h.fire(t); ok {
		t.Errorf("fired at t0+%v while renewals succeed", fire.Sub(t0))
	}
}

func TestFireAfterReset(t *testing.T) {
	const w = 60 * time.Second
	h := newHost(t, 10*time.Second, w, time.Second, t0.Add(24*time.Hour))
	h.clk.Advance(30*time.Second + 500*time.Millisecond)
	resetAt := h.clk.Now()
	h.pol.Reset("WD_RESET from host 2")
	h.clk.Advance(2 * w)

	fire, ok := h.fire(t)
	if !ok {
		t.Fatal("no fire after Reset")
	}
	if fire.Before(resetAt) || fire.After(resetAt.Add(w)) {
		t.Errorf("fire at reset+%v, want within [0, W=%v]", fire.Sub(resetAt), w)
	}
	if ka, _ := last(readEvents(t, h.path), "keepalive"); ka.at.After(resetAt) {
		t.Errorf("keepalive at reset+%v, after the reset", ka.at.Sub(resetAt))
	}
}

func TestRemoveLetsFeedingResume(t *testing.T) {
	const w = 60 * time.Second
	h := newHost(t, 10*time.Second, w, time.Second, t0) // only the first renewal succeeds
	h.clk.Advance(84500 * time.Millisecond)             // expired at 80
	h.pol.Remove("ls")
	h.clk.Advance(time.Hour)

	evs := readEvents(t, h.path)
	if fire, ok := find(evs, "fire"); ok {
		t.Fatalf("fired at t0+%v after Remove", fire.at.Sub(t0))
	}
	// Keepalives stopped at 80 and resumed at the first tick after Remove.
	var gaps []string
	prev := t0
	for _, e := range evs {
		if e.what != "keepalive" {
			continue
		}
		if gap := e.at.Sub(prev); gap > time.Second {
			gaps = append(gaps, fmt.Sprintf("%v..%v", prev.Sub(t0), e.at.Sub(t0)))
		}
		prev = e.at
	}
	if want := "1m19s..1m25s"; strings.Join(gaps, ",") != want {
		t.Errorf("gaps in keepalives %v, want %s", gaps, want)
	}
}

// lastKeepalive describes the last keepalive in the Fake's file, for
// failure messages.
func lastKeepalive(t *testing.T, path string) string {
	t.Helper()
	ka, ok := last(readEvents(t, path), "keepalive")
	if !ok {
		return "none"
	}
	return fmt.Sprintf("at t0+%v", ka.at.Sub(t0))
}
