package delta

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// checkRenewals checks the host's own-sector writes in [from, to): the
// first at first, then one every RenewalInterval, with strictly increasing
// timestamps. It returns the writes.
func checkRenewals(t *testing.T, h *lsHost, first time.Time, to time.Time) []ioRec {
	t.Helper()
	ri := h.ls.Timeouts().RenewalInterval()
	ws := h.ownWrites(first, to)
	if len(ws) == 0 {
		t.Fatalf("%s: no writes", h.name)
	}
	for i, w := range ws {
		if want := first.Add(time.Duration(i) * ri); !w.at.Equal(want) {
			t.Fatalf("%s: write %d at %v, want %v (every %v)\n%s", h.name, i, h.net.since(w.at), h.net.since(want), ri, fmtRecs(ws[:i+1]))
		}
		if w.err != nil {
			t.Fatalf("%s: write %d failed: %v", h.name, i, w.err)
		}
		if i > 0 && w.rec.Timestamp <= ws[i-1].rec.Timestamp {
			t.Fatalf("%s: timestamp %d after %d", h.name, w.rec.Timestamp, ws[i-1].rec.Timestamp)
		}
	}
	return ws
}

// checkReads checks the host's reads of the used part of the area after
// its join: every one starts at host 1, at a renewal (the first one at
// least), and covers the whole area every FullScanEvery renewals, starting
// with the first, and host ids 1..partial otherwise. Reads of single
// sectors (doorbell polls, planned reads) are not checked here.
func checkReads(t *testing.T, h *lsHost, renewalTimes []time.Time, to time.Time, partial uint64) {
	t.Helper()
	n := h.net
	full := n.geo.MaxHosts * n.geo.SectorSize
	part := int(partial) * n.geo.SectorSize
	renewal := map[time.Time]int{}
	for i, at := range renewalTimes {
		renewal[at] = i + 1
	}
	var reads []ioRec
	for _, r := range h.hostReads(to) {
		if r.n >= part {
			reads = append(reads, r)
		}
	}
	if len(reads) == 0 {
		t.Fatalf("%s: no reads", h.name)
	}
	for i, r := range reads {
		want := part
		k, ok := renewal[r.at]
		if !ok && i > 0 {
			t.Fatalf("%s: read %d (%v) of %d bytes is not at a renewal", h.name, i, n.since(r.at), r.n)
		}
		if i == 0 || (ok && (k-1)%h.cfg.FullScanEvery == 0) {
			want = full
		}
		if r.off != 0 || r.n != want {
			t.Fatalf("%s: read %d (%v) covers %d bytes at %d, want %d at 0", h.name, i, n.since(r.at), r.n, r.off, want)
		}
	}
}

// checkBudget checks that the host read and wrote no more than a sanlock
// host renewing on the same schedule: the whole area and one sector every
// RenewalInterval (plus one of each for the window's edges).
func checkBudget(t *testing.T, h *lsHost, from, to time.Time) {
	t.Helper()
	var rd, wr int
	for _, r := range h.log.ops("", from, to) {
		if r.op == "read" {
			rd += r.n
		} else {
			wr += r.n
		}
	}
	span := to.Sub(from)
	periods := int(span/h.ls.Timeouts().RenewalInterval()) + 1
	area := h.net.geo.AlignSize
	if maxRd := periods * area; rd > maxRd {
		t.Errorf("%s: read %d bytes in %v (%.0f B/s); sanlock reads %d (%.0f B/s)", h.name, rd, span,
			float64(rd)/span.Seconds(), maxRd, float64(area)/h.ls.Timeouts().RenewalInterval().Seconds())
	}
	if maxWr := periods * h.net.geo.SectorSize; wr > maxWr {
		t.Errorf("%s: wrote %d bytes in %v; sanlock writes %d", h.name, wr, span, maxWr)
	}
}

// TestLockspaceTwoHosts joins hosts with io_timeout 1 and 10 and lets them
// renew for 2000 s of simulated time.
func TestLockspaceTwoHosts(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	a := n.startJoin(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, TimestampBase: 1000}, false)
	// Beta, at io_timeout 10, renews every 20.5 s, but alpha is FAIL after
	// 8 s unchanged: beta's loop reads alpha's sector every 4 s between
	// its renewals so that it never sees alpha FAIL while alpha renews
	// (only a loop with a Messenger runs between renewals).
	b := n.startJoin(Config{HostID: 2, HostName: "beta", IOTimeout: 10 * time.Second, TimestampBase: 90000, Messenger: &fakeMessenger{}}, false)
	n.runWhile(func() bool { return a.joining || b.joining })
	for _, h := range []*lsHost{a, b} {
		if h.joinErr != nil {
			t.Fatal(h.joinErr)
		}
		// A free sector is taken after 2·io_o, the io_timeout Init wrote.
		if d := h.joinEnd.Sub(h.joinStart); d != 2*time.Second {
			t.Errorf("%s joined in %v, want 2s", h.name, d)
		}
		if g := h.ls.Generation(); g != 1 {
			t.Errorf("%s generation %d", h.name, g)
		}
	}
	dur := 2000 * time.Second // 800 renewals of alpha, about 16000 reads in all
	if testing.Short() {
		dur = 300 * time.Second
	}
	for at := n.now() + 100*time.Second; at <= dur; at += 100 * time.Second {
		n.runUntil(at)
		if st := a.ls.Host(2).State; st != StateLive {
			t.Fatalf("at %v alpha sees beta %v", n.now(), st)
		}
		if st := b.ls.Host(1).State; st != StateLive {
			t.Fatalf("at %v beta sees alpha %v", n.now(), st)
		}
		if st := a.ls.Host(1).State; st != StateLive {
			t.Fatalf("at %v alpha sees itself %v", n.now(), st)
		}
	}
	end := n.clk.Now()
	for _, h := range []*lsHost{a, b} {
		ws := checkRenewals(t, h, h.joinStart, end)
		var times []time.Time
		for _, w := range ws[1:] { // ws[0] is the acquire write
			times = append(times, w.at)
		}
		checkReads(t, h, times, end, 2+uint64(h.cfg.PollMargin))
		checkBudget(t, h, h.joinEnd, end)
		st := h.ls.Status()
		if st.Health != HealthOK || st.Err != nil || st.Renewals != int64(len(ws)-1) || st.RenewFails != 0 {
			t.Errorf("%s status %+v", h.name, st)
		}
		full := (st.Renewals + 3) / 4
		if h.cfg.Messenger != nil {
			full++ // its first turn, right after the join
		}
		if st.Writes != int64(len(ws)-1) || st.FullScans != full {
			t.Errorf("%s: %d writes, %d full scans after %d renewals", h.name, st.Writes, st.FullScans, st.Renewals)
		}
		t.Logf("%s: %d renewals, %d reads, poll every %v", h.name, st.Renewals, st.Reads, st.PollEvery)
	}
	// Beta read alpha's sector alone every 4 s (half alpha's host_fail).
	var alone []time.Time
	for _, r := range b.hostReads(end) {
		if r.off == 0 && r.n == 512 {
			alone = append(alone, r.at)
		}
	}
	if span := end.Sub(b.joinEnd); len(alone) < int(span/(4*time.Second))*9/10 || len(alone) > int(span/(4*time.Second))+1 {
		t.Errorf("beta read alpha's sector alone %d times in %v, want one every 4 s", len(alone), span)
	}
	// Timestamps are the owner's seconds since its join plus its base.
	last := a.ls.Status().LastRenewal
	if ts, want := n.sector(1).Record.Timestamp, 1000+uint64(last.Sub(a.joinStart)/time.Second); ts != want {
		t.Errorf("alpha's timestamp %d after renewing at %v, want %d", ts, n.since(last), want)
	}
	hs := a.ls.Hosts()
	if len(hs) != 2 || hs[0].HostID != 1 || hs[1].HostID != 2 || hs[1].Name != "beta" || hs[1].Generation != 1 || !hs[1].Messenger {
		t.Errorf("alpha's hosts %+v", hs)
	}
}

// budgetCase is one geometry, io_timeout and set of joined host ids for
// the read budget tests.
type budgetCase struct {
	ss, align int
	io        time.Duration
	highest   uint64 // joined: 1, 2 and highest
}

func (c budgetCase) String() string {
	return fmt.Sprintf("%d-%s/io%v/hosts%d", c.ss, leader.AlignString(c.align), c.io, c.highest)
}

// budgetCases are every geometry of the issue at 2, 16, 250 and max_hosts
// host ids (sparse: 1, 2 and the highest), io_timeout 1 and 10.
func budgetCases() []budgetCase {
	var cs []budgetCase
	for _, geo := range [][2]int{{512, leader.MiB}, {4096, leader.MiB}, {4096, 8 * leader.MiB}} {
		g, _ := leader.NewGeometry(geo[0], geo[1])
		for _, io := range []time.Duration{time.Second, 10 * time.Second} {
			for _, h := range slices.Compact([]uint64{2, 16, min(250, uint64(g.MaxHosts)), uint64(g.MaxHosts)}) {
				cs = append(cs, budgetCase{geo[0], geo[1], io, h})
			}
		}
	}
	return cs
}

// expectedIdle computes, from the rules alone, the idle read rate of host
// 1 in c (bytes per second) and its doorbell poll interval: renewals read
// host ids 1..highest+8 and the whole area every 4th, polls read one
// sector, as often as 250 ms or what renewals leave of sanlock's rate
// (less 2%) allow.
func expectedIdle(c budgetCase) (rate float64, poll time.Duration, sanlock float64) {
	g, _ := leader.NewGeometry(c.ss, c.align)
	ri := NewTimeouts(c.io, 0).RenewalInterval().Seconds()
	used := float64(min(c.highest+8, uint64(g.MaxHosts))) * float64(c.ss)
	renewal := (float64(g.MaxHosts*c.ss) + 3*used) / 4
	left := (float64(c.align) - renewal) / ri
	poll = max(DefaultPollInterval, time.Duration(math.Ceil(float64(c.ss)/(0.98*left)*1000))*time.Millisecond)
	return renewal/ri + float64(c.ss)/poll.Seconds(), poll, float64(c.align) / ri
}

// TestLockspaceReadBudget runs host 1 idle (an idle Messenger: doorbell
// polls between renewals) next to hosts 2 and highest, and computes its
// read rate from the recorded I/O over 8 renewal intervals: never more
// than sanlock's (the whole area every renewal interval), whatever the
// geometry and the highest host id, equal to what the rules predict, and
// on a 512/1M area with 2 hosts no more than before doorbells (31.8 KB/s
// at io_timeout 10, 122 KB/s at 1).
func TestLockspaceReadBudget(t *testing.T) {
	before := map[time.Duration]float64{time.Second: 122 * 1024, 10 * time.Second: 31.8 * 1024}
	for _, c := range budgetCases() {
		t.Run(c.String(), func(t *testing.T) {
			n := newLSNet(t, c.ss, c.align, c.io)
			for _, id := range []uint64{2, c.highest} {
				n.edit(id, func(s *leader.Sector) bool {
					s.Record.OwnerID, s.Record.OwnerGeneration, s.Record.Timestamp = id, 1, 77
					return true
				})
			}
			h := n.join(Config{HostID: 1, HostName: "solo", IOTimeout: c.io, Messenger: &fakeMessenger{}}, false)
			ri := h.ls.Timeouts().RenewalInterval()
			n.runFor(10 * ri)
			rens := h.renewalEvents()
			from, to := rens[1].at, rens[9].at // 8 renewal intervals, from a renewal
			var read int
			for _, r := range h.log.ops("read", from, to) {
				read += r.n
			}
			got := float64(read) / to.Sub(from).Seconds()
			want, poll, sanlock := expectedIdle(c)
			t.Logf("%v: %.0f B/s (rules: %.0f), doorbell poll %v, sanlock %.0f B/s (%.1f%%)", c, got, want, poll, sanlock, 100*got/sanlock)
			if got > sanlock {
				t.Errorf("reads %.0f B/s, more than sanlock's %.0f", got, sanlock)
			}
			if math.Abs(got-want) > float64(c.ss)/to.Sub(from).Seconds() {
				t.Errorf("reads %.0f B/s, the rules say %.0f", got, want)
			}
			if st := h.ls.Status(); st.PollEvery != poll || st.Doorbell.Scans != 0 || st.Doorbell.TargetedReads != 0 {
				t.Errorf("poll every %v (rules: %v), %d scans, %d planned reads", st.PollEvery, poll, st.Doorbell.Scans, st.Doorbell.TargetedReads)
			}
			if b, ok := before[c.io]; ok && c.ss == 512 && c.highest == 2 && got > b {
				t.Errorf("reads %.0f B/s at 2 hosts, more than before doorbells (%.0f)", got, b)
			}
			checkWrites(t, h)
		})
	}
}

// TestLockspaceCrash closes one host (a crash) and checks the other sees it
// FAIL and DEAD at sanlock's times, that its host id cannot be taken while
// it lives, and can be taken, with the next generation, once it is dead.
func TestLockspaceCrash(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second}, false)
	b := n.join(Config{HostID: 2, HostName: "beta", IOTimeout: 10 * time.Second}, false)
	n.runFor(30 * time.Second)

	// While alpha lives, another host cannot take host id 1.
	c := n.startJoin(Config{HostID: 1, HostName: "gamma", IOTimeout: 1 * time.Second}, false)
	n.runWhile(func() bool { return c.joining })
	var be *BusyError
	if !errors.As(c.joinErr, &be) || !errors.Is(c.joinErr, ErrHostIDBusy) || be.Owner != "alpha" || be.Generation != 1 {
		t.Fatalf("join of a live host id: %v", c.joinErr)
	}
	if d := c.exitAt.Sub(c.joinStart); d != 68*time.Second {
		t.Errorf("busy after %v, want the 68s acquire wait", d)
	}
	if ws := c.ownWrites(c.joinStart, farFuture); len(ws) != 0 {
		t.Fatalf("failed join wrote: %v", ws)
	}

	n.runFor(7 * time.Second)
	a.close()
	lastWrite := a.ownWrites(a.joinStart, farFuture)
	lastAt, lastTS := lastWrite[len(lastWrite)-1].at, lastWrite[len(lastWrite)-1].rec.Timestamp
	n.runWhile(func() bool { return b.ls.Host(1).Timestamp != lastTS })
	seen := b.ls.Host(1)
	if seen.State != StateLive {
		t.Fatalf("beta sees alpha %v right after its crash", seen.State)
	}
	// Beta has no Messenger: it reads the area at its renewals only, as
	// sanlock does.
	if d := seen.LastLive.Sub(lastAt); d < 0 || d > b.ls.Timeouts().RenewalInterval() {
		t.Fatalf("beta saw alpha's last write (at %v) at %v, more than a renewal interval later", n.since(lastAt), n.since(seen.LastLive))
	}
	fail := seen.LastLive.Add(8 * time.Second)
	dead := seen.LastLive.Add(68 * time.Second)
	if !seen.DeadAt.Equal(dead) {
		t.Errorf("DeadAt %v, want %v", n.since(seen.DeadAt), n.since(dead))
	}
	for _, c := range []struct {
		at   time.Time
		want HostState
	}{{fail, StateLive}, {fail.Add(time.Millisecond), StateFail}, {dead, StateFail}, {dead.Add(time.Millisecond), StateDead}} {
		n.runUntil(n.since(c.at))
		if got := b.ls.Host(1).State; got != c.want {
			t.Fatalf("at %v (last live %v) beta sees alpha %v, want %v", n.now(), n.since(seen.LastLive), got, c.want)
		}
	}

	// Dead: a host with another name takes host id 1 after the acquire
	// wait, with the next generation.
	// OnAcquireWait tells what the join waits for, and until when.
	type wait struct {
		why   string
		until time.Time
	}
	var waitsMu sync.Mutex
	var waits []wait
	g := n.startJoin(Config{HostID: 1, HostName: "gamma", IOTimeout: 1 * time.Second,
		OnAcquireWait: func(why string, until time.Time) {
			waitsMu.Lock()
			defer waitsMu.Unlock()
			waits = append(waits, wait{why, until})
		}}, false)
	n.runWhile(func() bool { return g.joining })
	if g.joinErr != nil {
		t.Fatal(g.joinErr)
	}
	waitsMu.Lock()
	if len(waits) != 2 || !strings.Contains(waits[0].why, `"alpha"`) || waits[0].until.Sub(g.joinStart) != 68*time.Second ||
		!strings.Contains(waits[1].why, "verify") || waits[1].until.Sub(g.joinStart) != 70*time.Second {
		t.Errorf("OnAcquireWait got %+v, want the 68s wait for alpha's lease, then the verify wait until 70s", waits)
	}
	waitsMu.Unlock()
	if d := g.joinEnd.Sub(g.joinStart); d != 70*time.Second {
		t.Errorf("takeover took %v, want 68s + 2s", d)
	}
	if gen := g.ls.Generation(); gen != 2 {
		t.Errorf("generation %d, want 2", gen)
	}
	n.runFor(30 * time.Second)
	if h := b.ls.Host(1); h.State != StateLive || h.Generation != 2 || h.Name != "gamma" {
		t.Errorf("beta sees host 1 as %+v", h)
	}
}

// TestLockspaceRelease releases a host id and joins it again.
func TestLockspaceRelease(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	m := &fakeMessenger{payload: Payload{WriteGeneration: 5, WriteTimestamp: 77, Ext: &leader.Extension{Version: leader.ExtVersion, Seq: 1}}}
	m.payload.Bitmap.Set(2)
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m}, false)
	b := n.join(Config{HostID: 2, HostName: "beta", IOTimeout: 1 * time.Second}, false)
	n.runFor(20 * time.Second)
	if err := a.ls.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.state = hostExited
	if err := a.ls.Release(context.Background()); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	sec := n.sector(1)
	r := sec.Record
	if r.Timestamp != 0 || r.OwnerID != 1 || r.OwnerGeneration != 1 || r.ResourceNameString() != "alpha" || r.IOTimeout != 1 {
		t.Fatalf("released record %+v", r)
	}
	if err := r.Verify("LS"); err != nil {
		t.Fatal(err)
	}
	if _, code, data := sec.Event(); code != 5 || data != 77 {
		t.Errorf("release dropped the event fields: %d/%d", code, data)
	}
	if !sec.Bitmap.Empty() || sec.Ext == nil || sec.Ext.Seq != 0 {
		t.Errorf("release kept bitmap %v / a message in extension %+v", sec.Bitmap.Hosts(), sec.Ext)
	}
	if a.ls.Status().Health != HealthStopped {
		t.Errorf("health %v", a.ls.Status().Health)
	}
	n.runFor(time.Second)
	if st := b.ls.Host(1).State; st != StateFree {
		t.Fatalf("beta sees released alpha %v", st)
	}

	// Joining again continues the generation, without the acquire wait,
	// whatever the host name.
	a2 := n.join(Config{HostID: 1, HostName: "alpha-2", IOTimeout: 1 * time.Second}, false)
	if d := a2.joinEnd.Sub(a2.joinStart); d != 2*time.Second {
		t.Errorf("rejoin took %v", d)
	}
	if g := a2.ls.Generation(); g != 2 {
		t.Errorf("generation %d, want 2", g)
	}
	n.runFor(10 * time.Second)
	if h := b.ls.Host(1); h.State != StateLive || h.Generation != 2 {
		t.Errorf("beta sees %+v", h)
	}
}

// TestLockspaceReleaseRefused checks Release refuses when the last write
// failed, so the lease expires instead.
func TestLockspaceReleaseRefused(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second}, true)
	n.runFor(5 * time.Second)
	a.fd.Inject(Fault{Kind: FaultEIO, Op: "write"})
	n.runFor(3 * time.Second)
	before := n.sector(1)
	if err := a.ls.Release(context.Background()); err == nil {
		t.Fatal("Release after a failed renewal succeeded")
	}
	a.state = hostExited
	if after := n.sector(1); after.Record != before.Record {
		t.Fatal("refused Release wrote")
	}
}

// TestLockspaceRenewalFailure fails every write and checks the retries,
// the health, and that the lockspace fails exactly renewal_fail after the
// last success and never writes after that.
func TestLockspaceRenewalFailure(t *testing.T) {
	for _, tc := range []struct {
		io   time.Duration
		poll time.Duration
	}{{1 * time.Second, 0}, {1 * time.Second, -1}, {3 * time.Second, 0}, {3 * time.Second, 700 * time.Millisecond}} {
		t.Run(fmt.Sprintf("io%v/poll%v", tc.io, tc.poll), func(t *testing.T) {
			n := newLSNet(t, 512, leader.MiB, tc.io)
			a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: tc.io, PollInterval: tc.poll}, true)
			tm := a.ls.Timeouts()
			n.runFor(20 * time.Second)
			a.fd.Inject(Fault{Kind: FaultEIO, Op: "write"})
			last := a.ls.Status().LastRenewal
			failAt := last.Add(tm.RenewalFail())

			checkHealth := func(at time.Time, want Health) {
				t.Helper()
				n.runUntil(n.since(at))
				if got := a.ls.Status().Health; got != want {
					t.Fatalf("health at last success + %v: %v, want %v", at.Sub(last), got, want)
				}
			}
			checkHealth(last.Add(tm.RenewalInterval()+time.Second), HealthOK)
			checkHealth(last.Add(tm.RenewalInterval()+time.Second+time.Millisecond), HealthLate)
			checkHealth(last.Add(tm.RenewalWarn()-time.Millisecond), HealthLate)
			checkHealth(last.Add(tm.RenewalWarn()), HealthWarn)
			n.runWhile(func() bool { return a.state != hostExited })

			if !a.exitAt.Equal(failAt) {
				t.Errorf("loop stopped at last success + %v, want %v", a.exitAt.Sub(last), tm.RenewalFail())
			}
			if err := a.ls.Err(); !errors.Is(err, ErrRenewalFailed) {
				t.Fatalf("Err = %v", err)
			}
			if a.ls.Status().Health != HealthFailed {
				t.Errorf("health %v", a.ls.Status().Health)
			}
			// Retries: at RenewalInterval, then every second, until the
			// failure; none at or after it.
			ws := a.ownWrites(last.Add(time.Millisecond), farFuture)
			for i, w := range ws {
				if want := last.Add(tm.RenewalInterval() + time.Duration(i)*time.Second); !w.at.Equal(want) {
					t.Fatalf("attempt %d at %v, want %v\n%s", i, n.since(w.at), n.since(want), fmtRecs(ws))
				}
				if !w.at.Before(failAt) {
					t.Fatalf("write attempt at %v, after the failure at %v", n.since(w.at), n.since(failAt))
				}
			}
			if want := int((tm.RenewalFail()-tm.RenewalInterval())/time.Second) + 1; len(ws) != want {
				t.Errorf("%d attempts, want %d", len(ws), want)
			}
			evs := a.renewalEvents()
			var fails int
			for _, ev := range evs {
				if !ev.at.After(last) {
					continue
				}
				fails++
				if ev.OK || !ev.Expiry.Equal(failAt) || !ev.LastSuccess.Equal(last) {
					t.Errorf("renewal event %+v, want a failure with expiry %v", ev, n.since(failAt))
				}
			}
			if fails != len(ws)+1 {
				t.Errorf("%d failure events for %d attempts", fails, len(ws))
			}
			if final := evs[len(evs)-1]; !errors.Is(final.Err, ErrRenewalFailed) || !final.at.Equal(failAt) {
				t.Errorf("final event %+v at %v", final, n.since(final.at))
			}
			// Nothing more, ever.
			n.runFor(time.Minute)
			if ws2 := a.ownWrites(last.Add(time.Millisecond), farFuture); len(ws2) != len(ws) {
				t.Errorf("wrote after failing")
			}
		})
	}
}

// TestLockspaceHungWrite hangs one renewal write and checks the loop is
// not blocked past io_timeout, does not write again while the write is
// outstanding, and recovers without a false RENEW_DIFF when it completes
// late.
func TestLockspaceHungWrite(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second}, true)
	b := n.join(Config{HostID: 2, HostName: "beta", IOTimeout: 1 * time.Second}, false)
	n.runFor(20 * time.Second)
	off := n.sectorOff(1)
	a.fd.Inject(Fault{Kind: FaultHang, Op: "write", Off: off, End: off + 512, Count: 1})
	before := a.ls.Status()
	n.runWhile(func() bool { return a.fd.Hung() == 0 })
	hungAt := n.clk.Now()
	if hungAt.Sub(before.LastRenewal) != a.ls.Timeouts().RenewalInterval() {
		t.Fatalf("hung at %v", n.since(hungAt))
	}
	n.runFor(3 * time.Second)
	if a.io.StuckWrites() != 1 || a.ls.Err() != nil {
		t.Fatalf("stuck writes %d, err %v", a.io.StuckWrites(), a.ls.Err())
	}
	// The loop went on reading io_timeout after the write hung (a renewal
	// retry a second after the failed one), and did not write while it
	// was outstanding.
	reads := a.log.ops("read", hungAt.Add(time.Millisecond), n.clk.Now())
	if len(reads) < 2 || !reads[0].at.Equal(hungAt.Add(time.Second)) {
		t.Fatalf("reads after the hang at %v:\n%s", n.since(hungAt), fmtRecs(a.log.ops("", hungAt.Add(-3*time.Second), n.clk.Now())))
	}
	if ws := a.ownWrites(hungAt.Add(time.Millisecond), n.clk.Now()); len(ws) != 0 {
		t.Fatalf("wrote while a write was outstanding:\n%s", fmtRecs(ws))
	}
	// The write completes late, landing an older record than... nothing
	// newer: the loop must accept it and renew.
	a.releaseHung()
	n.runFor(5 * time.Second)
	if err := a.ls.Err(); err != nil {
		t.Fatalf("after the late write: %v", err)
	}
	st := a.ls.Status()
	if st.Health != HealthOK || !st.LastRenewal.After(hungAt) || st.IO.Timeouts != 1 {
		t.Fatalf("status %+v", st)
	}
	ws := a.ownWrites(a.joinStart, farFuture)
	for i := 1; i < len(ws); i++ {
		if ws[i].rec.Timestamp <= ws[i-1].rec.Timestamp {
			t.Fatalf("timestamps not increasing:\n%s", fmtRecs(ws))
		}
	}
	if st := b.ls.Host(1).State; st != StateLive {
		t.Fatalf("beta sees alpha %v", st)
	}
}

// TestLockspaceStolen overwrites our sector and checks the loop stops at
// its next read, with sanlock's error, and never writes again.
func TestLockspaceStolen(t *testing.T) {
	tests := []struct {
		name string
		edit func(s *leader.Sector) bool
		want error // nil: not an error
	}{
		{"new generation", func(s *leader.Sector) bool { s.Record.OwnerGeneration++; return true }, ErrRenewOwner},
		{"new owner name", func(s *leader.Sector) bool {
			_ = leader.SetName(&s.Record.ResourceName, "thief", leader.MaxHostName)
			return true
		}, ErrRenewOwner},
		{"new owner id", func(s *leader.Sector) bool { s.Record.OwnerID = 9; return true }, ErrRenewOwner},
		{"bad magic", func(s *leader.Sector) bool { s.Record.Magic = 0; return true }, ErrRenewOwner},
		{"same owner, another timestamp", func(s *leader.Sector) bool { s.Record.Timestamp += 100; return true }, ErrRenewDiff},
		{"same owner, another event", func(s *leader.Sector) bool { s.Record.WriteGeneration = 9; return true }, ErrRenewDiff},
		{"bytes past the record", func(s *leader.Sector) bool { s.Bitmap.Set(7); s.Ext = nil; return true }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newLSNet(t, 512, leader.MiB, 1*time.Second)
			a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second}, false)
			n.runFor(10*time.Second + 300*time.Millisecond)
			pokedAt := n.clk.Now()
			n.edit(1, tt.edit)
			n.runFor(20 * time.Second)
			err := a.ls.Err()
			if tt.want == nil {
				if err != nil || a.state == hostExited {
					t.Fatalf("stopped with %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || a.state != hostExited {
				t.Fatalf("Err = %v (exited %v), want %v", err, a.state == hostExited, tt.want)
			}
			if d := a.exitAt.Sub(pokedAt); d > a.ls.Timeouts().RenewalInterval() {
				t.Errorf("noticed after %v", d)
			}
			if ws := a.ownWrites(pokedAt, farFuture); len(ws) != 0 {
				t.Fatalf("wrote after losing the sector:\n%s", fmtRecs(ws))
			}
		})
	}
}

// TestLockspaceTornWrite tears one renewal write of our sector.
func TestLockspaceTornWrite(t *testing.T) {
	for _, tc := range []struct {
		bytes  int
		urgent bool // the Messenger writes at every poll
	}{{100, false}, {160, false}, {200, false}, {300, false}, {200, true}, {300, true}} {
		bytes := tc.bytes
		t.Run(fmt.Sprintf("%d/urgent=%v", bytes, tc.urgent), func(t *testing.T) {
			n := newLSNet(t, 512, leader.MiB, 1*time.Second)
			// The message part changes with every write (event data and a
			// bitmap bit past byte 300), so a torn sector mixes two.
			m := &fakeMessenger{vary: true, payload: Payload{Ext: &leader.Extension{Version: leader.ExtVersion}}}
			if tc.urgent {
				m.urgent = 1 << 30
			}
			a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m}, true)
			b := n.join(Config{HostID: 2, HostName: "beta", IOTimeout: 1 * time.Second}, false)
			n.runFor(10 * time.Second)
			off := n.sectorOff(1)
			a.fd.Inject(Fault{Kind: FaultTorn, Op: "write", Off: off, End: off + 512, Bytes: bytes, Count: 1})
			tornAt := a.ls.Status().LastRenewal.Add(a.ls.Timeouts().RenewalInterval())
			if tc.urgent {
				tornAt = a.ls.Status().IO.LastWriteAt.Add(a.ls.Status().PollEvery)
			}
			n.runFor(20 * time.Second)
			ws := a.ownWrites(tornAt, farFuture)
			if len(ws) < 1 || !ws[0].at.Equal(tornAt) || !errors.Is(ws[0].err, syscall.EIO) {
				t.Fatalf("writes after the tear at %v:\n%s", n.since(tornAt), fmtRecs(ws))
			}
			// Every write, failed or not, carries a new timestamp: a
			// failed write may have landed, and peers only notice changes.
			all := a.ownWrites(a.joinStart, farFuture)
			for i := 1; i < len(all); i++ {
				if all[i].rec.Timestamp <= all[i-1].rec.Timestamp {
					t.Fatalf("timestamp %d after %d:\n%s", all[i].rec.Timestamp, all[i-1].rec.Timestamp, fmtRecs(all[max(0, i-3):i+1]))
				}
			}
			if bytes > leader.OffTimestamp && bytes < leader.OffChecksum+4 {
				// The record on disk has our new timestamp but the old
				// checksum: our own sector is corrupt, and the lease is
				// given up rather than written over.
				if a.ls.Err() == nil || a.state != hostExited {
					t.Fatalf("a corrupt own sector did not stop the loop")
				}
				if ws := a.ownWrites(tornAt.Add(time.Millisecond), farFuture); len(ws) != 0 {
					t.Fatalf("wrote over a corrupt own sector:\n%s", fmtRecs(ws))
				}
				return
			}
			// Otherwise the record read back is valid; the next renewal,
			// a second later, rewrites it whole.
			if err := a.ls.Err(); err != nil {
				t.Fatal(err)
			}
			if retry := tornAt.Add(time.Second); tc.urgent {
				retry = tornAt.Add(a.ls.Status().PollEvery)
				if len(ws) < 2 || !ws[1].at.Equal(retry) || ws[1].err != nil {
					t.Fatalf("retry:\n%s", fmtRecs(ws))
				}
			} else if len(ws) < 2 || !ws[1].at.Equal(retry) || ws[1].err != nil {
				t.Fatalf("retry:\n%s", fmtRecs(ws))
			}
			if sec := n.sector(1); sec.Ext == nil || sec.ExtErr != nil || sec.Record.Verify("LS") != nil {
				t.Fatalf("sector after recovery: %+v", sec)
			}
			if hi := b.ls.Host(1); hi.State != StateLive {
				t.Fatalf("beta sees %+v", hi)
			}
		})
	}
}

// fakeMessenger records what the loop shows it and returns a fixed payload
// and plan.
type fakeMessenger struct {
	mu        sync.Mutex
	joined    []string
	observes  []observed
	doorbells []error // one per Doorbell call: the decode error or nil
	rang      []rang
	written   []error
	payloads  int
	payload   Payload
	urgent    int  // next Payload calls that ask for an urgent write
	plan      Plan // what Plan returns; Read is cleared by a read of those ids, Ring by Rang
	vary      bool // change the event data and bitmap bit 400 after every write
}

type observed struct {
	at     time.Time
	ids    []uint64
	area   bool
	full   bool
	states map[uint64]HostState
	bad    int
}

type rang struct {
	at      time.Time
	targets []uint64
	err     error
}

func (m *fakeMessenger) Joined(hostID, generation uint64, geo leader.Geometry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joined = append(m.joined, fmt.Sprint(hostID, generation, geo.SectorSize, geo.AlignSize))
}

func (m *fakeMessenger) Observe(now time.Time, v *View) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := observed{at: now, ids: slices.Clone(v.IDs), area: v.Area, full: v.Full, states: map[uint64]HostState{}}
	for i, id := range v.IDs {
		o.states[id] = v.States[i]
		if v.Bad[i] != nil {
			o.bad++
		}
	}
	if len(v.States) != len(v.Sectors) || len(v.Bad) != len(v.Sectors) || len(v.IDs) != len(v.Sectors) {
		o.bad = -1
	}
	m.observes = append(m.observes, o)
	m.plan.Read = slices.DeleteFunc(m.plan.Read, func(id uint64) bool { return slices.Contains(v.IDs, id) })
	if v.Area {
		m.plan.Scan = false
	}
}

func (m *fakeMessenger) Doorbell(now time.Time, every time.Duration, db *leader.Doorbell, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if (db == nil) == (err == nil) {
		err = fmt.Errorf("fake: Doorbell(%v, %v)", db, err)
	}
	m.doorbells = append(m.doorbells, err)
}

func (m *fakeMessenger) Plan(now time.Time) Plan {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.plan
	p.Read, p.Ring = slices.Clone(p.Read), slices.Clone(p.Ring)
	return p
}

func (m *fakeMessenger) Rang(now time.Time, targets []uint64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rang = append(m.rang, rang{now, slices.Clone(targets), err})
	m.plan.Ring = slices.DeleteFunc(m.plan.Ring, func(id uint64) bool { return slices.Contains(targets, id) })
}

func (m *fakeMessenger) Payload(time.Time) (Payload, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.payloads++
	if m.urgent > 0 {
		m.urgent--
		return m.payload, true
	}
	return m.payload, false
}

func (m *fakeMessenger) Written(_ time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written = append(m.written, err)
	if m.vary {
		m.payload.WriteTimestamp++
		if m.payload.Bitmap.Test(400) {
			m.payload.Bitmap.Clear(400)
		} else {
			m.payload.Bitmap.Set(400)
		}
	}
}

func (m *fakeMessenger) Tick(now time.Time) {}

func (m *fakeMessenger) set(f func(m *fakeMessenger)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

// TestLockspaceMessenger checks the Messenger hook: it sees every read of
// host sectors and every poll of our doorbell, its payload goes into every
// write, and it can ask for a write between renewals, which is checked like
// a renewal (our sector read first) and does not move the renewals.
func TestLockspaceMessenger(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	m := &fakeMessenger{payload: Payload{WriteID: 7, WriteGeneration: 5, WriteTimestamp: 77,
		Ext: &leader.Extension{Version: leader.ExtVersion, Seq: 3, Acks: []leader.Ack{{HostID: 2, Gen16: 1, Status: leader.StatusDelivered, Seq: 4}}}}}
	m.payload.Bitmap.Set(2)
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m}, false)
	b := n.join(Config{HostID: 2, HostName: "beta", IOTimeout: 1 * time.Second}, false)
	n.runFor(30 * time.Second)
	if fmt.Sprint(m.joined) != "[1 1 512 1048576]" {
		t.Fatalf("Joined calls %v", m.joined)
	}

	// Every read of host sectors was shown to the Messenger, as it was
	// read: the first, whole area, then renewals; between them only our
	// doorbell, every 250 ms, each shown to Doorbell.
	reads, polls := a.hostReads(farFuture), a.doorbellReads(farFuture)
	m.mu.Lock()
	if len(m.observes) != len(reads) {
		t.Fatalf("%d Observe calls for %d reads", len(m.observes), len(reads))
	}
	for i, o := range m.observes {
		if !o.at.Equal(reads[i].at) || o.ids[0] != 1 || len(o.ids)*512 != reads[i].n || !o.area || o.full != (reads[i].n == 2000*512) || o.bad != 0 {
			t.Fatalf("Observe %d %+v for read %v", i, o, reads[i])
		}
		if o.states[1] != StateLive {
			t.Fatalf("Observe %d: own state %v", i, o.states[1])
		}
	}
	if last := m.observes[len(m.observes)-1]; last.states[2] != StateLive {
		t.Errorf("beta's state in the last view: %v", last.states[2])
	}
	if len(m.doorbells) != len(polls) || len(polls) < 110 {
		t.Fatalf("%d Doorbell calls for %d doorbell reads in 30 s", len(m.doorbells), len(polls))
	}
	for i, err := range m.doorbells {
		if err != nil {
			t.Fatalf("Doorbell %d: %v", i, err)
		}
		if i > 0 && polls[i].at.Sub(polls[i-1].at) != DefaultPollInterval {
			t.Fatalf("doorbell polls %v apart:\n%s", polls[i].at.Sub(polls[i-1].at), fmtRecs(polls[i-1:i+1]))
		}
	}
	m.mu.Unlock()

	// Our sector carries the payload.
	checkPayload := func() {
		t.Helper()
		sec := n.sector(1)
		m.mu.Lock()
		want := m.payload.WriteTimestamp
		m.mu.Unlock()
		if g, c, d := sec.Event(); g != 7 || c != 5 || d != want {
			t.Errorf("event fields %d/%d/%d, want 7/5/%d", g, c, d, want)
		}
		if fmt.Sprint(sec.Bitmap.Hosts()) != "[2]" {
			t.Errorf("bitmap %v", sec.Bitmap.Hosts())
		}
		if sec.Ext == nil || sec.Ext.Seq != 3 || len(sec.Ext.Acks) != 1 || sec.Ext.Acks[0] != m.payload.Ext.Acks[0] {
			t.Errorf("extension %+v (%v)", sec.Ext, sec.ExtErr)
		}
	}
	checkPayload()
	if !b.ls.Host(1).Messenger {
		t.Error("beta does not see alpha's extension")
	}

	// An urgent write goes out at the next turn (a Wake, here), between
	// renewals, after a read of our sector alone, and does not move the
	// renewal schedule.
	n.runUntil(n.since(a.ls.Status().LastRenewal.Add(a.ls.Timeouts().RenewalInterval())))
	st := a.ls.Status()
	if !st.LastRenewal.Equal(n.clk.Now()) {
		t.Fatalf("no renewal at %v", n.now())
	}
	nextRenewal := st.LastRenewal.Add(a.ls.Timeouts().RenewalInterval())
	n.runFor(time.Second + 10*time.Millisecond)
	m.set(func(m *fakeMessenger) { m.urgent = 1; m.payload.WriteTimestamp = 78 })
	urgentAt := n.clk.Now()
	a.wakeLoop()
	n.runUntil(n.since(nextRenewal.Add(10 * time.Second)))
	ws := a.ownWrites(urgentAt, n.clk.Now())
	if len(ws) < 2 || !ws[0].at.Equal(urgentAt) || !ws[1].at.Equal(nextRenewal) {
		t.Fatalf("writes after the urgent request at %v (next renewal %v):\n%s", n.since(urgentAt), n.since(nextRenewal), fmtRecs(ws))
	}
	if rs := a.log.ops("read", urgentAt, urgentAt.Add(time.Millisecond)); len(rs) != 1 || rs[0].off != 0 || rs[0].n != 512 {
		t.Fatalf("reads before the urgent write:\n%s", fmtRecs(rs))
	}
	if ws[0].rec.Timestamp <= a.ownWrites(a.joinStart, urgentAt)[0].rec.Timestamp || ws[1].rec.Timestamp <= ws[0].rec.Timestamp {
		t.Errorf("timestamps do not increase:\n%s", fmtRecs(ws))
	}
	if sec := n.sector(1); sec.Record.WriteTimestamp != 78 {
		d := sec.Record.WriteTimestamp
		t.Errorf("event data %d, want the new payload's 78", d)
	}
	m.mu.Lock()
	if len(m.written) != len(a.ownWrites(a.joinEnd, farFuture)) {
		t.Errorf("%d Written calls for %d writes", len(m.written), len(a.ownWrites(a.joinEnd, farFuture)))
	}
	for _, err := range m.written {
		if err != nil {
			t.Errorf("Written(%v)", err)
		}
	}
	m.mu.Unlock()
	if st2 := a.ls.Status(); st2.Renewals != st.Renewals+5 || st2.Writes != st.Writes+6 {
		t.Errorf("renewals %d → %d, writes %d → %d", st.Renewals, st2.Renewals, st.Writes, st2.Writes)
	}
	checkPayload()
	checkWrites(t, a)
}

// BenchmarkRenewal measures one renewal iteration (area read, host
// tracking, own-sector write) on a 512/1M MemDevice with 2 and 2000 used
// host ids.
func BenchmarkRenewal(b *testing.B) {
	for _, tc := range []struct {
		name  string
		hosts uint64
		full  bool
	}{{"hosts=2/partial", 2, false}, {"hosts=2/full", 2, true}, {"hosts=2000", 2000, false}} {
		b.Run(tc.name, func(b *testing.B) {
			n := newLSNet(b, 512, leader.MiB, 1*time.Second)
			for id := uint64(2); id <= tc.hosts; id++ {
				n.edit(id, func(s *leader.Sector) bool {
					s.Record.OwnerID, s.Record.OwnerGeneration, s.Record.Timestamp, s.Record.IOTimeout = id, 1, 100, 1
					return true
				})
			}
			h := n.join(Config{HostID: 1, HostName: "bench", IOTimeout: 1 * time.Second}, false)
			n.runFor(time.Second) // the first read finds every host
			h.close()
			ls := h.ls
			ls.area.IO = NewIO(n.dev, n.clk) // without the test's I/O log
			ctx := context.Background()
			ri := ls.Timeouts().RenewalInterval()
			ls.mu.Lock()
			last := uint64(ls.area.Geo.MaxHosts)
			if !tc.full {
				last = ls.readHigh()
			}
			ls.mu.Unlock()
			b.SetBytes(int64(last) * 512)
			b.ReportAllocs()
			for b.Loop() {
				n.clk.Advance(ri)
				ls.lp.full, ls.lp.first = tc.full, false
				if ok, err := ls.turn(ctx, n.clk.Now(), true, false); !ok {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLockspace_chunkedReads: at 4096/8M a read of the whole area is
// MaxReadChunk-sized I/Os, back to back and covering every host sector
// once, so that the host at max_hosts is seen like any other.
func TestLockspace_chunkedReads(t *testing.T) {
	n := newLSNet(t, 4096, 8*leader.MiB, 1*time.Second)
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second}, false)
	b := n.join(Config{HostID: 2000, HostName: "omega", IOTimeout: 1 * time.Second}, false)
	n.runFor(30 * time.Second)
	if st := a.ls.Host(2000).State; st != StateLive {
		t.Fatalf("host 2000 seen %v by host 1, want LIVE", st)
	}
	if st := b.ls.Host(1).State; st != StateLive {
		t.Fatalf("host 1 seen %v by host 2000, want LIVE", st)
	}
	// Group the reads of one instant: each is one read of the area.
	byAt := map[time.Time][]ioRec{}
	for _, r := range a.hostReads(farFuture) {
		if r.n > MaxReadChunk {
			t.Fatalf("a read of %d bytes at %d, more than MaxReadChunk", r.n, r.off)
		}
		byAt[r.at] = append(byAt[r.at], r)
	}
	full := 0
	for at, rs := range byAt {
		next := n.geo.HostOffset(1)
		for _, r := range rs {
			if r.off != next {
				t.Fatalf("reads at %v: one at %d, want %d (back to back from host 1)", at, r.off, next)
			}
			next += int64(r.n)
		}
		if next == n.geo.HostOffset(2000)+4096 {
			full++
		}
	}
	if full < 3 {
		t.Errorf("%d reads of all 2000 host sectors in 30 s, want one per renewal at least", full)
	}
}
