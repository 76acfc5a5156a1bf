package interop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// WD_RESET fencing at io_timeout 1, between sanlock-msg daemons whose
// watchdogs are fakes (a fire makes the daemon exit 137, as if the host
// had been reset), and with sanlock 3.8's sanlk-reset and a python3-sanlock
// stand-in for sanlk-resetd.
//
// After a target acks "resetting" its watchdog gets a 1 s timeout, so it
// fires about a second after the ack is on disk; the ack goes out at the
// target's next message poll (250 ms idle), after our send reached disk at
// the sender's next (fast) poll. Peers see the target DEAD host_dead (68 s)
// after its last renewal.
const (
	// fireBound bounds send → fire: two polls, the ack write, the 1 s
	// timeout, and scheduling slack on a loaded CI machine.
	fireBound = 5 * time.Second
	// resetBound bounds a whole `reset`: accept, fire, then host_dead
	// after the last renewal, plus one renewal period to notice.
	resetBound = fireBound + hostDead + 2*renewalPeriod
)

// fenceHost is a sanlock-msg daemon with a fake watchdog.
type fenceHost struct {
	*msgDaemon
	id int
	wd string // the fake watchdog's event file
}

// newFenceGroup starts one daemon per entry of kinds ("fake" or
// "fake-broken", the watchdog kind), as host ids 1, 2, ..., joins them to
// lockspace LS on a new image made by our init at io_timeout 1, and waits
// until host 1 sees every other host LIVE.
func newFenceGroup(t *testing.T, tag string, kinds ...string) []*fenceHost {
	t.Helper()
	img := msgImage(t)
	hs := make([]*fenceHost, len(kinds))
	for i, kind := range kinds {
		wd := filepath.Join(t.TempDir(), fmt.Sprintf("wd%d", i+1))
		d := startMsgDaemon(t, fmt.Sprintf("%s-%d", tag, i+1), "", "--watchdog", kind+":"+wd)
		hs[i] = &fenceHost{msgDaemon: d, id: i + 1, wd: wd}
		d.add(t, img, i+1)
	}
	waitFor(t, 4*renewalPeriod, "host 1 sees every host LIVE", func() bool {
		seen := hs[0].hosts(t, "LS")
		for _, h := range hs[1:] {
			if seen[uint64(h.id)].State != "LIVE" {
				return false
			}
		}
		return true
	})
	return hs
}

// exitStatus waits up to within for the daemon to exit and returns its
// status.
func (d *msgDaemon) exitStatus(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
		return d.state.ExitCode()
	case <-time.After(within):
		t.Fatalf("daemon %s still running after %v", d.hostName, within)
		return 0
	}
}

// checkFed checks that a watchdog that must stay untouched shows only its
// open and keepalives at most 1.5 s apart (the keeper feeds every second)
// up to at least until, and nothing else.
func checkFed(t *testing.T, who, path string, until time.Time) {
	t.Helper()
	evs := testimg.ReadWatchdog(t, path)
	if len(evs) < 2 || !strings.HasPrefix(evs[0].What, "open ") {
		t.Fatalf("%s watchdog: %v, want an open and keepalives", who, evs)
	}
	for i, e := range evs[1:] {
		if e.What != "keepalive" {
			t.Errorf("%s watchdog: %v; want only keepalives: %v", who, e, evs)
			return
		}
		if gap := e.At.Sub(evs[i].At); gap > 1500*time.Millisecond {
			t.Errorf("%s watchdog: %v without a keepalive before %v", who, gap, e)
		}
	}
	if last := evs[len(evs)-1].At; last.Before(until) {
		t.Errorf("%s watchdog: last keepalive at %v, want one after %v", who, last.Format("15:04:05.000"), until.Format("15:04:05.000"))
	}
}

// isResetting reports whether rec is a RESETTING reply from host id,
// delivered to a listener.
func isResetting(rec callback.Record, id uint64) bool {
	return rec.Type == callback.RecordMessage && rec.FromHostID == id && rec.Code == 2 && rec.Status == "delivered"
}

// TestReset_sendFires: `send -c reset --wait` from host 1 is acked
// "resetting"; host 2's watchdog gets a 1 s timeout and fires, and its
// daemon exits 137; host 1 got the RESETTING reply, and its own watchdog
// kept being fed.
func TestReset_sendFires(t *testing.T) {
	t.Parallel()
	hs := newFenceGroup(t, "fire", "fake", "fake")
	sender, target := hs[0], hs[1]
	replies := sender.listen(t)

	start := time.Now()
	out, errOut, code := sender.cli("send", "-s", "LS", "-i", "2", "-c", "reset", "--wait")
	if code != 0 || !strings.Contains(out, "host 2 generation 1: acked resetting") {
		t.Fatalf("send -c reset --wait: exit %d: %s%s; want exit 0 and host 2 acked resetting", code, out, errOut)
	}
	acked := time.Since(start)
	if st := target.exitStatus(t, fireBound+2*time.Second); st != 137 {
		t.Errorf("target exited with status %d, want 137", st)
	}

	evs := testimg.ReadWatchdog(t, target.wd)
	set, okSet := testimg.FindWatchdog(evs, "settimeout 1")
	fire, okFire := testimg.FindWatchdog(evs, "fire")
	if !okSet || !okFire || fire.At.Before(set.At) {
		t.Fatalf("target watchdog: %v; want settimeout 1, then fire", evs)
	}
	for _, e := range evs {
		if e.What == "keepalive" && e.At.After(set.At) {
			t.Errorf("target watchdog fed after its reset: %v", evs)
		}
	}
	toFire := fire.At.Sub(start)
	t.Logf("MEASURE WD_RESET at io_timeout 1: send→acked %.3fs, send→settimeout %.3fs, send→fire %.3fs",
		acked.Seconds(), set.At.Sub(start).Seconds(), toFire.Seconds())
	if toFire > fireBound {
		t.Errorf("fire %v after the send, want within %v", toFire, fireBound)
	}
	if d := fire.At.Sub(set.At); d < 900*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("fire %v after settimeout 1, want about 1 s", d)
	}
	if reason, ok, err := watchdog.ReadMarker(target.runDir); !ok || err != nil || !strings.Contains(reason, "host 1") {
		t.Errorf("target's reset marker: %q, %v, %v; want one naming host 1", reason, ok, err)
	}

	// The RESETTING reply reached host 1's listener, once, as a message.
	if rec := replies.next(t, 2*time.Second); !isResetting(rec, 2) || rec.Native || rec.FromGeneration != 1 {
		t.Errorf("host 1's listener got %+v; want RESETTING from host 2 generation 1, delivered", rec)
	}
	replies.none(t, 2*time.Second)
	// The sender's watchdog saw only keepalives over the same period.
	checkFed(t, "sender", sender.wd, fire.At.Add(time.Second))
}

// resetJSON is `reset --json`'s report.
type resetJSON struct {
	Outcome string `json:"outcome"`
	Fenced  bool   `json:"fenced"`
	Steps   []struct {
		At   float64 `json:"at_sec"`
		What string  `json:"what"`
	} `json:"steps"`
}

// step returns the first step whose text contains s.
func (r resetJSON) step(s string) (float64, bool) {
	for _, st := range r.Steps {
		if strings.Contains(st.What, s) {
			return st.At, true
		}
	}
	return 0, false
}

func (r resetJSON) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "outcome %s fenced %v", r.Outcome, r.Fenced)
	for _, st := range r.Steps {
		fmt.Fprintf(&b, "\n  %7.3fs %s", st.At, st.What)
	}
	return b.String()
}

// runReset runs `reset -s LS -i id --json` on d and returns its exit
// status, report, stderr and duration. It may run in any goroutine.
func runReset(t *testing.T, d *msgDaemon, id int) (int, resetJSON, string, time.Duration) {
	t.Helper()
	start := time.Now()
	out, errOut, code := d.cli("reset", "-s", "LS", "-i", fmt.Sprint(id), "--json")
	took := time.Since(start)
	var rep resetJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Errorf("reset --json: exit %d: not JSON: %v\n%s%s", code, err, out, errOut)
	}
	return code, rep, errOut, took
}

// TestReset_verb: `reset` fences a sanlock-msg host and exits 0 once it is
// DEAD; against a watchdog that fails to fire it says FENCE FAILED and
// exits 1.
func TestReset_verb(t *testing.T) {
	t.Parallel()
	t.Run("dead", func(t *testing.T) {
		t.Parallel()
		hs := newFenceGroup(t, "rdead", "fake", "fake")
		code, rep, errOut, took := runReset(t, hs[0].msgDaemon, 2)
		t.Logf("reset report: %s", rep)
		t.Logf("MEASURE reset at io_timeout 1: %.1fs from start to DEAD", took.Seconds())
		if code != 0 || rep.Outcome != "dead" || !rep.Fenced {
			t.Fatalf("reset: exit %d, %s, stderr %q; want 0 and outcome dead", code, rep, errOut)
		}
		for _, s := range []string{"sent WD_RESET", "must fire by", "renewals stopped", "is DEAD"} {
			if _, ok := rep.step(s); !ok {
				t.Errorf("no step %q in the report", s)
			}
		}
		// The ack and the RESETTING reply come in one write: either is
		// seen first.
		_, acked := rep.step("acked seq 1: resetting")
		_, replied := rep.step("RESETTING reply from host 2 generation 1")
		if !acked && !replied {
			t.Errorf("the report shows neither the resetting ack nor the RESETTING reply")
		}
		if took < hostDead || took > resetBound {
			t.Errorf("reset took %v, want %v..%v", took, hostDead, resetBound)
		}
		if st := hs[1].exitStatus(t, time.Second); st != 137 {
			t.Errorf("target exited with status %d, want 137", st)
		}
		checkFed(t, "sender", hs[0].wd, time.Now().Add(-2*time.Second))
	})
	t.Run("watchdog fails", func(t *testing.T) {
		t.Parallel()
		hs := newFenceGroup(t, "rfail", "fake", "fake-broken")
		code, rep, errOut, took := runReset(t, hs[0].msgDaemon, 2)
		t.Logf("reset report: %s", rep)
		if code != 1 || rep.Outcome != "watchdog-failed" || rep.Fenced || !strings.Contains(errOut, "FENCE FAILED") {
			t.Fatalf("reset: exit %d, %s, stderr %q; want 1, outcome watchdog-failed and FENCE FAILED", code, rep, errOut)
		}
		if _, ok := rep.step("FENCE FAILED"); !ok {
			t.Errorf("no FENCE FAILED step in the report")
		}
		t.Logf("MEASURE reset against a broken watchdog: FENCE FAILED after %.1fs", took.Seconds())
		if _, ok := testimg.FindWatchdog(testimg.ReadWatchdog(t, hs[1].wd), "broken-fire"); !ok {
			t.Errorf("target watchdog: %v; want a broken-fire", testimg.ReadWatchdog(t, hs[1].wd))
		}
		select {
		case <-hs[1].done:
			t.Errorf("the target with the broken watchdog exited (%v); it must keep running", hs[1].state)
		default:
		}
	})
}

// TestReset_notForThisHost: a reset naming another generation is refused
// at send, and a reset to host 3 leaves host 2 alone: host 2's watchdog
// is never touched.
func TestReset_notForThisHost(t *testing.T) {
	t.Parallel()
	hs := newFenceGroup(t, "other", "fake", "fake", "fake")
	sender, bystander, target := hs[0], hs[1], hs[2]

	out, errOut, code := sender.cli("send", "-s", "LS", "-i", "2", "-g", "7", "-c", "reset", "--wait")
	if code != 1 || !strings.Contains(errOut, "generation mismatch") {
		t.Errorf("send -c reset -g 7 to generation 1: exit %d: %s%s; want 1 and generation mismatch", code, out, errOut)
	}
	out, errOut, code = sender.cli("send", "-s", "LS", "-i", "3", "-c", "reset", "--wait")
	if code != 0 || !strings.Contains(out, "acked resetting") {
		t.Fatalf("send -c reset to host 3: exit %d: %s%s", code, out, errOut)
	}
	if st := target.exitStatus(t, fireBound); st != 137 {
		t.Errorf("host 3 exited with status %d, want 137", st)
	}
	fire, ok := testimg.FindWatchdog(testimg.ReadWatchdog(t, target.wd), "fire")
	if !ok {
		t.Fatalf("host 3's watchdog did not fire: %v", testimg.ReadWatchdog(t, target.wd))
	}
	time.Sleep(2 * renewalPeriod)
	checkFed(t, "host 2", bystander.wd, fire.At.Add(2*renewalPeriod-time.Second))
	st := bystander.status(t)
	if !st.Watchdog.Feeding || st.Watchdog.Reset || st.Lockspaces[0].Messages.Resetting {
		t.Errorf("host 2 watchdog %+v, resetting %v; want feeding, no reset", st.Watchdog, st.Lockspaces[0].Messages.Resetting)
	}
	if _, ok, _ := watchdog.ReadMarker(bystander.runDir); ok {
		t.Error("host 2 has a reset marker")
	}
}

// TestReset_pendingAfterRestart: a daemon started with a reset marker in
// its run directory (left by a daemon that accepted a WD_RESET) never
// feeds its watchdog: it opens it, reports the latched reset, and fires
// after W.
func TestReset_pendingAfterRestart(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "slm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := watchdog.WriteMarker(dir, "WD_RESET from host 1 generation 1 in lockspace LS"); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(t.TempDir(), "wd")
	d := startMsgDaemon(t, "pending", dir, "--watchdog", "fake:"+wd, "--watchdog-timeout", "3s")
	st := d.status(t)
	if st.Watchdog.Feeding || !st.Watchdog.Reset || !strings.Contains(st.Watchdog.Decision, "WD_RESET from host 1") {
		t.Errorf("status watchdog %+v; want not feeding, the reset latched with its reason", st.Watchdog)
	}
	if code := d.exitStatus(t, 10*time.Second); code != 137 {
		t.Errorf("exit status %d, want 137", code)
	}
	evs := testimg.ReadWatchdog(t, wd)
	if len(evs) != 2 || evs[0].What != "open timeout=3" || evs[1].What != "fire" {
		t.Fatalf("watchdog: %v; want open timeout=3 then fire, no keepalive", evs)
	}
	if d := evs[1].At.Sub(evs[0].At); d < 2900*time.Millisecond || d > 3500*time.Millisecond {
		t.Errorf("fired %v after the open, want W = 3 s", d)
	}
}

// TestReset_sanlkReset: a real sanlk-reset, run against the real sanlock
// daemon of host 1, resets our host 2: our daemon acks, replies RESETTING
// (which sanlk-reset accepts), and its watchdog fires; sanlk-reset then
// waits for host 2 to be DEAD and reports the reset done.
func TestReset_sanlkReset(t *testing.T) {
	t.Parallel()
	wd := filepath.Join(t.TempDir(), "wd")
	p := newPair(t, "sreset", "--watchdog", "fake:"+wd)

	// sanlk-reset gives up by itself after 300 s; DEAD comes after 68 s.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sanlk-reset", "-D", "reset", "LS:2")
	cmd.Env = append(os.Environ(), "SANLOCK_RUN_DIR="+p.sl.RunDir)
	type result struct {
		out  string
		code int
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		out, _ := cmd.CombinedOutput()
		res <- result{string(out), cmd.ProcessState.ExitCode()}
	}()

	if st := p.msg.exitStatus(t, 3*renewalPeriod+fireBound); st != 137 {
		t.Errorf("our daemon exited with status %d, want 137", st)
	}
	fire, ok := testimg.FindWatchdog(testimg.ReadWatchdog(t, wd), "fire")
	if !ok {
		t.Fatalf("our watchdog did not fire: %v", testimg.ReadWatchdog(t, wd))
	}
	t.Logf("MEASURE sanlk-reset → our fire: %.2fs", fire.At.Sub(start).Seconds())

	// At io_timeout 1 sanlk-reset 3.8.5 logs "disable native_timeout due
	// to zero io_timeout": it means io_timeout != 10, and leaves it to wait
	// for DEAD.
	r := <-res
	took := time.Since(start)
	t.Logf("sanlk-reset exited %d after %.1fs:\n%s", r.code, took.Seconds(), r.out)
	// 3.8.5 logs "got event 2 0 from host 2 1 in ls LS:2" (-D), then
	// "host resetting in ls LS:2" once it takes it as the reply.
	if !strings.Contains(r.out, "from host 2 1 in ls LS:2") || !strings.Contains(r.out, "host resetting in ls LS:2") {
		t.Errorf("sanlk-reset did not take a RESETTING reply from host 2 generation 1")
	}
	if r.code != 0 || !strings.Contains(r.out, "reset done") {
		t.Errorf("sanlk-reset: exit %d after %v; want 0 and reset done", r.code, took)
	}
}

// pythonOn starts a python3-sanlock script (and its ARGS) talking to
// sanlock daemon s, and waits for it to print "ready".
func pythonOn(t *testing.T, s *testimg.Sanlock, script string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(testimg.Python, append([]string{"-c", script}, args...)...)
	cmd.Env = append(os.Environ(), "SANLOCK_RUN_DIR="+s.RunDir)
	py := startProc(t, cmd)
	if first := py.next(t, 10*time.Second); first != "ready" {
		t.Fatalf("python3-sanlock printed %q: %s", first, py.stderr())
	}
	return py
}

// TestReset_toSanlock: our `send -c reset` to a host running real sanlock
// reaches python3-sanlock's get_event as event 1 (RESET) from our host id,
// naming that host's current generation: exactly what sanlk-resetd acts on
// (it tests event & RESET and ignores the generation). sanlk-resetd itself
// needs wdmd and a watchdog device, which CI lacks.
func TestReset_toSanlock(t *testing.T) {
	t.Parallel()
	p := newPair(t, "tosl")
	py := pythonOn(t, p.sl, eventScript, "30")
	out, errOut, code := p.msg.cli("send", "-s", "LS", "-i", "1", "-c", "reset", "--wait")
	if code != 0 || !strings.Contains(out, "seq 1 id 2:1:1\nhost 1 generation 1: delivered-unacknowledged") {
		t.Errorf("send -c reset -i 1 --wait: exit %d: %s%s; want seq 1, delivered-unacknowledged", code, out, errOut)
	}
	lines, err := py.wait()
	if err != nil || len(lines) == 0 {
		t.Fatalf("python3-sanlock: %v, no event: %s", err, py.stderr())
	}
	t.Logf("get_event on the sanlock host: %q", lines)
	// The data is the seq; the generation is the target's, filled in as
	// sanlock's CUR_GENERATION would.
	want := map[string]uint64{"host_id": 1, "generation": 1, "event": 1, "data": 1, "from_host_id": 2, "from_generation": 1}
	for _, l := range lines {
		var ev map[string]uint64
		if err := json.Unmarshal([]byte(l), &ev); err != nil || !mapsEqual(ev, want) {
			t.Errorf("get_event: %s (%v), want %v", l, err, want)
		}
	}
}

// resetdScript plays sanlk-resetd with python3-sanlock: once registered
// for events of LS it prints "ready"; it answers the first RESET event
// (printing it) as sanlk-resetd does, with RESETTING to the sender, its
// generation, data 0 and ALL_HOSTS, prints "replied" and exits. It gives
// up when no event comes for argv[1] seconds.
const resetdScript = `
import json, select, sys
import sanlock
fd = sanlock.reg_event(b"LS")
print("ready", flush=True)
while select.select([fd], [], [], float(sys.argv[1]))[0]:
    for ev in sanlock.get_event(fd):
        if ev["event"] & 1:
            print(json.dumps(ev), flush=True)
            sanlock.set_event(b"LS", ev["from_host_id"], ev["from_generation"], 2, 0, sanlock.SETEV_ALL_HOSTS)
            print("replied", flush=True)
            sys.exit(0)
sys.exit("no RESET event")
`

// TestReset_resetdReply: a plain sanlock host where a python3-sanlock
// script plays sanlk-resetd (RESETTING to the sender, with ALL_HOSTS) is
// fenced by our `reset`: the broadcast reply is delivered once to our
// listeners (status delivered) and accepted by `reset`, which, once the
// sanlock daemon is killed, reports it DEAD.
func TestReset_resetdReply(t *testing.T) {
	t.Parallel()
	p := newPair(t, "resetd")
	ours := p.msg.listen(t)
	resetd := pythonOn(t, p.sl, resetdScript, "30")
	type result struct {
		code int
		rep  resetJSON
		err  string
	}
	res := make(chan result, 1)
	go func() {
		code, rep, errOut, _ := runReset(t, p.msg, 1)
		res <- result{code, rep, errOut}
	}()
	if ev, done := resetd.next(t, 4*renewalPeriod), resetd.next(t, time.Second); done != "replied" {
		t.Fatalf("the sanlk-resetd stand-in got %s and printed %q: %s", ev, done, resetd.stderr())
	}
	if rec := ours.next(t, 3*renewalPeriod); !isResetting(rec, 1) || !rec.Native || rec.FromGeneration != 1 {
		t.Errorf("our listener got %+v; want the RESETTING event from host 1 generation 1, delivered", rec)
	}
	// Now the "reset": the sanlock host stops renewing.
	syscall.Kill(p.sl.Pid, syscall.SIGKILL) // our child, started by testimg
	var r result
	select {
	case r = <-res:
	case <-time.After(resetBound):
		t.Fatalf("reset still running %v after the sanlock host stopped", resetBound)
	}
	t.Logf("reset report: %s", r.rep)
	if r.code != 0 || r.rep.Outcome != "dead" {
		t.Errorf("reset: exit %d, stderr %q; want 0 and outcome dead", r.code, r.err)
	}
	if _, ok := r.rep.step("RESETTING reply from host 1 generation 1"); !ok {
		t.Errorf("reset did not report the RESETTING reply")
	}
	ours.none(t, 500*time.Millisecond) // delivered once, not at each renewal
}
