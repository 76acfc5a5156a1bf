package delta

import (
	"fmt"
	"io"
	"sync"
)

// MemDevice is an in-memory Device for tests. Each WriteAt is applied
// atomically, as a disk writes one sector atomically. It is safe for
// concurrent use.
type MemDevice struct {
	mu         sync.Mutex
	data       []byte
	sectorSize int
	name       string
	reads      int64 // bytes read
	writes     int64 // bytes written
}

var _ Device = (*MemDevice)(nil)

// NewMemDevice returns a zeroed device of size bytes. sectorSize 0 makes it
// behave like a regular file (SectorSize reports 0; I/O must still be
// 512-aligned).
func NewMemDevice(size int64, sectorSize int) *MemDevice {
	return &MemDevice{data: make([]byte, size), sectorSize: sectorSize, name: "mem"}
}

func (d *MemDevice) check(p []byte, off int64) error {
	ss := int64(d.sectorSize)
	if ss == 0 {
		ss = 512
	}
	if off%ss != 0 || int64(len(p))%ss != 0 {
		return fmt.Errorf("%w: offset %d length %d, sector %d", ErrMisaligned, off, len(p), ss)
	}
	return nil
}

// ReadAt copies from the device.
func (d *MemDevice) ReadAt(p []byte, off int64) (int, error) {
	if err := d.check(p, off); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if off >= int64(len(d.data)) {
		return 0, io.EOF
	}
	n := copy(p, d.data[off:])
	d.reads += int64(n)
	if n < len(p) {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// WriteAt copies to the device.
func (d *MemDevice) WriteAt(p []byte, off int64) (int, error) {
	if err := d.check(p, off); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if off+int64(len(p)) > int64(len(d.data)) {
		return 0, fmt.Errorf("delta: write past end of %d-byte device: %w", len(d.data), io.ErrShortWrite)
	}
	d.writes += int64(len(p))
	return copy(d.data[off:], p), nil
}

// SectorSize returns the sector size given to NewMemDevice.
func (d *MemDevice) SectorSize() int { return d.sectorSize }

// Size returns the device size.
func (d *MemDevice) Size() (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int64(len(d.data)), nil
}

// Close does nothing.
func (d *MemDevice) Close() error { return nil }

// String returns "mem".
func (d *MemDevice) String() string { return d.name }

// Bytes returns a copy of n bytes at off, for test assertions.
func (d *MemDevice) Bytes(off int64, n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.data[off:off+int64(n)]...)
}

// Poke overwrites bytes at off without alignment checks, simulating
// another writer or corruption.
func (d *MemDevice) Poke(off int64, b []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.data[off:], b)
}

// Stats returns the bytes read and written so far.
func (d *MemDevice) Stats() (read, written int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reads, d.writes
}
