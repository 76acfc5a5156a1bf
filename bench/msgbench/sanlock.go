package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// python is the interpreter that has python3-sanlock (Debian installs it
// for the system python only).
const python = "/usr/bin/python3"

// slkHost is one real sanlock daemon holding one host id.
type slkHost struct {
	id     int
	runDir string
	p      *proc
	join   time.Duration
}

func (h *slkHost) env() []string { return []string{"SANLOCK_RUN_DIR=" + h.runDir} }

// slkCluster is n real sanlock daemons joined to one lockspace.
type slkCluster struct {
	io    int
	spec  clusterSpec
	area  *area
	hosts []*slkHost
}

// checkSanlock reports what is missing to run real sanlock.
func checkSanlock(ctx context.Context) error {
	if _, err := exec.LookPath("sanlock"); err != nil {
		return fmt.Errorf("sanlock not installed (apt-get install -y sanlock python3-sanlock)")
	}
	if _, err := runCmd(ctx, 30*time.Second, nil, python, "-c", "import sanlock"); err != nil {
		return fmt.Errorf("python3-sanlock not importable by %s: %w", python, err)
	}
	return nil
}

// startSlkCluster inits an area with `sanlock direct init -o IO`, starts
// an unprivileged daemon without watchdog per host id of spec and joins
// them.
func startSlkCluster(ctx context.Context, e *benchEnv, spec clusterSpec) (*slkCluster, error) {
	c := &slkCluster{io: spec.io, spec: spec}
	a, err := newArea(ctx, e, "slk-"+spec.name, spec.geo)
	if err != nil {
		return nil, err
	}
	c.area = a
	args := append([]string{"direct", "init", "-o", fmt.Sprint(spec.io), "-s", fmt.Sprintf("%s:0:%s:0", lsName, a.path())}, spec.geo.initArgs()...)
	out, err := runCmd(ctx, time.Minute, nil, "sanlock", args...)
	if err != nil || !strings.Contains(out, "init done 0") {
		return c, fmt.Errorf("sanlock %s: %v: %s", strings.Join(args, " "), err, out)
	}
	for _, id := range spec.ids {
		h := &slkHost{id: id, runDir: filepath.Join(e.tmp, fmt.Sprintf("s-%s-%d", spec.name, id))}
		if err := os.MkdirAll(h.runDir, 0o700); err != nil {
			return c, err
		}
		cmd := exec.Command("sanlock", "daemon", "-D", "-w", "0", "-o", fmt.Sprint(spec.io), "-e", fmt.Sprintf("sh%d", id))
		cmd.Env = append(os.Environ(), "SANLOCK_RUN_DIR="+h.runDir, "SANLOCK_PRIVILEGED=0")
		h.p, err = reg.startLogged(fmt.Sprintf("sanlock daemon %s sh%d", spec.name, id), cmd, h.runDir+".log")
		if err != nil {
			return c, err
		}
		env := h.env()
		h.p.stop = func(ctx context.Context) error {
			_, err := runCmd(ctx, 15*time.Second, env, "sanlock", "client", "shutdown", "-f", "1", "-w", "1")
			return err
		}
		c.hosts = append(c.hosts, h)
	}
	for _, h := range c.hosts {
		if err := waitSlkDaemon(ctx, h); err != nil {
			return c, err
		}
		// The daemon forks a helper at start; remember it to kill it by
		// pid should it outlive the daemon.
		h.p.helpers = children(h.p.pid)
	}
	errs := make([]error, len(c.hosts))
	var wg sync.WaitGroup
	for i, h := range c.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			spec := fmt.Sprintf("%s:%d:%s:0", lsName, h.id, a.path())
			_, err := runCmd(ctx, 5*time.Minute, h.env(), "sanlock", "client", "add_lockspace", "-o", fmt.Sprint(c.io), "-s", spec)
			h.join = time.Since(t0)
			errs[i] = err
		}()
	}
	wg.Wait()
	return c, errors.Join(errs...)
}

func waitSlkDaemon(ctx context.Context, h *slkHost) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := runCmd(ctx, 5*time.Second, h.env(), "sanlock", "client", "status")
		if err == nil {
			return nil
		}
		if h.p.exited() {
			return fmt.Errorf("%s exited at start; see %s.log", h.p.name, h.runDir)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer after 15 s: %v", h.p.name, err)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (c *slkCluster) stop() {
	if c == nil {
		return
	}
	var ps []*proc
	for _, h := range c.hosts {
		if h.p != nil {
			ps = append(ps, h.p)
		}
	}
	reg.stopProcs(ps, 15*time.Second)
	c.area.remove()
}

func (c *slkCluster) joinTimes() []float64 {
	var v []float64
	for _, h := range c.hosts {
		v = append(v, h.join.Seconds())
	}
	return v
}

func (c *slkCluster) idle(ctx context.Context, window time.Duration) (*idleResult, error) {
	pids := make([]int, len(c.hosts))
	for i, h := range c.hosts {
		pids[i] = h.p.pid
	}
	return measureIdle(ctx, pids, window, nil, fullRead(c.spec.geo))
}

// The receiver registers for events (reg_event) and prints each event
// get_event returns, with the time it was read; it exits when stdin closes.
const pyReceiver = `
import json, select, sys, time, sanlock
ls = sys.argv[1].encode()
fd = sanlock.reg_event(ls)
print(json.dumps({"ready": time.time()}), flush=True)
while True:
    r, _, _ = select.select([fd, sys.stdin], [], [])
    if sys.stdin in r and not sys.stdin.readline():
        break
    if fd in r:
        t = time.time()
        for e in sanlock.get_event(fd):
            e = dict(e)
            e["t"] = t
            print(json.dumps(e), flush=True)
sanlock.end_event(fd, ls)
`

// The sender reads "HOST_ID EVENT DATA" lines and calls set_event for
// each, replacing the previous event, and prints when it called it.
const pySender = `
import json, sys, time, sanlock
ls = sys.argv[1].encode()
print(json.dumps({"ready": time.time()}), flush=True)
for line in sys.stdin:
    host, ev, data = map(int, line.split())
    t = time.time()
    try:
        sanlock.set_event(ls, host, 0, ev, data=data, flags=sanlock.SETEV_REPLACE_EVENT)
        print(json.dumps({"t": t, "data": data}), flush=True)
    except Exception as e:
        print(json.dumps({"t": t, "data": data, "error": str(e)}), flush=True)
`

// pyProc is a Python helper talking JSON lines.
type pyProc struct {
	p     *proc
	in    io.WriteCloser
	lines chan map[string]any
}

func startPython(h *slkHost, name, script string) (*pyProc, error) {
	cmd := exec.Command(python, "-c", script, lsName)
	cmd.Env = append(os.Environ(), h.env()...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errLog, err := os.Create(h.runDir + "-" + name + ".log")
	if err != nil {
		return nil, err
	}
	cmd.Stderr = errLog
	p, err := reg.start(name, cmd)
	errLog.Close()
	if err != nil {
		return nil, err
	}
	p.stop = func(ctx context.Context) error { return in.Close() }
	py := &pyProc{p: p, in: in, lines: make(chan map[string]any, 1024)}
	go func() {
		defer close(py.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				logf("%s: %q: %v", name, sc.Text(), err)
				continue
			}
			py.lines <- m
		}
	}()
	select {
	case m, ok := <-py.lines:
		if !ok {
			return nil, fmt.Errorf("%s exited at start; see %s-%s.log", name, h.runDir, name)
		}
		if _, ok := m["ready"]; !ok {
			return nil, fmt.Errorf("%s: unexpected first line %v", name, m)
		}
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s not ready after 30 s", name)
	}
	return py, nil
}

func (py *pyProc) stop() { reg.stopProcs([]*proc{py.p}, 3*time.Second) }

// slkEvents is real sanlock's event delivery from host 1 to host 2.
type slkEvents struct {
	latency    []float64 // set_event -> first get_event, seconds
	deliveries []int     // get_event returns per event
	lost       int
}

// sanlockEventCode is the event set: an application code, nothing
// sanlk-resetd would act on.
const sanlockEventCode = 1 << 16

// events sets n events on host 1 for host 2, one at a time: each is set,
// its first delivery timed, then it is left in place for a random 1..2
// renewal intervals, counting repeated deliveries, before the next one
// replaces it.
func (c *slkCluster) events(ctx context.Context, n int) (*slkEvents, error) {
	res := &slkEvents{}
	recv, err := startPython(c.hosts[1], "py-receiver", pyReceiver)
	if err != nil {
		return nil, err
	}
	defer recv.stop()
	send, err := startPython(c.hosts[0], "py-sender", pySender)
	if err != nil {
		return nil, err
	}
	defer send.stop()
	renewal := time.Duration(2*c.io) * time.Second
	timeout := time.Duration(20*c.io+10) * time.Second
	count := map[int]int{}
	first := map[int]float64{}
	take := func(m map[string]any) {
		d, _ := m["data"].(float64)
		t, _ := m["t"].(float64)
		count[int(d)]++
		if _, ok := first[int(d)]; !ok {
			first[int(d)] = t
		}
	}
	drainUntil := func(deadline time.Time, stopAt int) bool {
		for {
			if stopAt > 0 && count[stopAt] > 0 {
				return true
			}
			d := time.Until(deadline)
			if d <= 0 {
				return false
			}
			select {
			case m, ok := <-recv.lines:
				if !ok {
					return false
				}
				take(m)
			case <-time.After(d):
				return false
			case <-ctx.Done():
				return false
			}
		}
	}
	base := 1000 + rand.IntN(1000)
	var got []int // data of the events delivered
	for i := 0; i < n; i++ {
		data := base + i
		if _, err := fmt.Fprintf(send.in, "%d %d %d\n", c.hosts[1].id, sanlockEventCode, data); err != nil {
			return nil, fmt.Errorf("py-sender: %w", err)
		}
		var sent float64
		select {
		case m, ok := <-send.lines:
			if !ok {
				return nil, fmt.Errorf("py-sender exited")
			}
			if e, ok := m["error"]; ok {
				return nil, fmt.Errorf("set_event: %v", e)
			}
			sent, _ = m["t"].(float64)
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("py-sender does not answer")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !drainUntil(time.Now().Add(timeout), data) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			res.lost++
			logf("  event %d: no delivery within %v", i+1, timeout)
			continue
		}
		lat := first[data] - sent
		res.latency = append(res.latency, lat)
		// Leave it on disk a while, as a sender that does not want to
		// clobber it would, and count repeats.
		hold := renewal + time.Duration(rand.Int64N(int64(renewal)))
		drainUntil(time.Now().Add(hold), 0)
		got = append(got, data)
		logf("  event %d/%d: latency %.2f s, %d deliveries so far", i+1, n, lat, count[data])
	}
	// Count deliveries once the last event had its time; an event's
	// repeats may arrive after the next one was set.
	for _, d := range got {
		res.deliveries = append(res.deliveries, count[d])
	}
	return res, nil
}
