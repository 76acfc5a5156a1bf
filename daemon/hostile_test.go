package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
)

// floodEnv makes the test binary a flooding client (see floodHelper): its
// value is "N RUNDIR", N connections to the daemon of RUNDIR.
const floodEnv = "DAEMON_TEST_FLOOD"

// floodReport is what floodHelper and flood print.
type floodReport struct {
	Held    int    `json:"held"`    // connections the daemon serves
	Refused int    `json:"refused"` // connections refused with a limit line
	Refusal string `json:"refusal"` // the first refusal's error
	Other   string `json:"other,omitempty"`
	// After the idle timeout:
	IdleClosed int    `json:"idle_closed"` // held connections closed with an idle line
	Idle       string `json:"idle"`        // the first idle line's error
}

// floodHelper opens n connections to the daemon of dir, classifies them
// (flood), prints the report, and on a line on stdin waits for the daemon
// to close the held ones as idle (idle) and prints the report again. It
// exits when stdin closes.
func floodHelper(spec string) int {
	nStr, dir, _ := strings.Cut(spec, " ")
	n, _ := strconv.Atoi(nStr)
	enc := json.NewEncoder(os.Stdout)
	rep, held := flood(dir, n)
	enc.Encode(rep)
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 0
	}
	idle(held, &rep)
	enc.Encode(rep)
	io.Copy(io.Discard, in)
	return 0
}

// flood opens n connections to the daemon of dir and sends each an
// unknown op: a served connection answers it with its id, a refused one
// has its limit line (id 0) and ends. It returns the served connections,
// which then stay idle.
func flood(dir string, n int) (floodReport, []*bufio.Reader) {
	var rep floodReport
	var conns []net.Conn
	for range n {
		nc, err := net.Dial("unix", callback.SocketPath(dir))
		if err != nil {
			rep.Other = err.Error()
			break
		}
		nc.Write([]byte(`{"v":1,"op":"probe","id":1}` + "\n"))
		conns = append(conns, nc)
	}
	var held []*bufio.Reader
	for _, nc := range conns {
		r := bufio.NewReader(nc)
		nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := r.ReadBytes('\n')
		var resp callback.Response
		switch {
		case err != nil:
			rep.Other = fmt.Sprintf("no answer: %v", err)
		case json.Unmarshal(line, &resp) != nil:
			rep.Other = fmt.Sprintf("bad line %q", line)
		case resp.ID == 1 && resp.Code == callback.CodeUnsupported:
			rep.Held++
			held = append(held, r)
			nc.SetReadDeadline(time.Time{})
			continue
		case resp.ID == 0 && resp.Code == callback.CodeLimit:
			rep.Refused++
			if rep.Refusal == "" {
				rep.Refusal = resp.Error
			}
		default:
			rep.Other = fmt.Sprintf("unexpected %s", line)
		}
		nc.Close()
	}
	return rep, held
}

// idle waits for the daemon to close each held connection after its idle
// line.
func idle(held []*bufio.Reader, rep *floodReport) {
	for _, r := range held {
		line, err := r.ReadBytes('\n')
		var resp callback.Response
		if err == nil && json.Unmarshal(line, &resp) == nil && resp.Code == callback.CodeLimit && resp.ID == 0 {
			if _, err := r.ReadByte(); errors.Is(err, io.EOF) {
				rep.IdleClosed++
				if rep.Idle == "" {
					rep.Idle = resp.Error
				}
			}
		}
	}
}

// flooder is a floodHelper running as another uid.
type flooder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *json.Decoder
}

func startFlooder(t *testing.T, helper, dir string, n int, cred *syscall.Credential) (*flooder, floodReport) {
	t.Helper()
	cmd := exec.Command(helper)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", floodEnv, n, dir))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &flooder{cmd: cmd, stdin: stdin, out: json.NewDecoder(stdout)}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return f, f.report(t)
}

func (f *flooder) report(t *testing.T) floodReport {
	t.Helper()
	var rep floodReport
	if err := f.out.Decode(&rep); err != nil {
		t.Fatalf("flooder: %v", err)
	}
	return rep
}

// idleReport asks the flooder to wait for the idle timeout.
func (f *flooder) idleReport(t *testing.T) floodReport {
	t.Helper()
	if _, err := f.stdin.Write([]byte("idle\n")); err != nil {
		t.Fatal(err)
	}
	return f.report(t)
}

// renewalWatch samples a lockspace's status until stopped.
type renewalWatch struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []callback.LockspaceStatus
	err     error
}

func watchRenewals(c *callback.Client, name string) *renewalWatch {
	w := &renewalWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := c.Status(ctx)
			cancel()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			for _, ls := range st.Lockspaces {
				if ls.Name == name {
					w.samples = append(w.samples, ls)
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// check stops the watch and checks that the lockspace renewed on time
// throughout: never unhealthy, no failed renewal, and no gap between
// successive renewals seen as long as renewal_warn (6·io_timeout), the
// point at which sanlock starts to worry.
func (w *renewalWatch) check(t *testing.T, io time.Duration) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("status during the attack: %v", w.err)
	}
	if len(w.samples) < 10 {
		t.Fatalf("only %d status samples", len(w.samples))
	}
	warn := delta.NewTimeouts(io, time.Second).RenewalWarn()
	first, last := w.samples[0], w.samples[len(w.samples)-1]
	var maxGap time.Duration
	prev := first.LastRenewal
	for _, s := range w.samples {
		if s.Health != "ok" && s.Health != "late" {
			t.Errorf("health %q at renewal %d (last renewal %v)", s.Health, s.Renewals, s.LastRenewal)
		}
		if gap := s.LastRenewal.Sub(prev); gap > maxGap {
			maxGap = gap
		}
		prev = s.LastRenewal
	}
	span := last.LastRenewal.Sub(first.LastRenewal)
	t.Logf("%d samples over %v: renewals %d → %d, largest gap between renewals %v (renewal_warn %v), renew_fails %d",
		len(w.samples), span.Round(time.Millisecond), first.Renewals, last.Renewals, maxGap, warn, last.RenewFails)
	if maxGap >= warn || last.RenewFails != 0 {
		t.Errorf("renewals were late: largest gap %v (renewal_warn %v), %d failed", maxGap, warn, last.RenewFails)
	}
	if n := last.Renewals - first.Renewals; n < int64(span/(delta.NewTimeouts(io, time.Second).RenewalInterval()+time.Second)) {
		t.Errorf("%d renewals in %v", n, span)
	}
}

// TestHostile attacks a daemon (host 2 of a lockspace shared with host 1)
// through its socket while it renews, with real time at io_timeout 1:
//
//   - two non-root users open 1000 connections each: the first is held to
//     the per-uid cap, the second to the total cap; every refused
//     connection gets an error line saying which cap;
//   - root still gets in past the total cap, up to its own per-uid cap;
//   - every idle connection is closed after the idle timeout with an error
//     line, and the users can connect again;
//   - malformed, wrong and oversized lines on hundreds of connections each
//     get their error line;
//   - a listener that never reads sits there while messages arrive; the
//     listener that reads gets every one, in order;
//   - a non-root user in the daemon's group may send a user code but not
//     reset, not even to a live host.
//
// Throughout, the daemon renews on time: its status is sampled every
// 200 ms and its last_renewal never falls behind by renewal_warn.
func TestHostile(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	const (
		group      = 54322
		maxConns   = 500
		perUID     = 400
		floodN     = 1000
		idleTimout = 20 * time.Second
	)
	base, helper := helperBinary(t)
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	info := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a := startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-a" })
	b := startDaemon(t, ds, func(c *daemon.Config) {
		c.HostName, c.Logger = "host-b", info
		c.RunDir = base + "/run-b"
		c.SocketMode, c.Group = 0o666, fmt.Sprint(group)
		c.MaxConns, c.MaxConnsPerUID, c.IdleTimeout = maxConns, perUID, idleTimout
	})
	ca, cb := a.dial(t), b.dial(t)
	ctx := ctxT(t, 5*time.Minute)
	errc := make(chan error, 1)
	go func() {
		_, err := cb.AddLockspace(ctx, "LS:2:img:0", callback.AddOptions{IOTimeout: time.Second})
		errc <- err
	}()
	if _, err := ca.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitHostState(t, ca, 2, "LIVE")
	waitHostState(t, cb, 1, "LIVE")

	// Root's connections to b from here on: the status watch, a listener
	// that never reads, and one that does.
	watch := watchRenewals(b.dial(t), "LS")
	deaf := dialRaw(t, b.dir)
	deaf.send(`{"op":"register","name":"LS","id":1}` + "\n")
	if resp := deaf.response(); !resp.OK || resp.ID != 1 {
		t.Fatalf("register: %+v", resp)
	}
	reg, err := callback.Register(ctx, b.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const rootOpen = 4 // cb, the watch, deaf, reg

	// Two non-root users flood; the first is held to its own cap, the
	// second to what is left of the total.
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	other := &syscall.Credential{Uid: 65533, Gid: 65533}
	start := time.Now()
	fa, ra := startFlooder(t, helper, b.dir, floodN, nobody)
	t.Logf("uid 65534: %+v", ra)
	if ra.Held != perUID || ra.Refused != floodN-perUID || ra.Other != "" ||
		!strings.Contains(ra.Refusal, fmt.Sprintf("uid 65534 has %d connections open", perUID)) {
		t.Errorf("uid 65534: %+v; want %d held, the rest refused at its cap", ra, perUID)
	}
	fb, rb := startFlooder(t, helper, b.dir, floodN, other)
	t.Logf("uid 65533: %+v", rb)
	if rb.Held != maxConns-perUID-rootOpen || rb.Refused != floodN-rb.Held || rb.Other != "" ||
		!strings.Contains(rb.Refusal, fmt.Sprintf("the daemon has %d connections open", maxConns)) {
		t.Errorf("uid 65533: %+v; want %d held, the rest refused at the total cap", rb, maxConns-perUID-rootOpen)
	}
	// Root gets in past the total cap, up to its own.
	rr, rootHeld := flood(b.dir, floodN)
	t.Logf("root: %+v", rr)
	if rr.Held != perUID-rootOpen || rr.Refused != floodN-rr.Held || rr.Other != "" ||
		!strings.Contains(rr.Refusal, fmt.Sprintf("uid 0 has %d connections open", perUID)) {
		t.Errorf("root: %+v; want %d held past the total cap, the rest refused at its cap", rr, perUID-rootOpen)
	}
	if took := time.Since(start); took > idleTimout/2 {
		t.Fatalf("the floods took %v; the counts above assume none of their connections went idle (%v)", took, idleTimout)
	}
	st, err := cb.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := maxConns + perUID - rootOpen; st.Connections != want || st.ConnectionsRefused != int64(ra.Refused+rb.Refused+rr.Refused) {
		t.Errorf("status: %d connections, %d refused; want %d and %d", st.Connections, st.ConnectionsRefused,
			want, ra.Refused+rb.Refused+rr.Refused)
	}
	cb.Close()

	// While they idle: messages arrive, past the listener that never
	// reads, to the one that does.
	const msgs = 20
	for i := range msgs {
		rep, err := ca.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2}, Code: 1 << 16, Wait: true})
		if err != nil || !rep.OK {
			t.Fatalf("send %d: %+v, %v", i, rep, err)
		}
	}
	for i := range msgs {
		rec, err := reg.Next(ctx)
		if err != nil || rec.Seq != uint64(i+1) || rec.Status != "delivered" {
			t.Fatalf("record %d: %+v, %v", i, rec, err)
		}
	}

	// The idle ones are closed with a line saying so.
	for _, rep := range []floodReport{fa.idleReport(t), fb.idleReport(t)} {
		if rep.IdleClosed != rep.Held || !strings.Contains(rep.Idle, "closing the idle connection") {
			t.Errorf("idle: %+v; want every held connection closed with an idle line", rep)
		}
	}
	idle(rootHeld, &rr)
	if rr.IdleClosed != rr.Held {
		t.Errorf("root idle: %+v; want every held connection closed", rr)
	}
	// The watch polls and the listeners are exempt: only they are left,
	// and a new client.
	cb = b.dial(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := cb.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Connections == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections after the idle timeout, want 4 (the watch, two listeners, this client)", st.Connections)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Malformed, wrong and oversized lines, on 200 connections at once:
	// lines that are whole but wrong, then one that closes the connection.
	wrong := []string{"\n", "null\n", "[]\n", `{"op":7}` + "\n", `{"op":"x","op":"y"}` + "\n", `{"op":"status","v":3}` + "\n"}
	closers := []string{"}{\n", `{"op":"status","pad":"` + strings.Repeat("p", callback.MaxLine) + `"}` + "\n"}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("unix", callback.SocketPath(b.dir))
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(time.Minute))
			r := bufio.NewReader(nc)
			lines := append(wrong[i%len(wrong):], closers[i%len(closers)])
			for j, l := range lines {
				go nc.Write([]byte(l))
				line, err := r.ReadBytes('\n')
				var resp callback.Response
				if err != nil || json.Unmarshal(line, &resp) != nil || resp.OK || resp.Error == "" {
					errs <- fmt.Errorf("line %.20q: answer %q, %v", l, line, err)
					return
				}
				if j == len(lines)-1 {
					if _, err := r.ReadByte(); err == nil {
						errs <- fmt.Errorf("line %.20q: connection still open", l)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A member of the daemon's group may send a user code, not a reset,
	// even to a live host; a user outside the group may do neither.
	inGroup := runHelper(t, helper, sendEnv, b.dir, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{group}})
	if inGroup.SendCode != "" || inGroup.ResetCode != callback.CodePermission {
		t.Errorf("member of the group: %+v; want its user code sent and its reset refused", inGroup)
	}
	outsider := runHelper(t, helper, sendEnv, b.dir, nobody)
	if outsider.SendCode != callback.CodePermission || outsider.ResetCode != callback.CodePermission {
		t.Errorf("outsider: %+v; want both refused", outsider)
	}
	if m := messages(t, cb); m.Sent != 1 {
		t.Errorf("host 2 sent %d messages, want only the member's user code", m.Sent)
	}
	if _, err := reg.Next(ctxT(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("listener after the attack: %v, want it open and quiet", err)
	}

	watch.check(t, time.Second)
}
