package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the bench started. Children run in their own
// process group (a Ctrl-C in the terminal reaches the bench only, which
// then stops them in order) and get SIGKILL if the bench dies.
type proc struct {
	name string
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	// stop, if set, asks the process to exit (a daemon's shutdown); kill
	// by pid follows if it has not exited in time.
	stop func(ctx context.Context) error
	// helpers are pids the process forked (sanlock's helper), killed by
	// pid at cleanup if still alive.
	helpers []int
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// registry tracks everything the bench started or created, so that it is
// all removed on every exit path, Ctrl-C included.
type registry struct {
	mu    sync.Mutex
	procs []*proc
	paths []string // files and directories to remove
	funcs []func() // run at cleanup, after the processes stop (loop devices)
}

var reg = &registry{}

// start starts cmd as a tracked child.
func (r *registry) start(name string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the forking thread exits: keep this goroutine
	// on its thread for the fork so the runtime never retires that thread
	// (an unlocked thread is kept alive).
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	return p, nil
}

// startLogged starts cmd as a tracked child whose stdout and stderr go,
// through a pipe, to the file logPath. The bench writes the file, so the
// child's /proc/PID/io write_bytes count only what the child itself writes
// to storage, not its log (which in production goes to journald).
func (r *registry) startLogged(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	p, err := r.start(name, cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		lf.Close()
		return nil, err
	}
	// Copies until every writer (the child and anything it forked) is gone.
	go func() {
		io.Copy(lf, pr)
		pr.Close()
		lf.Close()
	}()
	return p, nil
}

// removeLater registers a path to remove at cleanup.
func (r *registry) removeLater(path string) {
	r.mu.Lock()
	r.paths = append(r.paths, path)
	r.mu.Unlock()
}

// atCleanup registers f to run at cleanup, once every process stopped
// and before the paths are removed.
func (r *registry) atCleanup(f func()) {
	r.mu.Lock()
	r.funcs = append(r.funcs, f)
	r.mu.Unlock()
}

// stopProcs stops the given processes in parallel: their stop function
// first (bounded), then SIGKILL by pid; helpers are killed by pid too.
func (r *registry) stopProcs(ps []*proc, grace time.Duration) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopOne(p, grace)
		}()
	}
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.procs[:0]
	for _, p := range r.procs {
		if !p.exited() {
			kept = append(kept, p)
		}
	}
	r.procs = kept
}

func stopOne(p *proc, grace time.Duration) {
	if !p.exited() && p.stop != nil && grace > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := p.stop(ctx); err != nil {
			logf("stop %s (pid %d): %v", p.name, p.pid, err)
		}
		select {
		case <-p.done:
		case <-ctx.Done():
		}
		cancel()
	}
	if !p.exited() {
		if grace > 0 {
			logf("killing %s (pid %d)", p.name, p.pid)
		}
		p.cmd.Process.Kill()
		<-p.done
	}
	// A helper notices its parent is gone and exits by itself; give it
	// a moment before killing it.
	for deadline := time.Now().Add(3 * time.Second); grace > 0 && time.Now().Before(deadline); {
		if !slices.ContainsFunc(p.helpers, alive) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, h := range p.helpers {
		if alive(h) && cmdlineHas(h, "sanlock") {
			logf("killing %s's helper (pid %d)", p.name, h)
			syscall.Kill(h, syscall.SIGKILL)
		}
	}
}

// cleanup stops every process still running and removes every path.
func (r *registry) cleanup(grace time.Duration) {
	r.mu.Lock()
	ps := append([]*proc(nil), r.procs...)
	r.mu.Unlock()
	r.stopProcs(ps, grace)
	r.mu.Lock()
	paths, funcs := r.paths, r.funcs
	r.paths, r.funcs = nil, nil
	r.mu.Unlock()
	for _, f := range funcs {
		f()
	}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := os.RemoveAll(paths[i]); err != nil {
			logf("cleanup: %v", err)
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

func cmdlineHas(pid int, s string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte(s))
}

// children returns the pids of pid's child processes.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// procSample is one reading of a process's counters.
type procSample struct {
	at         time.Time
	readBytes  int64 // /proc/PID/io read_bytes: bytes this process caused to be read from storage
	writeBytes int64 // /proc/PID/io write_bytes
	cpuTicks   int64 // utime+stime from /proc/PID/stat, in clock ticks
	cpuNs      int64 // sum of the threads' /proc/PID/task/TID/schedstat run time, ns (-1: unavailable)
	rssKB      int64 // VmRSS
}

// clockTick is USER_HZ, the unit of utime and stime (100 on Linux).
const clockTick = 100

func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(io), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "read_bytes":
			s.readBytes = n
		case "write_bytes":
			s.writeBytes = n
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	// After "pid (comm) ": state is field 3; utime and stime are fields
	// 14 and 15, i.e. indexes 11 and 12 of what follows the ')'.
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpuTicks = ut + stt
	s.cpuNs = schedNs(pid)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				s.rssKB, _ = strconv.ParseInt(fs[0], 10, 64)
			}
		}
	}
	return s, nil
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runCmd runs a short command with env added to ours, bounded by ctx and
// timeout, and returns its combined output.
func runCmd(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// schedNs sums the time on CPU of pid's live threads, from schedstat: ns
// resolution, where utime+stime count 10 ms ticks. Threads that exit are
// not counted (the daemons keep theirs). -1 if unavailable.
func schedNs(pid int) int64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return -1
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return -1
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		total += n
	}
	return total
}
