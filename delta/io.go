package delta

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
)

// DefaultMaxStuck is how many timed-out I/Os may still be outstanding
// before IO refuses to start new ones.
const DefaultMaxStuck = 8

// IO runs Device calls with a timeout each, so that a hung device never
// blocks its caller for longer than the timeout.
//
// A call that times out keeps running in its own goroutine (a blocked
// pread cannot be cancelled). Its buffer belongs to that goroutine until the
// call returns and is then dropped: IO never reuses a buffer that a
// timed-out call may still fill or read. Writes are copied into a private
// buffer for the same reason. When DefaultMaxStuck calls are stuck, new
// calls fail at once with ErrDeviceHung instead of piling up threads.
//
// IO is safe for concurrent use.
type IO struct {
	dev Device
	clk clock.Clock

	mu    sync.Mutex
	stuck map[*stuckIO]struct{} // timed-out calls still outstanding
	stats IOStats
}

// stuckIO is a call that timed out and has not returned yet.
type stuckIO struct {
	write bool
	off   int64
	n     int
}

// IOStats counts the I/O done through an IO.
type IOStats struct {
	Reads, Writes           int64         // completed calls
	ReadBytes, WriteBytes   int64         // bytes transferred by completed calls
	Timeouts, Errors        int64         // calls that timed out / failed
	LastRead, LastWrite     time.Duration // latency of the last completed call
	MaxRead, MaxWrite       time.Duration // worst latency seen
	ReadTime, WriteTime     time.Duration // sum of the latencies of completed calls
	Stuck                   int           // timed-out calls still outstanding
	StuckWrites             int           // of which writes
	LastReadAt, LastWriteAt time.Time     // when the last call completed
}

// NewIO returns an IO over dev using clk for timeouts.
func NewIO(dev Device, clk clock.Clock) *IO {
	return &IO{dev: dev, clk: clk}
}

// Device returns the underlying device.
func (o *IO) Device() Device { return o.dev }

// Stats returns a snapshot of the counters.
func (o *IO) Stats() IOStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.stats
	for c := range o.stuck {
		s.Stuck++
		if c.write {
			s.StuckWrites++
		}
	}
	return s
}

type ioResult struct {
	n   int
	err error
}

// Read reads n bytes at off into a new aligned buffer and returns it. It
// fails with an *IOError wrapping ErrIOTimeout if the device does not answer
// within timeout, or ctx's error if ctx ends first.
func (o *IO) Read(ctx context.Context, off int64, n int, timeout time.Duration) ([]byte, error) {
	buf := AlignedBuffer(n)
	if err := o.ReadInto(ctx, buf, off, timeout); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadInto reads len(buf) bytes at off into buf, which must be aligned for
// O_DIRECT (AlignedBuffer). It fails like Read. After an error, do not
// reuse buf: a read that timed out may still be filling it.
func (o *IO) ReadInto(ctx context.Context, buf []byte, off int64, timeout time.Duration) error {
	return o.do(ctx, "read", buf, off, timeout, o.dev.ReadAt)
}

// Write writes p at off. p is copied first: the caller may reuse p as soon
// as Write returns, even after a timeout.
func (o *IO) Write(ctx context.Context, off int64, p []byte, timeout time.Duration) error {
	buf := AlignedBuffer(len(p))
	copy(buf, p)
	return o.do(ctx, "write", buf, off, timeout, o.dev.WriteAt)
}

func (o *IO) do(ctx context.Context, op string, buf []byte, off int64, timeout time.Duration,
	call func([]byte, int64) (int, error)) error {
	ioErr := func(err error) error {
		return &IOError{Op: op, Path: o.dev.String(), Offset: off, Len: len(buf), Err: err}
	}
	o.mu.Lock()
	if len(o.stuck) >= DefaultMaxStuck {
		o.stats.Errors++
		o.mu.Unlock()
		return ioErr(fmt.Errorf("%w: %d timed-out i/os still outstanding", ErrDeviceHung, DefaultMaxStuck))
	}
	o.mu.Unlock()

	start := o.clk.Now()
	done := make(chan ioResult, 1) // buffered: a late completion never blocks
	timedOut := make(chan struct{})
	var once sync.Once
	stop := o.clk.AfterFunc(timeout, func() { once.Do(func() { close(timedOut) }) })
	defer stop()
	go func() {
		n, err := call(buf, off)
		if err == nil && n < len(buf) {
			err = io.ErrUnexpectedEOF
		}
		done <- ioResult{n, err}
	}()

	select {
	case r := <-done:
		o.account(op, len(buf), o.clk.Now().Sub(start), r.err)
		if r.err != nil {
			return ioErr(r.err)
		}
		return nil
	case <-timedOut:
		o.abandon(op, off, len(buf), done)
		return ioErr(fmt.Errorf("%w after %v", ErrIOTimeout, timeout))
	case <-ctx.Done():
		o.abandon(op, off, len(buf), done)
		return ioErr(ctx.Err())
	}
}

// StuckWrites returns how many timed-out writes have not returned yet,
// anywhere on the device.
func (o *IO) StuckWrites() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for c := range o.stuck {
		if c.write {
			n++
		}
	}
	return n
}

// StuckWritesIn returns how many timed-out writes that overlap bytes
// [off, off+n) have not returned yet. A lease holder must not write its
// sector again while one is outstanding there: the late write would land
// after, and undo, the newer one. A stuck write elsewhere (a doorbell) does
// not hold up the renewals of our sector.
func (o *IO) StuckWritesIn(off int64, n int) int {
	return o.stuckIn(off, n, true)
}

// StuckIn returns how many timed-out calls, reads or writes, that overlap
// bytes [off, off+n) have not returned yet.
func (o *IO) StuckIn(off int64, n int) int {
	return o.stuckIn(off, n, false)
}

func (o *IO) stuckIn(off int64, n int, writesOnly bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := 0
	for c := range o.stuck {
		if (c.write || !writesOnly) && c.off < off+int64(n) && off < c.off+int64(c.n) {
			k++
		}
	}
	return k
}

// abandon counts a call as stuck until it returns.
func (o *IO) abandon(op string, off int64, n int, done <-chan ioResult) {
	c := &stuckIO{write: op == "write", off: off, n: n}
	o.mu.Lock()
	if o.stuck == nil {
		o.stuck = make(map[*stuckIO]struct{})
	}
	o.stuck[c] = struct{}{}
	o.stats.Timeouts++
	o.mu.Unlock()
	go func() {
		<-done
		o.mu.Lock()
		delete(o.stuck, c)
		o.mu.Unlock()
	}()
}

func (o *IO) account(op string, n int, lat time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.stats.Errors++
		return
	}
	now := o.clk.Now()
	if op == "read" {
		o.stats.Reads++
		o.stats.ReadBytes += int64(n)
		o.stats.LastRead = lat
		o.stats.MaxRead = max(o.stats.MaxRead, lat)
		o.stats.ReadTime += lat
		o.stats.LastReadAt = now
	} else {
		o.stats.Writes++
		o.stats.WriteBytes += int64(n)
		o.stats.LastWrite = lat
		o.stats.MaxWrite = max(o.stats.MaxWrite, lat)
		o.stats.WriteTime += lat
		o.stats.LastWriteAt = now
	}
}
