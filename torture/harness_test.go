package torture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/state"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// The torture's cluster: sanlock-msg daemons (real processes) on one image
// at io_timeout 1, each supervised (restarted and joined again after every
// kill), with listener slots (a listen process, started again whenever it
// exits) and sender clients (send processes, one after another), all
// logging Events; and a killer.

const lockspace = "LS"

// config is a torture run's shape.
type config struct {
	hosts       int   // daemons
	daemonKills int   // SIGKILLs of daemons to reach
	seed        int64 // of every random choice
	durable     bool  // false: --state-dir none (the checker must then find losses)
	logDir      string
}

// slots returns host id's listener slots: a manual-ack one ("ID.m",
// listen --manual-ack) and an auto-ack one ("ID.a"), or only one of them,
// in turn. The killer kills manual-ack listeners only on hosts that also
// have an auto-ack one, so that a listener is always registered and no
// message is acked "no-listener".
func slots(id uint64) []string {
	m, a := fmt.Sprintf("%d.m", id), fmt.Sprintf("%d.a", id)
	return [][]string{{m, a}, {m}, {a}}[(id-1)%3]
}

type cluster struct {
	t       *testing.T
	cfg     config
	bin     string
	img     string
	events  *Log // joins and kills
	hosts   []*host
	senders []*sender

	// life ends the supervisors; sending, the senders.
	life, sending          context.Context
	endLife, stopSending   context.CancelFunc
	daemons, listeners, sg sync.WaitGroup
	teardownOnce           sync.Once

	rngMu sync.Mutex
	rng   *rand.Rand
}

// host is one daemon, across its incarnations.
type host struct {
	c                *cluster
	id               uint64
	name             string
	runDir, stateDir string
	daemonLog        *os.File
	slots            []*slot
	// Poked (never blocking) when a listener of this host prints a
	// record, when a send from it is accepted, when a send --wait says
	// this host acked, when a listener elsewhere prints a message from
	// this host: the killer kills right after one of them.
	printed, accepted, acked, arrived chan struct{}

	// counters sums the daemon's message counters over its incarnations,
	// as last polled (what an incarnation counted after its last poll
	// before a kill is missed: they are at least these).
	counters, polled counters
	polledInc        int

	mu       sync.Mutex
	cmd      *exec.Cmd     // the running daemon; nil while down
	exited   chan struct{} // closed when cmd has exited
	inc      int           // incarnations started
	joined   bool          // the current incarnation joined
	stopping bool          // the run is over: no restart
	delay    time.Duration // before the next restart
	ids      []string      // ids accepted by sends from this host
}

// slot is one listener, across its processes.
type slot struct {
	h      *host
	name   string
	manual bool
	log    *Log

	mu  sync.Mutex
	cmd *exec.Cmd // the running listen; nil between processes
	op  int
}

// sender is one client that runs send after send from its host.
type sender struct {
	h    *host
	name string
	num  int
	wait bool // send --wait; else bursts without it
	log  *Log
	rng  *rand.Rand

	mu        sync.Mutex
	cmd       *exec.Cmd // the running send
	op        int
	abandoned bool // killed at the end for never exiting: no end event
}

func newCluster(t *testing.T, cfg config) *cluster {
	c := &cluster{t: t, cfg: cfg, bin: testimg.Binary(t), rng: rand.New(rand.NewSource(cfg.seed))}
	c.img = testimg.File(t, 2<<20)
	if out, err := exec.Command(c.bin, "init", "-o", "1", "-s", fmt.Sprintf("%s:0:%s:0", lockspace, c.img)).CombinedOutput(); err != nil {
		t.Fatalf("init: %v: %s", err, out)
	}
	c.events = c.mustLog("cluster")
	for i := range cfg.hosts {
		id := uint64(i + 1)
		// Short: a socket path must fit in 108 bytes.
		dir, err := os.MkdirTemp("", "slt-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		f, err := os.Create(filepath.Join(cfg.logDir, fmt.Sprintf("daemon-%d.log", id)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		h := &host{c: c, id: id, name: fmt.Sprintf("torture-%d", id), runDir: dir, stateDir: filepath.Join(dir, "state"),
			daemonLog: f, printed: make(chan struct{}, 1), accepted: make(chan struct{}, 1), acked: make(chan struct{}, 1),
			arrived: make(chan struct{}, 1)}
		for _, s := range slots(id) {
			h.slots = append(h.slots, &slot{h: h, name: s, manual: strings.HasSuffix(s, "m"), log: c.mustLog("listen-" + s)})
		}
		c.hosts = append(c.hosts, h)
		for _, wait := range []bool{true, false} {
			name := fmt.Sprintf("%d.n", id)
			if wait {
				name = fmt.Sprintf("%d.w", id)
			}
			c.senders = append(c.senders, &sender{h: h, name: name, num: len(c.senders) + 1, wait: wait, log: c.mustLog("send-" + name),
				rng: rand.New(rand.NewSource(cfg.seed + int64(len(c.senders)) + 1))})
		}
	}
	t.Cleanup(c.killAll)
	c.life, c.endLife = context.WithCancel(context.Background())
	c.sending, c.stopSending = context.WithCancel(context.Background())
	return c
}

// launch starts the daemons' supervisors and the listeners.
func (c *cluster) launch() {
	for _, h := range c.hosts {
		c.daemons.Add(1)
		go func() { defer c.daemons.Done(); h.supervise(c.life) }()
		for _, s := range h.slots {
			c.listeners.Add(1)
			go func() { defer c.listeners.Done(); s.run() }()
		}
	}
}

// allJoined reports whether every daemon runs and joined.
func (c *cluster) allJoined() bool {
	for _, h := range c.hosts {
		if _, joined := h.up(); !joined {
			return false
		}
	}
	return true
}

func (c *cluster) startSenders() {
	for _, s := range c.senders {
		c.sg.Add(1)
		go func() { defer c.sg.Done(); s.run(c.sending) }()
	}
}

// stopSenders stops the senders and waits for their last sends: a send
// --wait ends by its timeout (host_dead + a renewal interval) at the
// latest. Sends still running after 3 minutes are killed, and their
// attempts get no end event.
func (c *cluster) stopSenders() {
	c.stopSending()
	if !waitGroup(&c.sg, 3*time.Minute) {
		for _, s := range c.senders {
			s.abandon()
		}
		c.sg.Wait()
		c.t.Errorf("sends still running 3 minutes after the senders stopped (killed; the checker reports them)")
	}
}

// teardown stops everything and waits for every goroutine, so that none
// logs after the test.
func (c *cluster) teardown() {
	c.teardownOnce.Do(func() {
		c.stopSenders()
		c.stop()
		c.endLife()
		if !waitGroup(&c.listeners, 30*time.Second) {
			c.killAll()
			c.listeners.Wait()
		}
		c.daemons.Wait()
	})
}

// waitGroup waits for wg for at most d; false if it did not finish.
func waitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (c *cluster) mustLog(name string) *Log {
	l, err := CreateLog(c.cfg.logDir, name)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { l.Close() })
	return l
}

// rand returns a random duration in [lo, hi).
func (c *cluster) rand(lo, hi time.Duration) time.Duration {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return lo + time.Duration(c.rng.Int63n(int64(hi-lo)))
}

func (c *cluster) intn(n int) int {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.Intn(n)
}

// killAll kills, by pid, every process of ours still running (cleanup).
func (c *cluster) killAll() {
	for _, h := range c.hosts {
		h.mu.Lock()
		h.stopping = true
		if h.cmd != nil {
			h.cmd.Process.Kill()
		}
		h.mu.Unlock()
		for _, s := range h.slots {
			s.mu.Lock()
			if s.cmd != nil {
				s.cmd.Process.Kill()
			}
			s.mu.Unlock()
		}
	}
	for _, s := range c.senders {
		s.mu.Lock()
		if s.cmd != nil {
			s.cmd.Process.Kill()
		}
		s.mu.Unlock()
	}
}

// host returns host id, or nil.
func (c *cluster) host(id uint64) *host {
	if id < 1 || id > uint64(len(c.hosts)) {
		return nil
	}
	return c.hosts[id-1]
}

// poke signals ch without blocking.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// supervise runs host h's daemon: starts it, joins, and after every kill
// starts and joins it again, until the run stops.
func (h *host) supervise(ctx context.Context) {
	for {
		exited, err := h.startDaemon()
		if errors.Is(err, errStopping) {
			return
		}
		if err != nil {
			h.c.t.Errorf("host %d: %v", h.id, err)
			return
		}
		h.join(ctx, exited)
		select {
		case <-exited:
		case <-ctx.Done():
			return
		}
		h.mu.Lock()
		stop, delay := h.stopping, h.delay
		h.mu.Unlock()
		if stop {
			return
		}
		time.Sleep(delay)
	}
}

// errStopping: the run is over.
var errStopping = errors.New("stopping")

// startDaemon starts a new incarnation and waits until it answers.
func (h *host) startDaemon() (<-chan struct{}, error) {
	h.mu.Lock()
	if h.stopping {
		h.mu.Unlock()
		return nil, errStopping
	}
	h.inc++
	stateDir := h.stateDir
	if !h.c.cfg.durable {
		stateDir = "none"
	}
	fmt.Fprintf(h.daemonLog, "=== incarnation %d at %s\n", h.inc, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(h.c.bin, "daemon", "--run-dir", h.runDir, "--state-dir", stateDir, "--watchdog", "none", "-e", h.name)
	cmd.Stdout, cmd.Stderr = h.daemonLog, h.daemonLog
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		return nil, err
	}
	exited := make(chan struct{})
	h.cmd, h.exited, h.joined = cmd, exited, false
	go func() {
		cmd.Wait()
		close(exited)
		h.mu.Lock()
		if h.cmd == cmd {
			h.cmd, h.joined = nil, false
		}
		h.mu.Unlock()
	}()
	h.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if cl, err := callback.Dial(context.Background(), h.runDir); err == nil {
			cl.Close()
			return exited, nil
		}
		select {
		case <-exited:
			return exited, nil // killed before it answered: the supervisor restarts it
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("incarnation %d does not answer after 30 s", h.inc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// join adds the lockspace to the current incarnation, retrying until it
// joined or the incarnation exited.
func (h *host) join(ctx context.Context, exited <-chan struct{}) {
	spec := fmt.Sprintf("%s:%d:%s:0", lockspace, h.id, h.c.img)
	for attempt := 1; ; attempt++ {
		select {
		case <-exited:
			return
		case <-ctx.Done():
			return
		default:
		}
		jctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		ls, err := addLockspace(jctx, h.runDir, spec)
		cancel()
		if err == nil {
			h.mu.Lock()
			h.joined = true
			inc := h.inc
			h.mu.Unlock()
			h.c.events.Add(Event{Kind: KindJoin, Host: h.id, Incarnation: inc, Generation: ls.Generation})
			return
		}
		select {
		case <-exited:
			return
		default:
		}
		if attempt%10 == 0 {
			h.c.t.Logf("host %d: add-lockspace attempt %d: %v", h.id, attempt, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func addLockspace(ctx context.Context, runDir, spec string) (*callback.LockspaceStatus, error) {
	cl, err := callback.Dial(ctx, runDir)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.AddLockspace(ctx, spec, callback.AddOptions{IOTimeout: time.Second})
}

// kill sends SIGKILL to the running daemon and waits until it is gone;
// false if none was running. The next incarnation starts after delay.
func (h *host) kill(delay time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil || h.stopping {
		return false
	}
	h.delay = delay
	h.c.events.Add(Event{Kind: KindKill, Host: h.id, What: KillDaemon, Incarnation: h.inc})
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	return true
}

func (h *host) up() (running, joined bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmd != nil, h.joined
}

// counters are the daemon counters the torture reports: how often the
// paths it means to exercise were taken.
type counters struct {
	AckEvictions, AckDeferred, Inherited, Redelivered, Returned, HeldBack, Duplicates int64
}

func (a *counters) add(b counters) {
	a.AckEvictions += b.AckEvictions
	a.AckDeferred += b.AckDeferred
	a.Inherited += b.Inherited
	a.Redelivered += b.Redelivered
	a.Returned += b.Returned
	a.HeldBack += b.HeldBack
	a.Duplicates += b.Duplicates
}

// poll adds what the current incarnation counted since the last poll.
// Only the killer's goroutine calls it.
func (h *host) poll(ctx context.Context) {
	h.mu.Lock()
	inc, joined := h.inc, h.joined
	h.mu.Unlock()
	if !joined {
		return
	}
	st, err := h.status(ctx)
	if err != nil {
		return
	}
	if inc != h.polledInc {
		h.counters.add(h.polled)
		h.polled, h.polledInc = counters{}, inc
	}
	h.polled = counters{AckEvictions: st.AckEvictions, AckDeferred: st.AckDeferred, Inherited: st.Inherited,
		Redelivered: st.Redelivered, Returned: st.Returned, HeldBack: st.HeldBack, Duplicates: st.Duplicates}
}

// counted returns the counters summed over every host and incarnation.
func (c *cluster) counted() counters {
	var sum counters
	for _, h := range c.hosts {
		sum.add(h.counters)
		sum.add(h.polled)
	}
	return sum
}

// status returns the lockspace's message status from the running daemon.
func (h *host) status(ctx context.Context) (*callback.MessageStatus, error) {
	cl, err := callback.Dial(ctx, h.runDir)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, ls := range st.Lockspaces {
		if ls.Name == lockspace && ls.Messages != nil {
			return ls.Messages, nil
		}
	}
	return nil, fmt.Errorf("host %d: lockspace %s not joined", h.id, lockspace)
}

// run keeps a listener in slot s: `listen --json --wait` (with
// --manual-ack for manual slots), started again whenever it exits, until
// the host stops.
func (s *slot) run() {
	for op := 1; ; op++ {
		s.h.mu.Lock()
		stop := s.h.stopping
		s.h.mu.Unlock()
		if stop {
			return
		}
		args := []string{"listen", "-s", lockspace, "--json", "--wait", "--run-dir", s.h.runDir}
		if s.manual {
			args = append(args, "--manual-ack")
		}
		cmd, out, errb, err := startPiped(s.h.c.bin, args)
		if err != nil {
			s.h.c.t.Errorf("listener %s: %v", s.name, err)
			return
		}
		s.mu.Lock()
		s.cmd, s.op = cmd, op
		s.mu.Unlock()
		s.log.Add(Event{Kind: KindListener, Host: s.h.id, Client: s.name, Op: op, What: "start", Manual: s.manual})
		dec := json.NewDecoder(out)
		for {
			var rec callback.Record
			if err := dec.Decode(&rec); err != nil {
				if err != io.EOF {
					s.log.Add(Event{Kind: KindListener, Host: s.h.id, Client: s.name, Op: op, What: "garbled", Err: err.Error()})
				}
				io.Copy(io.Discard, out)
				break
			}
			s.log.Add(Event{Kind: KindRecord, Host: s.h.id, Client: s.name, Op: op, Manual: s.manual, Rec: &rec})
			poke(s.h.printed)
			if from := s.h.c.host(rec.FromHostID); from != nil {
				poke(from.arrived)
			}
		}
		cmd.Wait()
		s.mu.Lock()
		s.cmd = nil
		s.mu.Unlock()
		s.log.Add(Event{Kind: KindListener, Host: s.h.id, Client: s.name, Op: op, What: "exit", Exit: cmd.ProcessState.ExitCode(),
			Err: lastLines(errb.String(), 3)})
	}
}

// kill sends SIGKILL to the running listener; false if none runs.
func (s *slot) kill(events *Log) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	events.Add(Event{Kind: KindKill, Host: s.h.id, Client: s.name, Op: s.op, What: KillListener, Manual: s.manual})
	s.cmd.Process.Signal(syscall.SIGKILL)
	return true
}

// sendOut is one JSON object send --json prints.
type sendOut struct {
	Lockspace string `json:"lockspace"`
	callback.SendReply
}

// run sends until ctx ends: each attempt picks its targets (one other
// host, two, or all), carries a unique data value, and logs what send
// printed. A waiting sender sends one after another; the other sends in
// bursts, and holds back while its daemon has many messages pending.
func (s *sender) run(ctx context.Context) {
	burst := 0
	for op := 1; ctx.Err() == nil; op++ {
		if !s.wait && burst == 0 {
			if st, err := s.h.status(ctx); err == nil && st.Pending > 20 {
				sleepCtx(ctx, 500*time.Millisecond)
				op--
				continue
			}
		}
		targets := s.targets()
		data := uint64(s.num)<<32 | uint64(op)
		s.log.Add(Event{Kind: KindAttempt, Client: s.name, Op: op, Host: s.h.id, Targets: targets, Wait: s.wait, Data: data})
		ids := make([]string, len(targets))
		for i, t := range targets {
			ids[i] = fmt.Sprint(t)
		}
		args := []string{"send", "-s", lockspace, "-i", strings.Join(ids, ","), "-c", "user0", "--data", fmt.Sprint(data), "--json", "--run-dir", s.h.runDir}
		if s.wait {
			args = append(args, "--wait")
		}
		switch accepted := s.send(op, targets, data, args); {
		case !accepted:
			// Its daemon is down or joining: not accepted, try later.
			burst = 0
			sleepCtx(ctx, s.h.c.rand(100*time.Millisecond, 400*time.Millisecond))
		case s.wait:
			sleepCtx(ctx, s.h.c.rand(0, 200*time.Millisecond))
		case burst < 4 && s.rng.Intn(3) > 0:
			burst++
		default:
			burst = 0
			sleepCtx(ctx, s.h.c.rand(300*time.Millisecond, 1500*time.Millisecond))
		}
	}
}

// targets picks the targets of the next message: one other host (half
// the time), two, or every other host.
func (s *sender) targets() []uint64 {
	var others []uint64
	for _, h := range s.h.c.hosts {
		if h.id != s.h.id {
			others = append(others, h.id)
		}
	}
	s.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	switch n := s.rng.Intn(4); n {
	case 0, 1:
		return others[:1]
	case 2:
		return sorted(others[:2])
	default:
		return sorted(others)
	}
}

// send runs one send and logs what it printed; it reports whether the
// message was accepted (send printed its id).
func (s *sender) send(op int, targets []uint64, data uint64, args []string) (accepted bool) {
	cmd, out, errb, err := startPiped(s.h.c.bin, args)
	if err != nil {
		s.log.Add(Event{Kind: KindEnd, Client: s.name, Op: op, Host: s.h.id, Exit: -1, Err: err.Error()})
		return false
	}
	s.mu.Lock()
	s.cmd, s.op = cmd, op
	s.mu.Unlock()
	dec := json.NewDecoder(out)
	for {
		var o sendOut
		if err := dec.Decode(&o); err != nil {
			if err != io.EOF {
				s.log.Add(Event{Kind: KindResult, Client: s.name, Op: op, Host: s.h.id, Err: "garbled output: " + err.Error()})
			}
			io.Copy(io.Discard, out)
			break
		}
		if o.Done {
			s.log.Add(Event{Kind: KindResult, Client: s.name, Op: op, Host: s.h.id, ID: o.ID, Result: &o.SendReply})
			for _, t := range o.Targets {
				if h := s.h.c.host(t.HostID); h != nil && t.Outcome == "acked" {
					poke(h.acked)
				}
			}
			continue
		}
		accepted = true
		s.log.Add(Event{Kind: KindAccept, Client: s.name, Op: op, Host: s.h.id, Targets: targets, Wait: s.wait, Data: data, ID: o.ID})
		s.h.mu.Lock()
		s.h.ids = append(s.h.ids, o.ID)
		s.h.mu.Unlock()
		poke(s.h.accepted)
	}
	cmd.Wait()
	s.mu.Lock()
	s.cmd = nil
	abandoned := s.abandoned
	s.mu.Unlock()
	if !abandoned {
		s.log.Add(Event{Kind: KindEnd, Client: s.name, Op: op, Host: s.h.id, Exit: cmd.ProcessState.ExitCode(), Err: lastLines(errb.String(), 3)})
	}
	return accepted
}

// kill sends SIGKILL to a running send --wait; false if none runs.
func (s *sender) kill(events *Log) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || !s.wait {
		return false
	}
	events.Add(Event{Kind: KindKill, Host: s.h.id, Client: s.name, Op: s.op, What: KillSender})
	s.cmd.Process.Signal(syscall.SIGKILL)
	return true
}

// abandon kills a send that never exited; its attempt gets no end event,
// which the checker reports.
func (s *sender) abandon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.abandoned = true
		s.cmd.Process.Kill()
	}
}

// startPiped starts bin with args, its stdout to be read from out, its
// stderr kept in errb (read it after cmd.Wait).
func startPiped(bin string, args []string) (cmd *exec.Cmd, out io.Reader, errb *bytes.Buffer, err error) {
	cmd = exec.Command(bin, args...)
	errb = new(bytes.Buffer)
	cmd.Stderr = errb
	if out, err = cmd.StdoutPipe(); err == nil {
		err = cmd.Start()
	}
	return cmd, out, errb, err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// killer kills daemons (three times in four), manual-ack listeners of the
// hosts that have an auto-ack one too, and waiting sends, at random
// points, until cfg.daemonKills daemons were killed. A daemon is killed
// at a random time or right after one of: a listener there printed a
// record (a receiver in the crash window), a send from there was
// accepted (a sender with a fresh journal record), a send --wait said
// the host acked (a receiver whose ack is on disk: it must not deliver
// again), a message from there was printed elsewhere (a sender whose
// target took the message, perhaps before the sender saw the ack). At
// most two hosts are down at once; each restarts 0..1 s after its kill,
// one in ten after 8..12 s, when its peers see it FAIL.
func (c *cluster) killer(ctx context.Context) {
	kills := 0
	for kills < c.cfg.daemonKills && ctx.Err() == nil {
		sleepCtx(ctx, c.rand(300*time.Millisecond, 1500*time.Millisecond))
		for _, h := range c.hosts {
			h.poll(ctx)
		}
		switch n := c.intn(20); {
		case n < 15:
			var cands []*host
			down := 0
			for _, h := range c.hosts {
				if running, _ := h.up(); running {
					cands = append(cands, h)
				} else {
					down++
				}
			}
			if down >= 2 || len(cands) == 0 {
				continue
			}
			h := cands[c.intn(len(cands))]
			if i := c.intn(5); i > 0 {
				ch := []chan struct{}{h.printed, h.accepted, h.acked, h.arrived}[i-1]
				drain(ch)
				waitCh(ctx, ch, 3*time.Second)
			}
			delay := c.rand(0, time.Second)
			if c.intn(10) == 0 {
				delay = c.rand(8*time.Second, 12*time.Second)
			}
			if h.kill(delay) {
				kills++
			}
		case n < 18:
			var cands []*slot
			for _, h := range c.hosts {
				if running, _ := h.up(); running && len(h.slots) > 1 {
					for _, s := range h.slots {
						if s.manual {
							cands = append(cands, s)
						}
					}
				}
			}
			if len(cands) > 0 {
				s := cands[c.intn(len(cands))]
				drain(s.h.printed)
				waitCh(ctx, s.h.printed, 2*time.Second)
				s.kill(c.events)
			}
		default:
			s := c.senders[2*c.intn(len(c.hosts))] // the waiting ones
			s.kill(c.events)
		}
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func waitCh(ctx context.Context, ch chan struct{}, d time.Duration) {
	select {
	case <-ch:
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// settle waits until every daemon runs, joined, with nothing pending and
// no delivery waiting for a manual ack, twice in a row.
func (c *cluster) settle(ctx context.Context) error {
	quiet := 0
	for quiet < 2 {
		if err := ctx.Err(); err != nil {
			var why []string
			for _, h := range c.hosts {
				st, err := h.status(context.Background())
				if err != nil {
					why = append(why, err.Error())
				} else {
					why = append(why, fmt.Sprintf("host %d: pending %d, unacked %d, listeners %d", h.id, st.Pending, st.Unacked, st.Listeners))
				}
			}
			return fmt.Errorf("not settled: %s", strings.Join(why, "; "))
		}
		time.Sleep(500 * time.Millisecond)
		quiet++
		for _, h := range c.hosts {
			if _, joined := h.up(); !joined {
				quiet = 0
				continue
			}
			st, err := h.status(ctx)
			if err != nil || st.Pending > 0 || st.Unacked > 0 || st.Listeners != len(h.slots) {
				quiet = 0
			}
		}
	}
	return nil
}

// finals logs the final state of every message: the ids sends printed
// and those in the senders' journals, asked with result.
func (c *cluster) finals(ctx context.Context) error {
	l := c.mustLog("final")
	for _, h := range c.hosts {
		journal := map[string]state.Message{}
		if c.cfg.durable {
			fates, err := state.LoadOutbox(state.Dir(h.stateDir, lockspace, h.id))
			if err != nil {
				return fmt.Errorf("host %d: %w", h.id, err)
			}
			for _, f := range fates {
				journal[f.Message.ID] = f.Message
			}
		}
		h.mu.Lock()
		ids := append([]string(nil), h.ids...)
		h.mu.Unlock()
		for id := range journal {
			ids = append(ids, id)
		}
		cl, err := callback.Dial(ctx, h.runDir)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			e := Event{Kind: KindFinal, Host: h.id, ID: id}
			if m, ok := journal[id]; ok {
				e.Targets, e.Data = m.Targets, m.Data
			}
			res, err := cl.Result(ctx, lockspace, id)
			if err != nil {
				e.Err = err.Error()
			} else {
				e.Result = res
			}
			l.Add(e)
		}
		cl.Close()
	}
	return nil
}

// stop ends the run: no more restarts, every daemon shut down (its
// listeners get an end record and exit), anything left killed.
func (c *cluster) stop() {
	for _, h := range c.hosts {
		h.mu.Lock()
		h.stopping = true
		h.mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, h := range c.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if cl, err := callback.Dial(ctx, h.runDir); err == nil {
				cl.Shutdown(ctx, true, true)
				cl.Close()
			}
		}()
	}
	wg.Wait()
	c.killAll()
}
