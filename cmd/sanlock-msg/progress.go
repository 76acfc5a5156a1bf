package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Long waits say what they wait for. A verb that may block for long
// (add-lockspace, send --wait, reset, shutdown --wait) runs a waitWatcher
// beside its request: it polls what the verb is waiting for and shows it on
// stderr once the verb has waited progressGrace. On a terminal it keeps one
// progress line, redrawn with a countdown; otherwise it prints one line when
// a wait with a deadline at least announceMin away starts, so logs say why
// a command took a minute without filling up with countdowns.
const (
	progressGrace = time.Second
	announceMin   = 2 * time.Second
	progressTick  = 250 * time.Millisecond
)

// waitInfo is what a verb waits for: What in words, and Until, when the
// wait ends at the latest (zero: not known).
type waitInfo struct {
	What  string
	Until time.Time
}

// waitPoll returns the current wait; ok false means nothing to show now.
type waitPoll func(ctx context.Context) (w waitInfo, ok bool)

// progress renders waits for one verb on stderr. It is not safe for
// concurrent use; waitWatcher serialises its calls.
type progress struct {
	e     *env
	verb  string
	start time.Time
	width int  // terminal width; 0: not a terminal
	drawn bool // a progress line is on the terminal
	said  string
}

func newProgress(e *env, verb string, start time.Time) *progress {
	p := &progress{e: e, verb: verb, start: start}
	if e.term != nil {
		if w, ok := e.term(); ok {
			p.width = max(w, 20)
		}
	}
	return p
}

// show displays w at time now.
func (p *progress) show(now time.Time, w waitInfo) {
	if now.Sub(p.start) < progressGrace {
		return
	}
	if p.width == 0 {
		// One line per wait, when it is long enough to matter.
		if w.Until.IsZero() || w.Until.Sub(now) < announceMin || w.What == p.said {
			return
		}
		p.said = w.What
		fmt.Fprintf(p.e.stderr, "sanlock-msg %s: %s (until %s, %s from now)\n", p.verb, w.What,
			w.Until.Format("15:04:05"), w.Until.Sub(now).Round(time.Second))
		return
	}
	// The countdown first: a long reason is cut at the terminal's width.
	clock := countdown(now.Sub(p.start))
	if !w.Until.IsZero() {
		clock = countdown(w.Until.Sub(now)) + " left"
	}
	line := fmt.Sprintf("%s [%s]: %s", p.verb, clock, w.What)
	fmt.Fprintf(p.e.stderr, "\r\033[K%s", truncate(line, p.width-1))
	p.drawn = true
}

// clear erases the progress line, if one is drawn.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.e.stderr, "\r\033[K")
		p.drawn = false
	}
}

// countdown formats a duration for a progress line: "1m08s", "9s".
func countdown(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d.Round(time.Second) / time.Second)
	if s >= 60 {
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

// truncate shortens s to n runes, ending it with "…" if cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// waitWatcher polls a verb's wait in the background and shows it.
type waitWatcher struct {
	mu     sync.Mutex // serialises the progress line and other output
	p      *progress
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// watchWait starts showing poll's waits for verb. poll runs in the
// watcher's goroutine and gets a context that ends at stop.
func watchWait(ctx context.Context, e *env, verb string, poll waitPoll) *waitWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &waitWatcher{p: newProgress(e, verb, time.Now()), cancel: cancel, done: make(chan struct{})}
	go w.run(ctx, poll)
	return w
}

func (w *waitWatcher) run(ctx context.Context, poll waitPoll) {
	defer close(w.done)
	t := time.NewTicker(progressTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(w.p.start) < progressGrace {
			continue
		}
		wi, ok := poll(ctx)
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		if ok {
			w.p.show(time.Now(), wi)
		} else {
			w.p.clear()
		}
		w.mu.Unlock()
	}
}

// above runs print, which writes to the verb's output, with the progress
// line out of its way (redrawn at the next tick).
func (w *waitWatcher) above(print func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.p.clear()
	print()
}

// stop ends the watcher and clears its progress line.
func (w *waitWatcher) stop() {
	w.once.Do(func() {
		w.cancel()
		<-w.done
		w.mu.Lock()
		w.p.clear()
		w.mu.Unlock()
	})
}

// hostList formats host ids for a sentence: "host 2", "hosts 2, 3 and 7".
func hostList(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	if len(s) == 1 {
		return "host " + s[0]
	}
	return "hosts " + strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// waitState is a wait that a verb updates as it goes through its steps
// and a waitWatcher reads.
type waitState struct {
	mu sync.Mutex
	w  waitInfo
	ok bool
}

// set makes w the current wait.
func (s *waitState) set(what string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w, s.ok = waitInfo{What: what, Until: until}, true
}

// poll is a waitPoll.
func (s *waitState) poll(context.Context) (waitInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w, s.ok
}
