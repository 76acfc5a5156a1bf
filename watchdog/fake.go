package watchdog

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
)

// Fake is a watchdog for tests and demos ("--watchdog fake:FILE"). It never
// resets the machine. Instead it appends one line per event to its file:
//
//	open timeout=N t=S
//	keepalive t=S
//	settimeout N t=S
//	close t=S
//	fire t=S
//	abandon t=S
//
// where N is the timeout in whole seconds and S the clock's time in Unix
// seconds with milliseconds (1732640000.123). Each line is written with one
// write to a file opened with O_APPEND, so several fakes (several daemons) may
// share a file.
//
// Like a real device, a Fake fires when its timeout passes without a
// Keepalive or SetTimeout. The countdown runs on the Clock, not on calls into
// the Fake, so a caller that hangs still sees it fire. Firing writes "fire",
// calls OnFire, and kills the Fake: later Keepalive and SetTimeout calls
// return ErrFired and write nothing, and Close writes nothing more. Close
// before the fire disarms it, as the magic close does on a real device.
//
// Abandon is what the exit of the process that holds the device does: see
// Abandon.
//
// A Fake is safe for concurrent use, except that OnFire must be set before
// the Fake can fire and not changed afterwards.
type Fake struct {
	// OnFire, if not nil, is called once when the Fake fires, after the
	// "fire" line is written, with no lock held. It runs from the Clock's
	// callback: in a goroutine of its own with clock.Real, inside Advance
	// with clock.Fake. A daemon under test uses it to simulate the reset: it
	// stops all lockspace I/O at once, as if the host had gone down.
	OnFire func()
	// Broken makes the Fake a watchdog that fails to reset the machine:
	// when it fires it writes "broken-fire" and does not call OnFire.
	// Set before use.
	Broken bool

	path string
	clk  clock.Clock

	mu        sync.Mutex // guards the fields below
	file      *os.File
	timeout   time.Duration
	stopTimer func() bool
	gen       uint64 // counts arms; a timer callback from an older arm is stale
	fired     bool
	closed    bool
}

// OpenFake opens (creating if needed) the event file of a fake watchdog, writes
// its "open" line and arms it with timeout (DefaultTimeout if timeout <= 0,
// rounded up to whole seconds). A nil clk means clock.Real.
func OpenFake(file string, timeout time.Duration, clk clock.Clock) (*Fake, error) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("watchdog: fake: %w", err)
	}
	secs := roundTimeout(orDefault(timeout))
	fk := &Fake{
		path:    file,
		clk:     orRealClock(clk),
		file:    f,
		timeout: time.Duration(secs) * time.Second,
	}
	fk.mu.Lock()
	defer fk.mu.Unlock()
	if err := fk.writeLocked(fmt.Sprintf("open timeout=%d", secs)); err != nil {
		f.Close()
		return nil, err
	}
	fk.armLocked()
	return fk, nil
}

// Keepalive writes "keepalive" and restarts the countdown. It returns
// ErrFired once the Fake has fired.
func (f *Fake) Keepalive() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usableLocked("keepalive"); err != nil {
		return err
	}
	if err := f.writeLocked("keepalive"); err != nil {
		return err
	}
	f.armLocked()
	return nil
}

// SetTimeout writes "settimeout N", sets the timeout to N whole seconds (d
// rounded up, at least one) and restarts the countdown, as Linux does. It
// returns ErrFired once the Fake has fired.
func (f *Fake) SetTimeout(d time.Duration) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usableLocked("settimeout"); err != nil {
		return 0, err
	}
	secs := roundTimeout(d)
	if err := f.writeLocked(fmt.Sprintf("settimeout %d", secs)); err != nil {
		return 0, err
	}
	f.timeout = time.Duration(secs) * time.Second
	f.armLocked()
	return f.timeout, nil
}

// Timeout reports the current timeout.
func (f *Fake) Timeout() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timeout
}

// Close disarms the Fake, writing "close" unless it has already fired, and
// closes its file. Close is idempotent.
func (f *Fake) Close() error { return f.end("close") }

// Abandon simulates the exit of the process that holds the device while
// it is armed (a daemon that stops with a failed lockspace leaves its
// watchdog armed, so that the host resets). A real device goes on counting
// and resets the machine; a Fake lives in its process, so it writes
// "abandon" (armed: a real device would fire within the timeout), stops
// counting and closes its file: nothing of it runs afterwards, no fire and
// no OnFire. Later calls fail as after Close. Abandon does nothing to a
// Fake that is closed or has fired.
func (f *Fake) Abandon() error { return f.end("abandon") }

// end stops the countdown, writes event unless the Fake has fired, and
// closes the file, once.
func (f *Fake) end(event string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.stopTimer != nil {
		f.stopTimer()
	}
	var err error
	if !f.fired {
		err = f.writeLocked(event)
	}
	if cerr := f.file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("watchdog: %s: close: %w", f, cerr)
	}
	return err
}

// String returns "fake:" followed by the file name.
func (f *Fake) String() string { return "fake:" + f.path }

// usableLocked returns the error for an operation on a fired or closed Fake.
func (f *Fake) usableLocked(op string) error {
	switch {
	case f.fired:
		return ErrFired
	case f.closed:
		return fmt.Errorf("watchdog: %s: %s: %w", f, op, os.ErrClosed)
	}
	return nil
}

// armLocked (re)starts the countdown.
func (f *Fake) armLocked() {
	if f.stopTimer != nil {
		f.stopTimer()
	}
	f.gen++
	gen := f.gen
	f.stopTimer = f.clk.AfterFunc(f.timeout, func() { f.fire(gen) })
}

// fire is the countdown's end. A callback from an older arm is ignored: its
// Stop may have come too late to cancel it.
func (f *Fake) fire(gen uint64) {
	f.mu.Lock()
	if f.fired || f.closed || gen != f.gen {
		f.mu.Unlock()
		return
	}
	f.fired = true
	hook := f.OnFire
	if f.Broken {
		f.writeLocked("broken-fire")
		hook = nil
	} else {
		f.writeLocked("fire") // Nobody to report a failure to; the Fake is dead anyway.
	}
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// writeLocked appends one event line, stamped with the clock's time, in one
// write.
func (f *Fake) writeLocked(event string) error {
	line := event + " t=" + unixMilli(f.clk.Now()) + "\n"
	if _, err := f.file.WriteString(line); err != nil {
		return fmt.Errorf("watchdog: %s: %s: %w", f, event, err)
	}
	return nil
}

// unixMilli formats t as Unix seconds with three decimals.
func unixMilli(t time.Time) string {
	ms := t.UnixMilli()
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	return fmt.Sprintf("%d.%03d", sec, frac)
}
