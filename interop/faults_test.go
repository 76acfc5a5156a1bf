package interop_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/testimg/faultdisk"
)

// Storage faults under real daemons (issue 11, "prove it with real
// faults"): a real sanlock daemon and sanlock-msg daemons share a
// lockspace on a FUSE disk (testimg/faultdisk) that hangs, fails, slows
// down or tears writes on command, at io_timeout 1:
//
//   - a hang longer than renewal_fail (8 s) fails the lockspace in both at
//     the same deadline after their last renewal, and our fake watchdog
//     fires W later;
//   - EIO bursts shorter than that are survived by both;
//   - a torn message write is never delivered from the torn sector, is
//     counted, and is delivered exactly once after the sender's next good
//     write;
//   - a slow disk (every I/O delayed below io_timeout) is survived.
//
// The short version runs in CI (under a minute, the tests in parallel);
// -faults.long runs every variant (see DEVELOPERS.md):
//
//	go test -run 'TestFaults' -v ./interop/ -faults.long -timeout 30m
var faultsLong = flag.Bool("faults.long", false, "storage fault tests: run every variant (minutes), not CI's short set")

// faultW is our daemons' watchdog fire timeout on the fault disk: short,
// so that the fire comes soon after the lockspace fails.
const faultW = 3 * time.Second

// faultGroup is lockspace LS on a fault disk: a real sanlock daemon as
// host 1 (if asked for) and sanlock-msg daemons as hosts 2, 3, ..., each
// with a fake watchdog (W = faultW).
type faultGroup struct {
	disk *faultdisk.Disk
	img  string // the path the daemons use: the image, or a loop device over it
	ss   int    // sector size
	sl   *testimg.Sanlock
	msg  []*fenceHost
}

// newFaultGroup makes the disk, starts the daemons and joins them
// (concurrently), and waits until every daemon sees every host LIVE.
// sectorSize 4096 puts a loop device with 4096-byte sectors over the
// image (root only); 512 uses the image file itself.
func newFaultGroup(t *testing.T, tag string, withSanlock bool, nMsg, sectorSize int) *faultGroup {
	t.Helper()
	if withSanlock {
		testimg.RequireSanlock(t)
	}
	g := &faultGroup{disk: faultdisk.Mount(t, 8<<20), ss: sectorSize}
	g.img = g.disk.Path
	initArgs := []string{"init", "-o", fmt.Sprint(ioTimeout), "-s", spec("LS", 0, g.img, 0)}
	if sectorSize == 4096 {
		g.img = g.disk.Loop(t, 4096)
		initArgs = []string{"init", "-o", fmt.Sprint(ioTimeout), "-Z", "4096", "-A", "1M", "-s", spec("LS", 0, g.img, 0)}
	}
	slm(t, initArgs...)
	if withSanlock {
		g.sl = testimg.StartSanlock(t, "sl-"+tag)
	}
	for i := range nMsg {
		wd := filepath.Join(t.TempDir(), fmt.Sprintf("wd%d", i+2))
		d := startMsgDaemon(t, fmt.Sprintf("%s-%d", tag, i+2), "", "--watchdog", "fake:"+wd,
			"--watchdog-timeout", faultW.String())
		g.msg = append(g.msg, &fenceHost{msgDaemon: d, id: i + 2, wd: wd})
	}
	// Hangs end before the daemons are stopped (cleanups run in reverse).
	t.Cleanup(g.disk.Heal)

	// Join concurrently. A join whose I/O timed out (io_timeout 1 on a
	// loaded machine) is tried once more: joining is not under test here.
	join := func(id int, add func() error) error {
		err := add()
		if err != nil {
			t.Logf("host %d: %v; trying once more", id, err)
			err = add()
		}
		return err
	}
	errs := make(chan error, nMsg+1)
	if withSanlock {
		go func() {
			errs <- join(1, func() error {
				if out, err, _ := sanlockAdd(g.sl, g.img, 1); err != nil {
					return fmt.Errorf("sanlock add_lockspace host 1: %v: %s", err, out)
				}
				return nil
			})
		}()
	}
	for _, h := range g.msg {
		go func() {
			errs <- join(h.id, func() error {
				out, errOut, code := h.cli("add-lockspace", "-s", spec("LS", h.id, g.img, 0), "-o", fmt.Sprint(ioTimeout))
				if code != 0 {
					return fmt.Errorf("host %d add-lockspace: exit %d: %s%s", h.id, code, out, errOut)
				}
				return nil
			})
		}()
	}
	for range nMsg + btoi(withSanlock) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 4*renewalPeriod, "every daemon sees every host LIVE", func() bool {
		for _, h := range g.msg {
			hs := h.hosts(t, "LS")
			for _, id := range g.ids() {
				if hs[uint64(id)].State != "LIVE" {
					return false
				}
			}
		}
		if g.sl != nil {
			sh := sanlockHosts(t, g.sl)
			for _, h := range g.msg {
				if sh[uint64(h.id)].State != "LIVE" {
					return false
				}
			}
		}
		return true
	})
	return g
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ids returns the host ids of the group.
func (g *faultGroup) ids() []int {
	var ids []int
	if g.sl != nil {
		ids = append(ids, 1)
	}
	for _, h := range g.msg {
		ids = append(ids, h.id)
	}
	return ids
}

// name names host id for messages.
func (g *faultGroup) name(id int) string {
	if id == 1 && g.sl != nil {
		return "sanlock (host 1)"
	}
	return fmt.Sprintf("sanlock-msg (host %d)", id)
}

// sectorOff returns the offset of host id's sector.
func (g *faultGroup) sectorOff(id int) int64 { return int64(id-1) * int64(g.ss) }

// hostFault limits f to host id's sector.
func (g *faultGroup) hostFault(id int, f delta.Fault) delta.Fault {
	f.Off, f.End = g.sectorOff(id), g.sectorOff(id)+int64(g.ss)
	return f
}

// goodWrites returns the successful writes of host id's sector, oldest
// first, as the disk saw them.
func (g *faultGroup) goodWrites(id int) []faultdisk.Event {
	var ws []faultdisk.Event
	off := g.sectorOff(id)
	for _, e := range g.disk.Events() {
		if e.Op == "write" && e.Err == nil && !e.Abandoned && e.Off == off && e.Len == g.ss {
			ws = append(ws, e)
		}
	}
	return ws
}

// lastGoodWrite returns the start of the last successful write of host
// id's sector that started before the given time.
func (g *faultGroup) lastGoodWrite(id int, before time.Time) time.Time {
	var last time.Time
	for _, e := range g.goodWrites(id) {
		if e.Start.Before(before) {
			last = e.Start
		}
	}
	return last
}

// maxGap returns the longest time host id's sector went without a
// successful write during [from, to] (counting from its last write before
// from, and up to to), and how many writes started in the window.
func (g *faultGroup) maxGap(id int, from, to time.Time) (time.Duration, int) {
	prev, gap, n := from, time.Duration(0), 0
	for _, e := range g.goodWrites(id) {
		if e.Start.Before(from) {
			prev = e.Start
			continue
		}
		if e.Start.After(to) {
			break
		}
		gap, prev, n = max(gap, e.Start.Sub(prev)), e.Start, n+1
	}
	return max(gap, to.Sub(prev)), n
}

// sanlockLogHas reports whether the sanlock daemon's log contains what
// (its -D log: "check_our_lease failed" when the lockspace fails,
// "renewal error" for each failed renewal).
func sanlockLogHas(t *testing.T, s *testimg.Sanlock, what string) bool {
	t.Helper()
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), what)
}

// ourFailTime returns the time our daemon logged "lockspace failed", zero
// if it did not.
func ourFailTime(t *testing.T, d *msgDaemon) time.Time {
	t.Helper()
	f, err := os.Open(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, `msg="lockspace failed`) {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("daemon log line %q: %v", l, err)
		}
		return at
	}
	return time.Time{}
}

// TestFaults_hang: every I/O of the disk hangs. The real sanlock daemon
// and our daemon both fail the lockspace 8 s (renewal_fail) after their
// last successful renewal, as the disk saw it, within a second of each
// other; our fake watchdog, no longer fed from then on, fires W later and
// our daemon exits 137.
func TestFaults_hang(t *testing.T) {
	t.Parallel()
	type variant struct {
		name string
		op   string // "" hangs reads and writes
		ss   int
	}
	vs := []variant{{"all I/O", "", 512}}
	if *faultsLong {
		vs = append(vs, variant{"writes only", "write", 512}, variant{"reads only", "read", 512},
			variant{"all I/O, 4K loop device", "", 4096})
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			g := newFaultGroup(t, "hang"+v.op+fmt.Sprint(v.ss), true, 1, v.ss)
			ours := g.msg[0]
			hangAt := time.Now()
			g.disk.Inject(delta.Fault{Kind: delta.FaultHang, Op: v.op})

			// Watch both daemons until both failed and our watchdog fired.
			var slFail time.Time
			var fire testimg.WatchdogEvent
			deadline := hangAt.Add(hostFail + faultW + 10*time.Second)
			for time.Now().Before(deadline) && (slFail.IsZero() || fire.At.IsZero()) {
				if slFail.IsZero() && sanlockLogHas(t, g.sl, "check_our_lease failed") {
					slFail = time.Now()
				}
				if fire.At.IsZero() {
					fire, _ = testimg.FindWatchdog(testimg.ReadWatchdog(t, ours.wd), "fire")
				}
				time.Sleep(50 * time.Millisecond)
			}
			hung := g.disk.Hung()
			g.disk.Heal()
			ourFail := ourFailTime(t, ours.msgDaemon)
			if slFail.IsZero() || ourFail.IsZero() || fire.At.IsZero() {
				t.Fatalf("%v after the hang began: sanlock failed at %v, ours at %v, our watchdog fired at %v; want all three",
					time.Since(hangAt).Round(time.Millisecond), slFail, ourFail, fire.At)
			}
			if st := ours.exitStatus(t, 10*time.Second); st != 137 {
				t.Errorf("our daemon exited %d after the fire, want 137", st)
			}

			slLast, ourLast := g.lastGoodWrite(1, hangAt), g.lastGoodWrite(ours.id, hangAt)
			slAfter, ourAfter := slFail.Sub(slLast), ourFail.Sub(ourLast)
			t.Logf("MEASURE hang (%s, %d-byte sectors, io_timeout 1): sanlock failed %.2fs and sanlock-msg %.2fs after their last renewal "+
				"(%.2fs and %.2fs after the hang began; renewal_fail 8s; the two %.2fs apart); our fake watchdog fired %.2fs after our last renewal "+
				"(8s + W %v); %d request(s) hung at the heal",
				v.name, v.ss, slAfter.Seconds(), ourAfter.Seconds(), slFail.Sub(hangAt).Seconds(), ourFail.Sub(hangAt).Seconds(),
				(slAfter - ourAfter).Abs().Seconds(), fire.At.Sub(ourLast).Seconds(), faultW, hung)
			// Ours checks at renewal_fail, or when an I/O in flight then
			// times out (io_timeout later), counting from the start of
			// the renewal, whose read comes a few ms before the write the
			// disk saw; sanlock counts whole seconds of its monotonic
			// clock and checks once a second, so it may fail up to a
			// second early or late. Polling its log adds 50 ms.
			if ourAfter < hostFail-200*time.Millisecond || ourAfter > hostFail+1500*time.Millisecond {
				t.Errorf("sanlock-msg failed %v after its last renewal, want 8s (-0.2s, +1.5s)", ourAfter)
			}
			if slAfter < hostFail-time.Second || slAfter > hostFail+2*time.Second {
				t.Errorf("sanlock failed %v after its last renewal, want 8s (-1s, +2s)", slAfter)
			}
			if d := (slAfter - ourAfter).Abs(); d > 2*time.Second {
				t.Errorf("sanlock and sanlock-msg failed %v apart (after their own last renewals), want the same deadline", d)
			}
			// The keeper feeds every second until last renewal + 8 s; the
			// fake fires W after the last feed.
			if f := fire.At.Sub(ourLast); f < hostFail+faultW-1500*time.Millisecond || f > hostFail+faultW+time.Second {
				t.Errorf("our watchdog fired %v after our last renewal, want about %v", f, hostFail+faultW)
			}
			if hung == 0 {
				t.Error("no request was hung when the hang ended: the test proved nothing")
			}
		})
	}
}

// TestFaults_eioBursts: bursts of EIO on every request are survived by both
// daemons when they are shorter than renewal_fail less what a renewal may
// already have waited (up to a renewal interval, 2.5 s), the retry after
// the burst (up to 1 s) and, for sanlock, its whole-second clock (up to
// 1 s): 3 s here. Both saw the errors, neither failed, both renew after
// each burst, and our watchdog kept being fed.
func TestFaults_eioBursts(t *testing.T) {
	t.Parallel()
	bursts := []eioBurst{{"", time.Second}, {"", 3 * time.Second}}
	if *faultsLong {
		bursts = []eioBurst{{"", time.Second}, {"", 2 * time.Second}, {"", 3 * time.Second}, {"", 3 * time.Second},
			{"read", 3 * time.Second}, {"write", 3 * time.Second}, {"", 3 * time.Second}, {"", 3 * time.Second}}
	}
	g := newFaultGroup(t, "eio", true, 1, 512)
	ours := g.msg[0]
	start := time.Now()
	renewFails0 := ours.status(t).Lockspaces[0].RenewFails
	for i, b := range bursts {
		// A renewal interval and more between bursts, so that every host
		// renews; then start right after a renewal of sanlock's, whose
		// whole-second clock may count up to a second too many.
		time.Sleep(renewalPeriod)
		waitFor(t, 2*renewalPeriod, "a fresh renewal of sanlock's", func() bool {
			return time.Since(g.lastGoodWrite(1, time.Now())) < 200*time.Millisecond
		})
		errsBefore := g.disk.Counts().ReadErrs + g.disk.Counts().WriteErrs
		g.disk.Inject(delta.Fault{Kind: delta.FaultEIO, Op: b.op})
		time.Sleep(b.len)
		g.disk.Heal()
		c := g.disk.Counts()
		if c.ReadErrs+c.WriteErrs == errsBefore {
			t.Errorf("burst %d (%v): no request failed", i, b)
		}
	}
	time.Sleep(2 * renewalPeriod)
	end := time.Now()

	for _, id := range g.ids() {
		gap, n := g.maxGap(id, start, end)
		t.Logf("MEASURE EIO bursts %v: %s survived, its longest time without a successful renewal %.2fs (%d renewals in %.0fs)",
			burstList(bursts), g.name(id), gap.Seconds(), n, end.Sub(start).Seconds())
		if gap >= hostFail {
			t.Errorf("%s went %v without a successful renewal", g.name(id), gap)
		}
		if last := g.lastGoodWrite(id, end); end.Sub(last) > renewalPeriod+time.Second {
			t.Errorf("%s has not renewed since %v ago", g.name(id), end.Sub(last))
		}
	}
	ls := ours.status(t).Lockspaces[0]
	if ls.State == callback.StateFailed {
		t.Errorf("our lockspace after the bursts: state %s, health %s", ls.State, ls.Health)
	}
	if ls.RenewFails == renewFails0 {
		t.Error("our daemon saw no failed renewal: the bursts did not reach it")
	}
	if !sanlockLogHas(t, g.sl, "renewal error") {
		t.Error("sanlock logged no renewal error: the bursts did not reach it")
	}
	if sanlockLogHas(t, g.sl, "check_our_lease failed") {
		t.Error("sanlock's lockspace failed")
	}
	if out, err := g.sl.Client("status"); err != nil || !strings.Contains(out, "s LS:1:") {
		t.Errorf("sanlock no longer holds LS: %v\n%s", err, out)
	}
	checkNotFired(t, "our", ours.wd, end)
	for _, h := range []struct {
		who   string
		state string
	}{{"sanlock sees host 2", sanlockHosts(t, g.sl)[2].State}, {"we see host 1", ours.hosts(t, "LS")[1].State}} {
		if h.state != "LIVE" {
			t.Errorf("%s %s after the bursts", h.who, h.state)
		}
	}
}

// eioBurst is a time of EIO on every request of kind op ("": all).
type eioBurst struct {
	op  string
	len time.Duration
}

func (b eioBurst) String() string {
	if b.op == "" {
		return b.len.String()
	}
	return b.len.String() + " on " + b.op + "s"
}

func burstList(bs []eioBurst) string {
	var s []string
	for _, b := range bs {
		s = append(s, b.String())
	}
	return strings.Join(s, ", ")
}

// TestFaults_tornMessage: a sanlock-msg sender's message write is torn.
// The receiver never delivers it from the torn sector, counts the bad
// sector (bad_ext when the leader record is whole, bad_sector when it is
// torn), and delivers it exactly once after the sender's next good write.
//
// A tear that stays on disk must leave the sender's own record valid
// (bytes 0..171 whole), or the sender's next read finds its own sector
// corrupt and, as sanlock, fails the lockspace at once (delta's tests
// cover that); a tear inside the record is shown to the receiver while
// the write is in flight ("hold"), and the write then completes.
func TestFaults_tornMessage(t *testing.T) {
	t.Parallel()
	type tear struct {
		bytes int
		hold  time.Duration // 0: the tear stays, and the sender's next writes fail for a while
		want  string        // the receiver's counter that must grow
	}
	const holdFor = 700 * time.Millisecond // below io_timeout: the sender's write succeeds
	tears := []tear{{176, 0, "bad_ext"}, {160, holdFor, "bad_sector"}}
	if *faultsLong {
		tears = append(tears, tear{172, 0, "bad_ext"}, tear{192, 0, "bad_ext"}, tear{200, 0, "bad_ext"},
			tear{230, 0, "bad_ext"}, tear{256, 0, "bad_ext"},
			tear{154, holdFor, "bad_sector"}, tear{168, holdFor, "bad_sector"}, tear{200, holdFor, "bad_ext"})
	}
	g := newFaultGroup(t, "torn", false, 2, 512)
	tx, rx := g.msg[0], g.msg[1]
	l := listenStamped(t, rx.msgDaemon)
	sent := 0
	for i, tr := range tears {
		label := fmt.Sprintf("tear at byte %d", tr.bytes)
		if tr.hold > 0 {
			label += fmt.Sprintf(", completed %v later", tr.hold)
		}
		// The receiver must have read the sector while it was torn for
		// the tear to prove anything; on a loaded machine it may not
		// have, and the tear is tried again with a new message. (Between
		// its renewals a receiver reads a sender's sector only when rung,
		// once the write completed: tearMessage makes a tear last over
		// one of the receiver's renewals.)
		const tries = 3
		for try := 1; ; try++ {
			seen := tearMessage(t, g, tx, rx, l, label, tr.bytes, tr.hold, tr.want, uint64(1000+100*i+try))
			sent++
			if seen {
				break
			}
			if try == tries {
				t.Fatalf("%s: in %d tries the receiver never read the sector while it was torn", label, tries)
			}
			t.Logf("%s: the receiver did not read the sector while it was torn; trying again", label)
		}
	}
	// Nothing else arrives: each message was delivered exactly once.
	time.Sleep(2 * renewalPeriod)
	if n := l.count(); n != sent {
		t.Errorf("%d records delivered for %d messages", n, sent)
	}
	if ls := tx.status(t).Lockspaces[0]; ls.State == callback.StateFailed {
		t.Errorf("the sender's lockspace failed: %s", ls.Health)
	}
}

// tearMessage tears the write of one message from tx to rx (see
// TestFaults_tornMessage) and checks what rx does. It returns false,
// having checked the delivery but not the counters, if rx did not read the
// sector while it was torn.
func tearMessage(t *testing.T, g *faultGroup, tx, rx *fenceHost, l *stampedListener, label string,
	bytes int, hold time.Duration, want string, data uint64) bool {
	t.Helper()
	if hold == 0 {
		// Right after a renewal, so that the next write is the message's.
		waitFor(t, 3*renewalPeriod, "a fresh renewal of the sender", func() bool {
			return tx.status(t).Lockspaces[0].LastRenewalAge < 0.3
		})
	} else {
		// Between its renewals the receiver reads the sender's sector only
		// when rung, after the write completed: time the held write so
		// that the receiver's next renewal read falls inside it, and the
		// sender's renewal is not due before the message is written.
		waitFor(t, 3*renewalPeriod, "the receiver's renewal in 0.2..0.5 s, not the sender's", func() bool {
			now := time.Now()
			rxNext := rx.status(t).Lockspaces[0].LastRenewal.Add(renewalPeriod).Sub(now)
			txNext := tx.status(t).Lockspaces[0].LastRenewal.Add(renewalPeriod).Sub(now)
			return rxNext >= 200*time.Millisecond && rxNext <= 500*time.Millisecond && txNext >= 150*time.Millisecond
		})
	}
	before, sent0 := rx.msgStatus(t), tx.msgStatus(t)
	badExt0 := rx.hosts(t, "LS")[uint64(tx.id)].BadExt
	tornAt := time.Now()
	g.disk.Inject(g.hostFault(tx.id, delta.Fault{Kind: delta.FaultTorn, Op: "write", Bytes: bytes, Delay: hold, Count: 1}))
	if hold == 0 {
		g.disk.Inject(g.hostFault(tx.id, delta.Fault{Kind: delta.FaultEIO, Op: "write"}))
	}
	out := tx.mustCLI(t, "send", "-s", "LS", "-i", fmt.Sprint(rx.id), "-c", "user0", "--data", fmt.Sprint(data))
	var seq uint64
	var id string
	_, err := fmt.Sscanf(strings.TrimSpace(out), "seq %d id %s", &seq, &id)
	if err != nil {
		t.Fatalf("%s: send printed %q: %v", label, out, err)
	}

	// The torn write carried the message.
	var torn faultdisk.Event
	waitFor(t, 5*time.Second, "the torn write", func() bool {
		for _, e := range g.disk.Events() {
			if e.Op == "write" && e.Off == g.sectorOff(tx.id) && e.Start.After(tornAt) {
				torn = e
				return true
			}
		}
		return false
	})
	s, err := leader.DecodeSector(torn.Data)
	if err != nil || s.Ext == nil || s.Ext.Seq != seq || !s.Bitmap.Test(uint64(rx.id)) || s.Record.WriteTimestamp != data {
		t.Fatalf("%s: the first write after the fault is not the message (seq %d): %+v, %v", label, seq, s, err)
	}
	if hold == 0 && !errors.Is(torn.Err, syscall.EIO) || hold > 0 && torn.Err != nil && !torn.Abandoned {
		t.Fatalf("%s: the torn write answered %v", label, torn.Err)
	}

	// good is when the first good copy of the message reached the disk:
	// the held write's completion, or the sender's first successful write
	// once its writes fail no more.
	var good time.Time
	if hold > 0 {
		good = torn.Start.Add(hold)
	} else {
		// Longer than a renewal interval: the receiver's renewal reads
		// the torn sector.
		time.Sleep(time.Until(torn.Start.Add(renewalPeriod + 500*time.Millisecond)))
		g.disk.Heal()
		waitFor(t, 5*time.Second, "the sender's next good write", func() bool {
			for _, e := range g.goodWrites(tx.id) {
				if e.Start.After(torn.Start) {
					good = e.Start
					return true
				}
			}
			return false
		})
	}
	rec := l.next(t, 10*time.Second)
	if rec.FromHostID != uint64(tx.id) || rec.Seq != seq || rec.Data != data || rec.Native || rec.Status != "delivered" {
		t.Fatalf("%s: delivered %+v, want seq %d data %d from host %d", label, rec.Record, seq, data, tx.id)
	}
	if !rec.at.After(good) {
		t.Errorf("%s: delivered %v before the sender's good write reached the disk: from the torn sector",
			label, good.Sub(rec.at))
	}
	waitFor(t, 5*time.Second, "the sender to see the ack", func() bool { return tx.msgStatus(t).Pending == 0 })
	if sent := tx.msgStatus(t); sent.SendOK != sent0.SendOK+1 || sent.SendFailed != sent0.SendFailed {
		t.Errorf("%s: the sender counts %d more sends ok and %d more failed, want 1 and 0", label,
			sent.SendOK-sent0.SendOK, sent.SendFailed-sent0.SendFailed)
	}
	after := rx.msgStatus(t)
	if after.Delivered != before.Delivered+1 || after.NativeDelivered != before.NativeDelivered {
		t.Errorf("%s: delivered %d -> %d, native %d -> %d; want exactly one more delivery", label,
			before.Delivered, after.Delivered, before.NativeDelivered, after.NativeDelivered)
	}

	// Did the receiver read the sector while it was torn: after the
	// prefix landed, before the good copy did? (The sender reads its own
	// sector before each write: only the receiver's threads count.)
	readsTorn := 0
	for _, e := range g.disk.Events() {
		if e.Op == "read" && e.Err == nil && threadOf(rx.pid, e.Pid) && e.Off <= g.sectorOff(tx.id) && e.Off+int64(e.Len) > g.sectorOff(tx.id) &&
			e.Start.After(torn.Start.Add(5*time.Millisecond)) && e.End.Before(good.Add(-5*time.Millisecond)) {
			readsTorn++
		}
	}
	if readsTorn == 0 {
		return false
	}
	badExt := rx.hosts(t, "LS")[uint64(tx.id)].BadExt
	t.Logf("MEASURE torn message write (%s): the receiver read the torn sector %d time(s), ignored it %d time(s) for a bad extension "+
		"and %d for a bad record (host-status bad_ext of the sender +%d), then delivered seq %d once, %.0fms after the good write reached the disk",
		label, readsTorn, after.BadExt-before.BadExt, after.BadSector-before.BadSector, badExt-badExt0, seq, rec.at.Sub(good).Seconds()*1000)
	switch want {
	case "bad_ext":
		if after.BadExt == before.BadExt || badExt == badExt0 {
			t.Errorf("%s: bad_ext did not grow (status %d -> %d, host-status %d -> %d)", label, before.BadExt, after.BadExt, badExt0, badExt)
		}
	case "bad_sector":
		if after.BadSector == before.BadSector {
			t.Errorf("%s: bad_sector did not grow (%d)", label, after.BadSector)
		}
	}
	return true
}

// threadOf reports whether thread tid belongs to process pid.
func threadOf(pid int, tid uint32) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid))
	return err == nil
}

// stampedRecord is a record a listener printed, with when the test read
// it.
type stampedRecord struct {
	callback.Record
	at time.Time
}

// stampedListener is a `sanlock-msg listen --json` whose records are
// stamped with their arrival time.
type stampedListener struct {
	mu   sync.Mutex
	recs []stampedRecord
	read int // records returned by next
	errs []string
}

// listenStamped starts `listen -s LS --json` on d and waits until the
// daemon counts it.
func listenStamped(t *testing.T, d *msgDaemon) *stampedListener {
	t.Helper()
	before := d.msgStatus(t).Listeners
	cmd := exec.Command(d.bin, "listen", "-s", "LS", "--json", "--run-dir", d.runDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &stampedListener{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			at := time.Now()
			var rec callback.Record
			err := json.Unmarshal(sc.Bytes(), &rec)
			l.mu.Lock()
			if err != nil {
				l.errs = append(l.errs, fmt.Sprintf("%q: %v", sc.Text(), err))
			} else {
				l.recs = append(l.recs, stampedRecord{rec, at})
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 10*time.Second, "the daemon counts the listener", func() bool { return d.msgStatus(t).Listeners > before })
	return l
}

// next returns the next record, failing the test if none arrives within d.
func (l *stampedListener) next(t *testing.T, d time.Duration) stampedRecord {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		if len(l.errs) > 0 {
			t.Fatalf("listen printed %s", l.errs[0])
		}
		if l.read < len(l.recs) {
			r := l.recs[l.read]
			l.read++
			l.mu.Unlock()
			return r
		}
		l.mu.Unlock()
		if time.Now().After(end) {
			t.Fatalf("no record within %v", d)
		}
	}
}

// count returns how many records arrived.
func (l *stampedListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// TestFaults_slowDisk: every request is answered late, though within
// io_timeout. Both daemons keep renewing without a failure, and a message
// between two sanlock-msg daemons still arrives.
func TestFaults_slowDisk(t *testing.T) {
	t.Parallel()
	// The window is longer than renewal_fail, so a disk too slow to
	// renew on would fail the lockspaces within it.
	delay, window := 400*time.Millisecond, 10*time.Second
	if *faultsLong {
		delay, window = 800*time.Millisecond, 40*time.Second
	}
	g := newFaultGroup(t, "slow", true, 2, 512)
	tx, rx := g.msg[0], g.msg[1]
	l := rx.listen(t)
	fails0 := map[int]int64{}
	for _, h := range g.msg {
		fails0[h.id] = h.status(t).Lockspaces[0].RenewFails
	}
	_, slBad0 := sanlockRenewals(t, g.sl)
	start := time.Now()
	g.disk.Inject(delta.Fault{Kind: delta.FaultDelay, Delay: delay})

	var wg sync.WaitGroup
	var sendOut, sendErr string
	var sendCode int
	wg.Go(func() {
		time.Sleep(window / 4)
		sendOut, sendErr, sendCode = tx.cli("send", "-s", "LS", "-i", fmt.Sprint(rx.id), "-c", "user1", "--data", "77", "--wait")
	})
	time.Sleep(window)
	wg.Wait()
	end := time.Now()
	g.disk.Heal()

	if sendCode != 0 || !strings.Contains(sendOut, "acked delivered") {
		t.Errorf("send --wait on the slow disk: exit %d: %s%s", sendCode, sendOut, sendErr)
	}
	if rec := l.next(t, 5*time.Second); rec.Data != 77 || rec.FromHostID != uint64(tx.id) {
		t.Errorf("delivered %+v, want data 77 from host %d", rec, tx.id)
	}
	slow := 0
	for _, e := range g.disk.Events() {
		if e.Start.After(start) && e.End.Before(end) && e.End.Sub(e.Start) >= delay {
			slow++
		}
	}
	if slow == 0 {
		t.Fatal("no request was slow: the test proved nothing")
	}
	_, slBad := sanlockRenewals(t, g.sl)
	for _, id := range g.ids() {
		gap, n := g.maxGap(id, start, end)
		t.Logf("MEASURE slow disk (every request %v late, for %v): %s renewed %d times, longest gap %.2fs",
			delay, window, g.name(id), n, gap.Seconds())
		if n == 0 || gap >= hostFail {
			t.Errorf("%s renewed %d times in %v, longest gap %v", g.name(id), n, window, gap)
		}
	}
	// Every request is answered 600 ms before our I/O timeout, so no
	// renewal should fail; one is forgiven per host, for a machine that
	// stalls a process for most of a second now and then.
	for _, h := range g.msg {
		ls := h.status(t).Lockspaces[0]
		fails := ls.RenewFails - fails0[h.id]
		t.Logf("MEASURE slow disk: %s had %d failed renewal(s)", g.name(h.id), fails)
		if ls.State == callback.StateFailed || fails > 1 {
			t.Errorf("%s: state %s, %d failed renewals during the slow window", g.name(h.id), ls.State, fails)
		}
	}
	t.Logf("MEASURE slow disk: %d requests answered >= %v late; sanlock renewals with timeouts or errors: %d", slow, delay, slBad-slBad0)
	if sanlockLogHas(t, g.sl, "check_our_lease failed") {
		t.Error("sanlock's lockspace failed on the slow disk")
	}
	for _, h := range g.msg {
		checkNotFired(t, g.name(h.id), h.wd, end)
	}
}

// checkNotFired checks that a fake watchdog never fired and was still being
// fed at until (less a feeding interval and some slack).
func checkNotFired(t *testing.T, who, path string, until time.Time) {
	t.Helper()
	evs := testimg.ReadWatchdog(t, path)
	if e, ok := testimg.FindWatchdog(evs, "fire"); ok {
		t.Errorf("%s watchdog fired at %v", who, e.At.Format("15:04:05.000"))
	}
	var last time.Time
	for _, e := range evs {
		if e.What == "keepalive" {
			last = e.At
		}
	}
	if last.Before(until.Add(-2 * time.Second)) {
		t.Errorf("%s watchdog: last keepalive at %v, want one after %v", who, last.Format("15:04:05.000"), until.Add(-2*time.Second).Format("15:04:05.000"))
	}
}
