package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// Liveness interop between a real sanlock daemon and sanlock-msg daemons
// in one lockspace, at io_timeout 1: renewal 2 s (+0.5 s), FAIL 8 s and
// DEAD 68 s after a host's last renewal, acquire wait 68 s.
const (
	ioTimeout     = 1
	renewalPeriod = 2500 * time.Millisecond // 2·io + 0.5 s, sanlock's cadence
	hostFail      = 8 * time.Second         // 8·io
	hostDead      = 68 * time.Second        // 8·io + W (60 s)
)

// TestMain raises -test.parallel (default GOMAXPROCS) unless it was given:
// the daemon tests spend minutes waiting on sanlock's timeouts, not on the
// CPU, and must overlap for the package to finish in a few minutes.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "16")
	}
	os.Exit(m.Run())
}

// msgDaemon is a `sanlock-msg daemon` process started for a test.
type msgDaemon struct {
	bin      string // the sanlock-msg binary
	runDir   string
	hostName string
	logPath  string
	pid      int
	done     chan struct{}    // closed when the process has exited
	state    *os.ProcessState // how it exited; set before done is closed
}

// startMsgDaemon starts `sanlock-msg daemon --watchdog none -e hostName
// EXTRA...` in runDir (a new short directory if empty; its state directory
// is runDir/state, so a daemon restarted on the same runDir finds its
// outbox) and waits until it answers. EXTRA is appended, so a --watchdog in it replaces none. At
// cleanup it is shut down with --force and, if still running, killed by
// pid.
func startMsgDaemon(t *testing.T, hostName, runDir string, extra ...string) *msgDaemon {
	t.Helper()
	if runDir == "" {
		// Short: a socket path must fit in 108 bytes.
		dir, err := os.MkdirTemp("", "slm-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		runDir = dir
	}
	logPath := filepath.Join(t.TempDir(), "sanlock-msg-"+hostName+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	args := append([]string{"daemon", "--run-dir", runDir, "--state-dir", filepath.Join(runDir, "state"), "--watchdog", "none", "-e", hostName}, extra...)
	cmd := exec.Command(testimg.Binary(t), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &msgDaemon{bin: testimg.Binary(t), runDir: runDir, hostName: hostName, logPath: logPath, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		d.state = cmd.ProcessState
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := callback.Dial(context.Background(), runDir); err == nil {
			c.Close()
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("sanlock-msg daemon %s exited at start:\n%s", hostName, d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sanlock-msg daemon %s does not answer after 15 s:\n%s", hostName, d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *msgDaemon) stop(t *testing.T) {
	select {
	case <-d.done:
	default:
		d.cli("shutdown", "--force", "--wait", "--timeout", "20s")
		select {
		case <-d.done:
		case <-time.After(25 * time.Second):
			t.Logf("sanlock-msg daemon %s (pid %d) still running after shutdown --force; killing it", d.hostName, d.pid)
			d.kill()
		}
	}
	if t.Failed() {
		t.Logf("log of sanlock-msg daemon %s (pid %d):\n%s", d.hostName, d.pid, d.log())
	}
}

func (d *msgDaemon) log() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// kill sends SIGKILL to the daemon (our child, by pid) and waits for it.
func (d *msgDaemon) kill() {
	syscall.Kill(d.pid, syscall.SIGKILL)
	<-d.done
}

// cli runs a sanlock-msg client verb against this daemon.
func (d *msgDaemon) cli(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	cmd := exec.Command(d.bin, append(args, "--run-dir", d.runDir)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		return out.String(), errb.String() + err.Error(), -1
	}
	return out.String(), errb.String(), code
}

// mustCLI runs a client verb and fails the test if it does not exit 0.
func (d *msgDaemon) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := d.cli(args...)
	if code != 0 {
		t.Fatalf("sanlock-msg %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// hosts returns host-status for lockspace ls, through the client library.
func (d *msgDaemon) hosts(t *testing.T, ls string) map[uint64]callback.HostStatus {
	t.Helper()
	c, err := callback.Dial(context.Background(), d.runDir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hs, err := c.HostStatus(context.Background(), ls)
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint64]callback.HostStatus{}
	for _, h := range hs {
		m[h.HostID] = h
	}
	return m
}

// status returns the daemon's status.
func (d *msgDaemon) status(t *testing.T) *callback.DaemonStatus {
	t.Helper()
	c, err := callback.Dial(context.Background(), d.runDir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// add joins host id in lockspace LS on img with io_timeout 1 and returns
// how long it took.
func (d *msgDaemon) add(t *testing.T, img string, id int) time.Duration {
	t.Helper()
	start := time.Now()
	d.mustCLI(t, "add-lockspace", "-s", spec("LS", id, img, 0), "-o", fmt.Sprint(ioTimeout))
	return time.Since(start)
}

// sanlockHost is one `h` line of `sanlock client gets -h 1`.
type sanlockHost struct {
	Generation, Timestamp uint64
	State                 string
}

// sanlockHosts returns the hosts a real sanlock daemon sees in its
// lockspaces: `sanlock client gets -h 1` prints
// "h HOST_ID gen G timestamp T STATE".
func sanlockHosts(t *testing.T, s *testimg.Sanlock) map[uint64]sanlockHost {
	t.Helper()
	out, err := s.Client("gets", "-h", "1")
	if err != nil {
		t.Fatalf("sanlock client gets: %v: %s", err, out)
	}
	m := map[uint64]sanlockHost{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 7 || f[0] != "h" || f[2] != "gen" || f[4] != "timestamp" {
			continue
		}
		id, _ := strconv.ParseUint(f[1], 10, 64)
		gen, _ := strconv.ParseUint(f[3], 10, 64)
		ts, _ := strconv.ParseUint(f[5], 10, 64)
		m[id] = sanlockHost{Generation: gen, Timestamp: ts, State: f[6]}
	}
	return m
}

// sanlockRenewals returns a real sanlock daemon's renewal history of
// lockspace LS (`sanlock client renewal`): how many renewals, and how many
// report I/O timeouts or errors.
func sanlockRenewals(t *testing.T, s *testimg.Sanlock) (n, bad int) {
	t.Helper()
	out, err := s.Client("renewal", "-s", "LS")
	if err != nil {
		t.Fatalf("sanlock client renewal: %v: %s", err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "timestamp=") {
			continue
		}
		n++
		if !strings.Contains(l, "next_timeouts=0") || !strings.Contains(l, "next_errors=0") {
			bad++
		}
	}
	return n, bad
}

// sanlockAdd runs add_lockspace on s for host id on img and returns its
// output, error and duration.
func sanlockAdd(s *testimg.Sanlock, img string, id int) (string, error, time.Duration) {
	start := time.Now()
	out, err := s.Client("add_lockspace", "-o", fmt.Sprint(ioTimeout), "-s", spec("LS", id, img, 0))
	return out, err, time.Since(start)
}

// pair is one lockspace image with a real sanlock daemon holding host id 1
// and a sanlock-msg daemon holding host id 2.
type pair struct {
	img     string
	sl      *testimg.Sanlock
	msg     *msgDaemon
	slJoin  time.Duration // sanlock's add_lockspace
	msgJoin time.Duration // our add-lockspace
}

// newPair makes a pair; msgFlags are extra flags for our daemon (for
// example a fake watchdog).
func newPair(t *testing.T, tag string, msgFlags ...string) *pair {
	t.Helper()
	testimg.RequireSanlock(t)
	p := &pair{img: testimg.File(t, 2<<20)}
	testimg.SanlockInit(t, "LS", p.img, 0, ioTimeout)
	p.sl = testimg.StartSanlock(t, "sl-"+tag)
	p.msg = startMsgDaemon(t, "slm-"+tag, "", msgFlags...)
	var out string
	var err error
	out, err, p.slJoin = sanlockAdd(p.sl, p.img, 1)
	if err != nil {
		t.Fatalf("sanlock add_lockspace host 1: %v: %s", err, out)
	}
	p.msgJoin = p.msg.add(t, p.img, 2)
	p.waitLive(t)
	return p
}

// waitLive waits until each daemon sees the other LIVE with generation 1.
func (p *pair) waitLive(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(4 * renewalPeriod)
	for {
		sl, ours := sanlockHosts(t, p.sl)[2], p.msg.hosts(t, "LS")[1]
		if sl.State == "LIVE" && ours.State == "LIVE" {
			if sl.Generation != 1 || ours.Generation != 1 {
				t.Fatalf("generations: sanlock sees host 2 at %d, we see host 1 at %d; want 1 and 1", sl.Generation, ours.Generation)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not mutually LIVE after %v: sanlock sees host 2 %+v, we see host 1 %+v", 4*renewalPeriod, sl, ours)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDaemonInterop_liveness: sanlock (host 1) and sanlock-msg (host 2)
// see each other LIVE with the right generation, and both keep renewing
// for more than 10 renewal periods without a failure. It also measures
// join times and renewal cadences on the same image.
func TestDaemonInterop_liveness(t *testing.T) {
	t.Parallel()
	p := newPair(t, "live")
	t.Logf("MEASURE join at io_timeout 1: sanlock add_lockspace %.2fs, sanlock-msg add-lockspace %.2fs",
		p.slJoin.Seconds(), p.msgJoin.Seconds())

	// Our CLI, as a user would run it.
	var hs struct {
		Lockspace string                `json:"lockspace"`
		Hosts     []callback.HostStatus `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(p.msg.mustCLI(t, "host-status", "-s", "LS", "--json")), &hs); err != nil {
		t.Fatal(err)
	}
	var h1 *callback.HostStatus
	for i := range hs.Hosts {
		if hs.Hosts[i].HostID == 1 {
			h1 = &hs.Hosts[i]
		}
	}
	if h1 == nil || h1.State != "LIVE" || h1.Generation != 1 || h1.Runs != "sanlock" || h1.HostName != "sl-live" || h1.IOTimeout != 1 {
		t.Errorf("host-status --json: host 1 is %+v, want LIVE generation 1, plain sanlock, sl-live, io_timeout 1", h1)
	}
	// And sanlock's own view of us.
	out, err := p.sl.Client("host_status", "-s", "LS", "-D")
	if err != nil || !strings.Contains(out, "owner_name=slm-live") {
		t.Errorf("sanlock client host_status -D does not show our host name: %v\n%s", err, out)
	}

	// Watch both hosts' timestamps on disk, as our daemon reads them, for
	// more than 10 renewal periods.
	watch := 11 * renewalPeriod
	changes := map[uint64][]time.Time{}
	last := map[uint64]uint64{}
	startOurs := p.msg.status(t).Lockspaces[0].Renewals
	startSL, _ := sanlockRenewals(t, p.sl)
	end := time.Now().Add(watch)
	for time.Now().Before(end) {
		hosts := p.msg.hosts(t, "LS")
		now := time.Now()
		for _, id := range []uint64{1, 2} {
			h := hosts[id]
			if h.State != "LIVE" {
				t.Fatalf("host %d is %s during the watch", id, h.State)
			}
			if h.Timestamp != last[id] {
				if last[id] != 0 && h.Timestamp < last[id] {
					t.Errorf("host %d timestamp went back from %d to %d", id, last[id], h.Timestamp)
				}
				last[id] = h.Timestamp
				changes[id] = append(changes[id], now)
			}
		}
		if sl := sanlockHosts(t, p.sl)[2]; sl.State != "LIVE" {
			t.Fatalf("sanlock sees host 2 %s during the watch", sl.State)
		}
		time.Sleep(100 * time.Millisecond)
	}

	ls := p.msg.status(t).Lockspaces[0]
	if n := ls.Renewals - startOurs; n < 10 || ls.RenewFails != 0 || ls.Health != "ok" || ls.Generation != 1 {
		t.Errorf("sanlock-msg: %d renewals in %v (want >= 10), %d failures, health %s, generation %d",
			n, watch, ls.RenewFails, ls.Health, ls.Generation)
	}
	n, bad := sanlockRenewals(t, p.sl)
	if n-startSL < 10 || bad != 0 {
		t.Errorf("sanlock: %d renewals in %v (want >= 10), %d with timeouts or errors", n-startSL, watch, bad)
	}
	if sl := sanlockHosts(t, p.sl); sl[1].State != "LIVE" || sl[2].State != "LIVE" || sl[2].Generation != 1 {
		t.Errorf("sanlock after the watch: %+v, want hosts 1 and 2 LIVE, host 2 at generation 1", sl)
	}
	for _, c := range []struct {
		id   uint64
		name string
	}{{1, "sanlock"}, {2, "sanlock-msg"}} {
		mean, lo, hi := intervals(changes[c.id][1:]) // the first change is when the watch began
		t.Logf("MEASURE renewal cadence at io_timeout 1, %s (host %d): mean %.2fs, min %.2fs, max %.2fs over %d renewals",
			c.name, c.id, mean, lo, hi, len(changes[c.id])-2)
		if mean < 2 || mean > 3 {
			t.Errorf("%s renews every %.2fs on average, want about 2.5s", c.name, mean)
		}
	}
	p.msg.mustCLI(t, "rem-lockspace", "-s", spec("LS", 2, p.img, 0))
	if sl := sanlockHosts(t, p.sl)[2]; sl.State != "FREE" && sl.State != "LIVE" {
		t.Errorf("after rem-lockspace sanlock sees host 2 %s", sl.State)
	}
}

// intervals returns the mean, min and max of the gaps between ts, in
// seconds.
func intervals(ts []time.Time) (mean, lo, hi float64) {
	if len(ts) < 2 {
		return 0, 0, 0
	}
	lo = math.Inf(1)
	for i := 1; i < len(ts); i++ {
		d := ts[i].Sub(ts[i-1]).Seconds()
		lo, hi = min(lo, d), max(hi, d)
	}
	return ts[len(ts)-1].Sub(ts[0]).Seconds() / float64(len(ts)-1), lo, hi
}

// TestDaemonInterop_busy: neither daemon takes the other's live host id;
// each gets its busy error after the 68 s acquire wait, and the holders
// keep their generation.
func TestDaemonInterop_busy(t *testing.T) {
	t.Parallel()
	p := newPair(t, "busy")
	t.Run("sanlock cannot take sanlock-msg's host id", func(t *testing.T) {
		t.Parallel()
		s3 := testimg.StartSanlock(t, "sl-thief")
		out, err, took := sanlockAdd(s3, p.img, 2)
		if err == nil || !strings.Contains(out, "-262") {
			t.Fatalf("sanlock add_lockspace of live host 2: %v: %s; want -262 (HOSTID_BUSY)", err, out)
		}
		if took < hostDead {
			t.Errorf("sanlock gave up after %v, want after the %v acquire wait", took, hostDead)
		}
		t.Logf("sanlock refused after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(out))
	})
	t.Run("sanlock-msg cannot take sanlock's host id", func(t *testing.T) {
		t.Parallel()
		d4 := startMsgDaemon(t, "slm-thief", "")
		start := time.Now()
		_, errOut, code := d4.cli("add-lockspace", "-s", spec("LS", 1, p.img, 0), "-o", "1")
		took := time.Since(start)
		if code != 1 || !strings.Contains(errOut, `host_id 1 held by live host "sl-busy", generation 1`) {
			t.Fatalf("add-lockspace of live host 1: exit %d: %s; want 1 and the busy error naming sl-busy, generation 1", code, errOut)
		}
		if took < hostDead {
			t.Errorf("refused after %v, want after the %v acquire wait", took, hostDead)
		}
		if st := d4.status(t); len(st.Lockspaces) != 0 {
			t.Errorf("the thief still lists %+v", st.Lockspaces)
		}
		t.Logf("sanlock-msg refused after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(errOut))
	})
	t.Cleanup(func() {
		// After both attempts, nothing was stolen.
		if sl := sanlockHosts(t, p.sl); sl[2].State != "LIVE" || sl[2].Generation != 1 || sl[1].Generation != 1 {
			t.Errorf("after the attempts sanlock sees %+v; want host 2 LIVE at generation 1", sl)
		}
		if ours := p.msg.hosts(t, "LS"); ours[1].State != "LIVE" || ours[1].Generation != 1 {
			t.Errorf("after the attempts we see host 1 %+v; want LIVE at generation 1", ours[1])
		}
		if ls := p.msg.status(t).Lockspaces[0]; ls.Health != "ok" || ls.RenewFails != 0 {
			t.Errorf("our lockspace after the attempts: health %s, %d failed renewals", ls.Health, ls.RenewFails)
		}
		if _, bad := sanlockRenewals(t, p.sl); bad != 0 {
			t.Errorf("sanlock had %d renewals with timeouts or errors", bad)
		}
	})
}

// stateTimes polls state(now) every 100 ms until it returns DEAD or the
// limit passes, and returns when FAIL and DEAD were first seen.
func stateTimes(t *testing.T, limit time.Duration, state func() string) (failAt, deadAt time.Time) {
	t.Helper()
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		s := state()
		now := time.Now()
		switch s {
		case "FAIL":
			if failAt.IsZero() {
				failAt = now
			}
		case "DEAD":
			if failAt.IsZero() {
				t.Errorf("DEAD without FAIL first")
			}
			return failAt, now
		case "LIVE":
			if !failAt.IsZero() {
				t.Errorf("LIVE again after FAIL")
			}
		default:
			t.Errorf("state %s", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not DEAD within %v (FAIL at %v)", limit, failAt)
	return
}

// killAfterRenewal waits until age() (seconds since the victim's last
// renewal) is small, then calls kill, and returns when the victim last
// renewed.
func killAfterRenewal(t *testing.T, age func() float64, kill func()) time.Time {
	t.Helper()
	end := time.Now().Add(3 * renewalPeriod)
	for time.Now().Before(end) {
		if a := age(); a < 0.3 {
			last := time.Now().Add(-time.Duration(a * float64(time.Second)))
			kill()
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the victim did not renew within 3 renewal periods")
	return time.Time{}
}

// checkTimes checks FAIL and DEAD against sanlock's rules: 8·io and
// 8·io + W after the host's last renewal. An observer notices within one
// renewal period (sanlock reads its peers only when it renews; we poll
// faster), and sanlock counts in whole seconds, which adds up to 1 s;
// polling and running `sanlock client` add a few hundred ms.
func checkTimes(t *testing.T, who string, last, failAt, deadAt time.Time) {
	t.Helper()
	f, d := failAt.Sub(last), deadAt.Sub(last)
	t.Logf("MEASURE %s: FAIL %.2fs and DEAD %.2fs after the victim's last renewal (sanlock's rule: %v and %v)",
		who, f.Seconds(), d.Seconds(), hostFail, hostDead)
	const early, late = 500 * time.Millisecond, renewalPeriod + 1500*time.Millisecond
	if f < hostFail-early || f > hostFail+late {
		t.Errorf("%s: FAIL %v after the last renewal, want %v (-%v, +%v)", who, f, hostFail, early, late)
	}
	if d < hostDead-early || d > hostDead+late {
		t.Errorf("%s: DEAD %v after the last renewal, want %v (-%v, +%v)", who, d, hostDead, early, late)
	}
}

// TestDaemonInterop_killSanlockMsg: after our daemon is killed, sanlock
// sees host 2 FAIL then DEAD at sanlock's times, and a second sanlock
// daemon then takes host id 2 over.
func TestDaemonInterop_killSanlockMsg(t *testing.T) {
	t.Parallel()
	p := newPair(t, "killmsg")
	last := killAfterRenewal(t, func() float64 { return p.msg.status(t).Lockspaces[0].LastRenewalAge }, p.msg.kill)
	s3 := testimg.StartSanlock(t, "sl-heir2")
	type result struct {
		out  string
		err  error
		took time.Duration
	}
	takeover := make(chan result, 1)
	started := false
	failAt, deadAt := stateTimes(t, hostDead+3*renewalPeriod, func() string {
		s := sanlockHosts(t, p.sl)[2].State
		if s == "FAIL" && !started {
			// The acquire wait (68 s from now) ends after DEAD.
			started = true
			go func() {
				out, err, took := sanlockAdd(s3, p.img, 2)
				takeover <- result{out, err, took}
			}()
		}
		return s
	})
	checkTimes(t, "sanlock watching killed sanlock-msg", last, failAt, deadAt)
	r := <-takeover
	if r.err != nil {
		t.Fatalf("sanlock takeover of dead host 2: %v: %s", r.err, r.out)
	}
	if done := failAt.Add(r.took); done.Before(deadAt.Add(-renewalPeriod)) {
		t.Errorf("takeover finished %v before host 2 was DEAD", deadAt.Sub(done))
	}
	waitFor(t, 3*renewalPeriod, "sanlock sees host 2 LIVE at generation 2", func() bool {
		h := sanlockHosts(t, p.sl)[2]
		return h.State == "LIVE" && h.Generation == 2
	})
}

// TestDaemonInterop_killSanlock: after the sanlock daemon is killed, our
// daemon sees host 1 FAIL then DEAD at sanlock's times, and a second
// sanlock-msg daemon then takes host id 1 over.
func TestDaemonInterop_killSanlock(t *testing.T) {
	t.Parallel()
	p := newPair(t, "killsl")
	time.Sleep(renewalPeriod) // a change seen, so LastChange is a renewal
	lastRenewal := killAfterRenewal(t, func() float64 { return p.msg.hosts(t, "LS")[1].LastChangeAge }, func() {
		syscall.Kill(p.sl.Pid, syscall.SIGKILL) // our child, started by testimg
	})
	d3 := startMsgDaemon(t, "slm-heir1", "")
	type result struct {
		errOut string
		code   int
		took   time.Duration
	}
	takeover := make(chan result, 1)
	started := false
	var last callback.HostStatus
	failAt, deadAt := stateTimes(t, hostDead+3*renewalPeriod, func() string {
		last = p.msg.hosts(t, "LS")[1]
		if last.State == "FAIL" && !started {
			started = true
			go func() {
				start := time.Now()
				_, errOut, code := d3.cli("add-lockspace", "-s", spec("LS", 1, p.img, 0), "-o", "1")
				takeover <- result{errOut, code, time.Since(start)}
			}()
		}
		return last.State
	})
	checkTimes(t, "sanlock-msg watching killed sanlock", lastRenewal, failAt, deadAt)
	if got := last.DeadAt.Sub(last.LastChange); got != hostDead {
		t.Errorf("dead_at - last_change = %v, want %v", got, hostDead)
	}
	r := <-takeover
	if r.code != 0 {
		t.Fatalf("sanlock-msg takeover of dead host 1: exit %d: %s", r.code, r.errOut)
	}
	if st := d3.status(t); len(st.Lockspaces) != 1 || st.Lockspaces[0].Generation != 2 {
		t.Errorf("heir's lockspace %+v, want host 1 at generation 2", st.Lockspaces)
	}
	waitFor(t, 3*renewalPeriod, "we see host 1 LIVE at generation 2, run by sanlock-msg", func() bool {
		h := p.msg.hosts(t, "LS")[1]
		return h.State == "LIVE" && h.Generation == 2 && h.Runs == "sanlock-msg"
	})
}

// TestDaemonInterop_restart: a sanlock-msg daemon killed with -9 and
// restarted rejoins with a new generation: at once with the same -e host
// name (sanlock's fast reacquire), after the 68 s acquire wait with
// another name. The restart reuses the run directory with its stale
// socket and pid file.
func TestDaemonInterop_restart(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name           string
		sameName       bool
		minTook, maxTk time.Duration
	}{
		{"same host name", true, 0, 3 * renewalPeriod},
		{"other host name", false, hostDead, hostDead + 3*renewalPeriod},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tag := "rs"
			if !tt.sameName {
				tag = "ro"
			}
			p := newPair(t, tag)
			p.msg.kill()
			name := p.msg.hostName
			if !tt.sameName {
				name += "-new"
			}
			d := startMsgDaemon(t, name, p.msg.runDir)
			took := d.add(t, p.img, 2)
			t.Logf("MEASURE rejoin after kill -9 (%s): %.1fs", tt.name, took.Seconds())
			if took < tt.minTook || took > tt.maxTk {
				t.Errorf("rejoin took %v, want %v..%v", took, tt.minTook, tt.maxTk)
			}
			if st := d.status(t); st.Lockspaces[0].Generation != 2 || st.Lockspaces[0].HostName != name {
				t.Errorf("rejoined as %+v, want generation 2, host name %s", st.Lockspaces[0], name)
			}
			waitFor(t, 3*renewalPeriod, "sanlock sees host 2 LIVE at generation 2", func() bool {
				h := sanlockHosts(t, p.sl)[2]
				return h.State == "LIVE" && h.Generation == 2
			})
		})
	}
}

// TestDaemonInterop_badInput: the daemon refuses bad add-lockspace input
// with clear errors and survives a malformed request on its socket.
func TestDaemonInterop_badInput(t *testing.T) {
	t.Parallel()
	testimg.RequireSanlock(t)
	img := testimg.File(t, 2<<20)
	testimg.SanlockInit(t, "LS", img, 0, ioTimeout)
	zeros := testimg.File(t, 2<<20)
	d := startMsgDaemon(t, "slm-bad", "")

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not a lockspace", []string{"-s", spec("LS", 1, zeros, 0), "-o", "1"}, 1, "no valid lockspace"},
		{"name mismatch", []string{"-s", spec("OTHER", 1, img, 0), "-o", "1"}, 1, "wrong lockspace name"},
		{"io_timeout 0", []string{"-s", spec("LS", 1, img, 0), "-o", "0"}, 2, "io_timeout 0"},
		{"no such file", []string{"-s", spec("LS", 1, img+".missing", 0), "-o", "1"}, 1, "no such file"},
		{"host_id out of range", []string{"-s", spec("LS", 2001, img, 0), "-o", "1"}, 2, "-s: host id 2001 out of range 1..2000"},
		{"misaligned offset", []string{"-s", spec("LS", 1, img, 100), "-o", "1"}, 1, "offset 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := d.cli(append([]string{"add-lockspace"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.code, tt.want)
			}
		})
	}

	d.add(t, img, 1)
	_, errOut, code := d.cli("add-lockspace", "-s", spec("LS", 2, img, 0), "-o", "1")
	if code != 1 || !strings.Contains(errOut, "already joined") {
		t.Errorf("second add: exit %d, %q; want 1 and 'already joined'", code, errOut)
	}

	// A malformed request: an error line, then the connection is closed.
	nc, err := net.Dial("unix", callback.SocketPath(d.runDir))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(nc, "{this is not json\n")
	r := bufio.NewReader(nc)
	line, err := r.ReadString('\n')
	if err != nil || !strings.Contains(line, `"code":"invalid"`) {
		t.Errorf("malformed request: got %q, %v; want an invalid-request error", line, err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Error("connection still open after a malformed request")
	}
	// The daemon still serves, and its lockspace still renews.
	if st := d.status(t); len(st.Lockspaces) != 1 || st.Lockspaces[0].Health != "ok" {
		t.Errorf("after bad input: %+v", st.Lockspaces)
	}
	if out, _, code := d.cli("shutdown"); code != 1 {
		t.Errorf("shutdown with a lockspace joined: exit %d, %s; want refused", code, out)
	}
}

// waitFor polls cond every 100 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("not true after %v: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
