package delta

import (
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"
)

// FaultKind selects what an injected fault does.
type FaultKind int

// Fault kinds.
const (
	// FaultEIO fails the I/O with EIO without touching the device.
	FaultEIO FaultKind = iota + 1
	// FaultHang blocks the I/O until FaultDevice.Release; the I/O then
	// proceeds normally (a late completion).
	FaultHang
	// FaultShort transfers only the first Bytes bytes and reports a short
	// transfer.
	FaultShort
	// FaultTorn writes only the first Bytes bytes of the request, then
	// fails with EIO, like a write cut by power loss. With a Delay, the
	// rest lands Delay later and the write then succeeds: readers in
	// between see the sector torn, as on storage that does not write a
	// sector atomically.
	FaultTorn
	// FaultCorrupt flips the byte at request offset Bytes (device offset
	// Bytes with Abs) in the data read (reads) or stored (writes); the I/O
	// itself succeeds.
	FaultCorrupt
	// FaultDelay sleeps Delay (real time) before doing the I/O.
	FaultDelay
)

// Fault describes one injected fault.
type Fault struct {
	Kind FaultKind
	// Op limits the fault to "read" or "write"; "" matches both.
	Op string
	// Off and End limit the fault to requests that overlap byte range
	// [Off, End) of the device; End 0 means no limit.
	Off, End int64
	// Count is how many matching requests the fault hits; 0 is forever.
	Count int
	// Bytes parametrises FaultShort, FaultTorn and FaultCorrupt.
	Bytes int
	// Abs makes FaultCorrupt's Bytes a device offset: the same byte is
	// flipped whichever request covers it (a read of one sector, or of the
	// whole area).
	Abs bool
	// Delay is FaultDelay's sleep, or how long a FaultTorn write stays
	// torn before it completes.
	Delay time.Duration
}

// corruptAt returns the index, in a request at device offset off, of the
// byte FaultCorrupt flips (negative if before the request).
func (f *Fault) corruptAt(off int64) int {
	if f.Abs {
		return int(int64(f.Bytes) - off)
	}
	return f.Bytes
}

// FaultDevice wraps a Device and injects faults into matching requests. It
// is safe for concurrent use.
type FaultDevice struct {
	Device
	mu     sync.Mutex
	faults []*Fault
	gate   chan struct{} // closed by Release to free hung I/Os
	hung   int
}

var _ Device = (*FaultDevice)(nil)

// NewFaultDevice wraps d.
func NewFaultDevice(d Device) *FaultDevice {
	return &FaultDevice{Device: d, gate: make(chan struct{})}
}

// Inject adds a fault; faults are matched in the order added.
func (d *FaultDevice) Inject(f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = append(d.faults, &f)
}

// Clear removes every fault that has not fired yet (hung I/Os stay hung
// until Release).
func (d *FaultDevice) Clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = nil
}

// Release lets every I/O hung so far proceed.
func (d *FaultDevice) Release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	close(d.gate)
	d.gate = make(chan struct{})
}

// Hung returns how many I/Os are blocked in a FaultHang right now.
func (d *FaultDevice) Hung() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hung
}

func (d *FaultDevice) match(op string, off int64, n int) *Fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, f := range d.faults {
		if f.Op != "" && f.Op != op {
			continue
		}
		if off+int64(n) <= f.Off || (f.End != 0 && off >= f.End) {
			continue
		}
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				d.faults = append(d.faults[:i], d.faults[i+1:]...)
			}
		}
		c := *f
		return &c
	}
	return nil
}

func (d *FaultDevice) hang() {
	d.mu.Lock()
	gate := d.gate
	d.hung++
	d.mu.Unlock()
	<-gate
	d.mu.Lock()
	d.hung--
	d.mu.Unlock()
}

// stall applies the faults that come before the I/O itself: EIO fails it,
// hang and delay hold it, then let it proceed.
func (d *FaultDevice) stall(f *Fault) error {
	switch f.Kind {
	case FaultEIO:
		return syscall.EIO
	case FaultHang:
		d.hang()
	case FaultDelay:
		time.Sleep(f.Delay)
	}
	return nil
}

// ReadAt applies read faults, then reads from the wrapped device.
func (d *FaultDevice) ReadAt(p []byte, off int64) (int, error) {
	f := d.match("read", off, len(p))
	if f == nil {
		return d.Device.ReadAt(p, off)
	}
	if err := d.stall(f); err != nil {
		return 0, err
	}
	switch f.Kind {
	case FaultShort, FaultTorn:
		n, err := d.Device.ReadAt(p[:min(f.Bytes, len(p))], off)
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case FaultCorrupt:
		n, err := d.Device.ReadAt(p, off)
		if i := f.corruptAt(off); i >= 0 && i < n {
			p[i] ^= 0xA5
		}
		return n, err
	}
	return d.Device.ReadAt(p, off)
}

// WriteAt applies write faults, then writes to the wrapped device.
func (d *FaultDevice) WriteAt(p []byte, off int64) (int, error) {
	f := d.match("write", off, len(p))
	if f == nil {
		return d.Device.WriteAt(p, off)
	}
	if err := d.stall(f); err != nil {
		return 0, err
	}
	switch f.Kind {
	case FaultShort, FaultTorn:
		// Merge the prefix into what is on disk, whatever the alignment.
		ss := len(p)
		cur := AlignedBuffer(ss)
		if _, err := d.Device.ReadAt(cur, off); err != nil {
			return 0, err
		}
		k := min(f.Bytes, len(p))
		copy(cur, p[:k])
		if _, err := d.Device.WriteAt(cur, off); err != nil {
			return 0, err
		}
		if f.Kind == FaultTorn && f.Delay > 0 {
			time.Sleep(f.Delay)
			return d.Device.WriteAt(p, off)
		}
		if f.Kind == FaultTorn {
			return k, syscall.EIO
		}
		return k, io.ErrShortWrite
	case FaultCorrupt:
		c := AlignedBuffer(len(p))
		copy(c, p)
		if i := f.corruptAt(off); i >= 0 && i < len(c) {
			c[i] ^= 0xA5
		}
		return d.Device.WriteAt(c, off)
	}
	return d.Device.WriteAt(p, off)
}

// String names the wrapped device.
func (d *FaultDevice) String() string { return fmt.Sprintf("fault(%s)", d.Device.String()) }
