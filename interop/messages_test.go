package interop_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// Messages between sanlock-msg daemons, and between sanlock-msg and real
// sanlock daemons, through the CLI, at io_timeout 1.

// msgImage makes a new image holding lockspace LS (io_timeout 1) with our
// init and returns its path.
func msgImage(t *testing.T) string {
	t.Helper()
	img := testimg.File(t, 2<<20)
	slm(t, "init", "-o", fmt.Sprint(ioTimeout), "-s", spec("LS", 0, img, 0))
	return img
}

// msgCluster starts n sanlock-msg daemons on a new image, joins them to LS
// as host ids 1..n (concurrently), and waits until each sees every other
// LIVE.
func msgCluster(t *testing.T, tag string, n int) (string, []*msgDaemon) {
	t.Helper()
	img := msgImage(t)
	ds := make([]*msgDaemon, n)
	for i := range ds {
		ds[i] = startMsgDaemon(t, fmt.Sprintf("slm-%s%d", tag, i+1), "")
	}
	errs := make(chan string, n)
	for i, d := range ds {
		go func() {
			out, errOut, code := d.cli("add-lockspace", "-s", spec("LS", i+1, img, 0), "-o", fmt.Sprint(ioTimeout))
			if code != 0 {
				errs <- fmt.Sprintf("host %d: add-lockspace: exit %d: %s%s", i+1, code, out, errOut)
				return
			}
			errs <- ""
		}()
	}
	for range ds {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
	waitFor(t, 4*renewalPeriod, "every daemon sees every other LIVE", func() bool {
		for _, d := range ds {
			hs := d.hosts(t, "LS")
			for id := 1; id <= n; id++ {
				if h := hs[uint64(id)]; h.State != "LIVE" || h.Generation != 1 {
					return false
				}
			}
		}
		return true
	})
	return img, ds
}

// msgStatus returns the message status of d's lockspace LS.
func (d *msgDaemon) msgStatus(t *testing.T) callback.MessageStatus {
	t.Helper()
	return *d.joinedLS(t).Messages
}

// joinedLS returns the status of d's lockspace LS, which must be joined.
func (d *msgDaemon) joinedLS(t *testing.T) callback.LockspaceStatus {
	t.Helper()
	for _, ls := range d.status(t).Lockspaces {
		if ls.Name == "LS" && ls.Messages != nil {
			return ls
		}
	}
	t.Fatalf("daemon %s has no joined lockspace LS", d.hostName)
	return callback.LockspaceStatus{}
}

// signal sends sig to the daemon (our child, by pid).
func (d *msgDaemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(d.pid, sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, d.pid, err)
	}
}

// proc is a child process whose stdout a test reads line by line as it
// comes. It is killed at cleanup.
type proc struct {
	cmd   *exec.Cmd
	lines chan string   // stdout; closed once the process has exited
	done  chan struct{} // closed with lines
	err   error         // Wait's result, once done is closed
	mu    sync.Mutex
	errb  bytes.Buffer
}

// startProc starts cmd (with its Stdout and Stderr unset).
func startProc(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = lockedWriter{&p.mu, &p.errb}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		p.err = cmd.Wait()
		close(p.lines)
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range p.lines {
		}
	})
	return p
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errb.String()
}

// next returns the next line, failing the test if the process exits or
// prints nothing within d.
func (p *proc) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("%s exited (%v): %s", filepath.Base(p.cmd.Path), p.err, p.stderr())
		}
		return l
	case <-time.After(d):
		t.Fatalf("%s printed nothing within %v: %s", filepath.Base(p.cmd.Path), d, p.stderr())
	}
	return ""
}

// wait returns the lines still to come and the exit error.
func (p *proc) wait() ([]string, error) {
	var rest []string
	for l := range p.lines {
		rest = append(rest, l)
	}
	return rest, p.err
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// listener is a running `sanlock-msg listen --json`.
type listener struct{ *proc }

// listen starts `sanlock-msg listen -s LS --json` on d and waits until
// the daemon counts it.
func (d *msgDaemon) listen(t *testing.T) *listener {
	t.Helper()
	before := d.msgStatus(t).Listeners
	l := &listener{startProc(t, exec.Command(d.bin, "listen", "-s", "LS", "--json", "--run-dir", d.runDir))}
	waitFor(t, 10*time.Second, "the daemon counts the listener", func() bool {
		select {
		case <-l.done:
			t.Fatalf("listen exited: %v: %s", l.err, l.stderr())
		default:
		}
		return d.msgStatus(t).Listeners > before
	})
	return l
}

// next returns the next record, failing the test if none comes within d.
func (l *listener) next(t *testing.T, d time.Duration) callback.Record {
	t.Helper()
	line := l.proc.next(t, d)
	var rec callback.Record
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("listen printed %q: %v", line, err)
	}
	return rec
}

// none checks that no record arrives within d.
func (l *listener) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case line, ok := <-l.lines:
		if ok {
			t.Errorf("unexpected record %s", line)
		} else {
			t.Errorf("listen exited: %s", l.stderr())
		}
	case <-time.After(d):
	}
}

// percentile returns the p-th percentile (0..100) of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

// TestMessages_manySenders: with two and three sanlock-msg daemons on one
// image, every other host sends 200 messages with `send --wait` (senders
// concurrently, each send after the previous one is acked) to host 1,
// where `listen --json` gets each exactly once, in seq order per sender,
// and every send is acked "delivered". It measures the time of each send.
func TestMessages_manySenders(t *testing.T) {
	t.Parallel()
	const perSender = 200
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d daemons", n), func(t *testing.T) {
			t.Parallel()
			_, ds := msgCluster(t, fmt.Sprintf("many%d-", n), n)
			rx := ds[0]
			l := rx.listen(t)

			type result struct {
				host  int
				times []time.Duration
				total time.Duration
				err   string
			}
			results := make(chan result, n-1)
			for i, d := range ds[1:] {
				host := i + 2
				go func() {
					r := result{host: host}
					start := time.Now()
					for k := 1; k <= perSender; k++ {
						t0 := time.Now()
						out, errOut, code := d.cli("send", "-s", "LS", "-i", "1", "-c", "user0", "--data", fmt.Sprint(k), "--wait")
						r.times = append(r.times, time.Since(t0))
						if code != 0 || !strings.HasPrefix(out, fmt.Sprintf("seq %d id %d:1:%d\n", k, host, k)) ||
							!strings.Contains(out, "host 1 generation 1: acked delivered") {
							r.err = fmt.Sprintf("host %d send %d: exit %d: %s%s", host, k, code, out, errOut)
							break
						}
					}
					r.total = time.Since(start)
					results <- r
				}()
			}

			// Receive while the senders run.
			last := map[uint64]uint64{}
			for got := 0; got < perSender*(n-1); got++ {
				rec := l.next(t, 30*time.Second)
				if rec.Type != callback.RecordMessage || rec.Lockspace != "LS" || rec.FromGeneration != 1 ||
					rec.Code != leader.EventUser0 || rec.Data != rec.Seq || rec.Status != "delivered" || rec.Native {
					t.Fatalf("record %d: %+v, want a user0 message with data = seq, delivered", got, rec)
				}
				if rec.FromHostID < 2 || rec.FromHostID > uint64(n) {
					t.Fatalf("record %d from host %d, want 2..%d", got, rec.FromHostID, n)
				}
				if want := last[rec.FromHostID] + 1; rec.Seq != want {
					t.Fatalf("record %d from host %d: seq %d, want %d (exactly once, in order)", got, rec.FromHostID, rec.Seq, want)
				}
				last[rec.FromHostID] = rec.Seq
			}
			for range ds[1:] {
				r := <-results
				if r.err != "" {
					t.Error(r.err)
					continue
				}
				sorted := slices.Clone(r.times)
				slices.Sort(sorted)
				t.Logf("MEASURE %d daemons, sender host %d: %d sends with --wait via the CLI in %.1fs: p50 %v, p99 %v, max %v; %.0f acked messages/min",
					n, r.host, len(r.times), r.total.Seconds(), percentile(sorted, 50).Round(time.Millisecond),
					percentile(sorted, 99).Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond),
					float64(len(r.times))/r.total.Minutes())
			}
			// Nothing more, not even at the senders' next renewals.
			l.none(t, renewalPeriod+time.Second)
			m := rx.msgStatus(t)
			if m.Delivered != int64(perSender*(n-1)) || m.NoListener != 0 || m.Overflows != 0 || m.BadExt != 0 {
				t.Errorf("receiver's counters %+v, want %d delivered", m, perSender*(n-1))
			}
			for _, d := range ds[1:] {
				if m := d.msgStatus(t); m.Sent != perSender || m.SendOK != perSender || m.Pending != 0 {
					t.Errorf("sender %s's counters %+v, want %d sent and OK", d.hostName, m, perSender)
				}
			}
		})
	}
}

// eventScript registers for lockspace LS events with python3-sanlock,
// prints "ready", then prints each event as JSON until 3 s after the first
// one or until argv[1] seconds have passed.
const eventScript = `
import json, select, sys, time
import sanlock
fd = sanlock.reg_event(b"LS")
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
poller = select.poll()
poller.register(fd, select.POLLIN)
while time.time() < end:
    if not poller.poll(200):
        continue
    for ev in sanlock.get_event(fd):
        print(json.dumps(ev), flush=True)
        end = min(end, time.time() + 3)
sanlock.end_event(fd, b"LS")
`

// TestMessages_sanlockInterop: in a lockspace shared with a real sanlock
// daemon (host 1), sanlock's set_event reaches our listen exactly once,
// and our send reaches sanlock's get_event and ends
// delivered-unacknowledged.
func TestMessages_sanlockInterop(t *testing.T) {
	t.Parallel()
	p := newPair(t, "msg")
	ourGen := p.msg.status(t).Lockspaces[0].Generation

	// sanlock -> sanlock-msg.
	l := p.msg.listen(t)
	if out, err := p.sl.Client("set_event", "-s", "LS", "-i", "2", "-e", "5", "-d", "77"); err != nil {
		t.Fatalf("sanlock client set_event: %v: %s", err, out)
	}
	start := time.Now()
	rec := l.next(t, 4*renewalPeriod)
	t.Logf("MEASURE sanlock set_event -> our listen: %.2fs", time.Since(start).Seconds())
	// 5 is RESET|REBOOT: with --watchdog none this host cannot reset, and
	// says so in its status; nothing resets.
	if rec.Type != callback.RecordMessage || rec.FromHostID != 1 || rec.FromGeneration != 1 || rec.Seq != 0 ||
		rec.Code != 5 || rec.Data != 77 || rec.Generation != 0 || !rec.Native || rec.Status != "reset-unavailable" ||
		!slices.Equal(rec.Codes, []string{"reset", "reboot"}) {
		t.Errorf("record %+v, want a native event from host 1 generation 1: code 5 (reset, reboot), data 77, reset-unavailable", rec)
	}
	// sanlock keeps the bit set for 2 or 3 of its renewals and would
	// deliver the event at each; we deliver it once.
	l.none(t, 3*renewalPeriod+time.Second)
	if m := p.msg.msgStatus(t); m.NativeDelivered != 1 || m.Resetting {
		t.Errorf("counters %+v, want 1 native delivery and no reset", m)
	}
	if st := p.msg.status(t); st.Watchdog.Reset || st.Lockspaces[0].Health != "ok" {
		t.Errorf("after the event: watchdog %+v, lockspace health %s; want no reset, ok", st.Watchdog, st.Lockspaces[0].Health)
	}

	// sanlock-msg -> sanlock: get_event on the sanlock host.
	cmd := exec.Command(testimg.Python, "-c", eventScript, "30")
	cmd.Env = append(os.Environ(), "SANLOCK_RUN_DIR="+p.sl.RunDir)
	py := startProc(t, cmd)
	if first := py.next(t, 10*time.Second); first != "ready" {
		t.Fatalf("python3-sanlock reg_event printed %q: %s", first, py.stderr())
	}
	start = time.Now()
	out, errOut, code := p.msg.cli("send", "-s", "LS", "-i", "1", "-c", "0x20", "--data", "9", "--wait")
	t.Logf("MEASURE our send --wait to a sanlock host: %.2fs", time.Since(start).Seconds())
	if code != 0 || !strings.Contains(out, "host 1 generation 1: delivered-unacknowledged") {
		t.Errorf("send to the sanlock host: exit %d: %s%s; want 0 and delivered-unacknowledged", code, out, errOut)
	}
	lines, err := py.wait()
	if err != nil {
		t.Fatalf("python3-sanlock: %v: %s", err, py.stderr())
	}
	var events []map[string]uint64
	for _, line := range lines {
		var ev map[string]uint64
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("python3-sanlock printed %q: %v", line, err)
		}
		events = append(events, ev)
	}
	want := map[string]uint64{"host_id": 1, "generation": 0, "event": 0x20, "data": 9, "from_host_id": 2, "from_generation": ourGen}
	if len(events) == 0 {
		t.Fatal("get_event returned no event")
	}
	// sanlock itself delivers an event once per new sender timestamp while
	// the bit is set: possibly more than once.
	t.Logf("sanlock's get_event returned the message %d time(s)", len(events))
	for _, ev := range events {
		if !mapsEqual(ev, want) {
			t.Errorf("get_event: %v, want %v", ev, want)
		}
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// TestMessages_badInput: the CLI refuses bad sends with the right exit
// status; a sender sector whose extension checksum fails is ignored and
// counted by the receiver, and its message arrives once the sender
// rewrites it.
func TestMessages_badInput(t *testing.T) {
	t.Parallel()
	img, ds := msgCluster(t, "bad", 2)
	a, b := ds[0], ds[1]
	t.Cleanup(func() {
		// Never leave a stopped daemon to the shutdown at cleanup.
		syscall.Kill(a.pid, syscall.SIGCONT)
		syscall.Kill(b.pid, syscall.SIGCONT)
	})
	// Nobody listens on host 2 yet. --wait: the next send must not queue
	// behind this one.
	if out, errOut, code := a.cli("send", "-s", "LS", "-i", "2", "-c", "user0", "--seq", "50", "--wait"); code != 1 ||
		!strings.Contains(out, "host 2 generation 1: acked no-listener") || !strings.Contains(errOut, "no-listener") {
		t.Fatalf("send --seq 50 --wait: exit %d: %s%s; want 1 and no-listener", code, out, errOut)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown code name", []string{"-i", "2", "-c", "bogus"}, 2, `unknown code "bogus"`},
		{"code 0", []string{"-i", "2", "-c", "0"}, 2, "code 0 is not a message"},
		{"seq equal", []string{"-i", "2", "-c", "user0", "--seq", "50"}, 1, "seq not greater than the last one sent: 50 <= 50"},
		{"seq lower", []string{"-i", "2", "-c", "user0", "--seq", "7"}, 1, "7 <= 50"},
		{"target not live", []string{"-i", "7", "-c", "user0"}, 1, "target host not live: host 7"},
		{"target out of range", []string{"-i", "2001", "-c", "user0"}, 2, "-i: host id 2001 out of range 1..2000"},
		{"generation mismatch", []string{"-i", "2", "-g", "9", "-c", "user0"}, 1, "target generation mismatch: host 2 is at generation 1, not 9"},
		{"to ourselves", []string{"-i", "1", "-c", "user0"}, 1, "cannot send to ourselves"},
		{"lockspace not joined", []string{"-s", "NOPE", "-i", "2", "-c", "user0"}, 1, `lockspace "NOPE" is not joined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"send"}, tt.args...)
			if !slices.Contains(tt.args, "-s") {
				args = append(args, "-s", "LS")
			}
			out, errOut, code := a.cli(args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
	if m := a.msgStatus(t); m.Sent+int64(m.Pending) != 1 {
		t.Errorf("sender's counters %+v, want only the seq 50 message", m)
	}

	t.Run("bad extension checksum", func(t *testing.T) {
		l := b.listen(t)
		if h := b.hosts(t, "LS")[1]; h.BadExt != 0 {
			t.Fatalf("host 1 has %d bad extensions before the corruption", h.BadExt)
		}
		// Host 2 stops reading; host 1 writes its message.
		b.signal(t, syscall.SIGSTOP)
		sent := make(chan string, 1)
		go func() {
			out, errOut, code := a.cli("send", "-s", "LS", "-i", "2", "-c", "user1", "--data", "4242", "--wait")
			sent <- fmt.Sprintf("exit %d: %s%s", code, out, errOut)
		}()
		waitFor(t, 10*time.Second, "host 1's message is on disk", func() bool {
			var r struct {
				Message *struct{ Seq, Data uint64 } `json:"message"`
			}
			if err := json.Unmarshal([]byte(slm(t, "read", "-s", spec("LS", 1, img, 0), "--json")), &r); err != nil {
				t.Fatal(err)
			}
			return r.Message != nil && r.Message.Seq == 51 && r.Message.Data == 4242
		})
		// Host 1 stops writing; one byte of its extension (the seq) goes bad.
		a.signal(t, syscall.SIGSTOP)
		sector := testimg.ReadArea(t, img, 0, 512)
		sector[leader.OffExtSeq] ^= 0x5a
		bad := filepath.Join(t.TempDir(), "sector")
		if err := os.WriteFile(bad, sector, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("dd", "if="+bad, "of="+img, "bs=512", "count=1", "conv=notrunc", "oflag=direct").CombinedOutput(); err != nil {
			t.Fatalf("dd: %v: %s", err, out)
		}
		// Host 2 reads the bad sector: counted, nothing delivered.
		b.signal(t, syscall.SIGCONT)
		waitFor(t, 5*time.Second, "host 2 counts bad extensions of host 1", func() bool {
			return b.hosts(t, "LS")[1].BadExt > 0 && b.msgStatus(t).BadExt > 0
		})
		time.Sleep(time.Second) // more polls of the bad sector
		if m := b.msgStatus(t); m.Delivered != 0 || m.BadExt == 0 {
			t.Errorf("receiver's counters %+v, want nothing delivered and bad extensions counted", m)
		}
		var hs struct {
			Hosts []callback.HostStatus `json:"hosts"`
		}
		if err := json.Unmarshal([]byte(b.mustCLI(t, "host-status", "-s", "LS", "--json")), &hs); err != nil {
			t.Fatal(err)
		}
		for _, h := range hs.Hosts {
			if h.HostID == 1 && (h.BadExt == 0 || h.State != "LIVE") {
				t.Errorf("host-status --json: host 1 %+v, want LIVE with bad_ext counted", h)
			}
		}
		l.none(t, 0)
		// Host 1 rewrites its sector: the message arrives, once.
		a.signal(t, syscall.SIGCONT)
		rec := l.next(t, 3*renewalPeriod)
		if rec.Type != callback.RecordMessage || rec.FromHostID != 1 || rec.Seq != 51 || rec.Data != 4242 ||
			rec.Code != leader.EventUser0<<1 || rec.Status != "delivered" {
			t.Errorf("record %+v, want seq 51 from host 1, user1, data 4242, delivered", rec)
		}
		select {
		case res := <-sent:
			if !strings.Contains(res, "exit 0") || !strings.Contains(res, "host 2 generation 1: acked delivered") {
				t.Errorf("send: %s; want acked delivered", res)
			}
		case <-time.After(3 * renewalPeriod):
			t.Error("the send did not end")
		}
		l.none(t, renewalPeriod)
		if m := b.msgStatus(t); m.Delivered != 1 {
			t.Errorf("receiver delivered %d, want 1", m.Delivered)
		}
	})
}

// TestMessages_pythonListener: `python3 -m sanlock_msg listen` (the
// stdlib-only Python client, from the source tree) registers, prints a
// message sent meanwhile, and exits 0 on the end record when the lockspace
// is removed.
func TestMessages_pythonListener(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(testimg.Python); err != nil && testimg.InCI() {
		t.Fatalf("%s: %v", testimg.Python, err)
	} else if err != nil {
		t.Skipf("%s: %v", testimg.Python, err)
	}
	_, ds := msgCluster(t, "py", 2)
	a, b := ds[0], ds[1]
	cmd := exec.Command(testimg.Python, "-m", "sanlock_msg", "listen", "--run-dir", b.runDir, "LS")
	cmd.Env = append(os.Environ(), "PYTHONPATH=../python", "PYTHONUNBUFFERED=1")
	py := startProc(t, cmd)
	if l := py.next(t, 10*time.Second); l != "registered for lockspace LS" {
		t.Fatalf("first line %q", l)
	}
	if o, errOut, code := a.cli("send", "-s", "LS", "-i", "2", "-c", "user2", "--data", "7", "--wait"); code != 0 ||
		!strings.Contains(o, "acked delivered") {
		t.Fatalf("send: exit %d: %s%s", code, o, errOut)
	}
	if l, want := py.next(t, 10*time.Second), "message from host 1 generation 1: id 1:1:1 seq 1 code 0x40000 (user2) data 7 [delivered]"; l != want {
		t.Errorf("got %q, want %q", l, want)
	}
	b.mustCLI(t, "rem-lockspace", "-s", "LS")
	if l := py.next(t, 10*time.Second); l != "end: lockspace removed" {
		t.Errorf("after rem-lockspace: got %q, want the end record", l)
	}
	if rest, err := py.wait(); err != nil || len(rest) != 0 {
		t.Errorf("python3 -m sanlock_msg listen then printed %q and exited with %v; want exit 0 (stderr %s)", rest, err, py.stderr())
	}
}
