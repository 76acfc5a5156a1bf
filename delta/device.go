package delta

import (
	"errors"
	"fmt"
)

// Device is the storage a lockspace lives on: a block device, a regular
// file, or a test double.
//
// Contract:
//   - Every ReadAt and WriteAt covers whole sectors: off and len(p) are
//     multiples of the device's sector size, and p is aligned for O_DIRECT
//     (use AlignedBuffer).
//   - A call may block for as long as the storage does, even forever. The
//     lockspace code never calls a Device directly: it goes through IO,
//     which bounds every call by a timeout and never touches a buffer again
//     while a timed-out call may still be using it. Implementations must
//     therefore be safe for concurrent use.
//   - A short transfer is reported as an error (io.ErrShortWrite or
//     io.ErrUnexpectedEOF); a WriteAt that fails may have written any whole
//     sectors of p, or, on a torn write, part of one.
type Device interface {
	// ReadAt reads len(p) bytes at byte offset off.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes len(p) bytes at byte offset off, durably: it returns
	// when the data is on stable storage.
	WriteAt(p []byte, off int64) (int, error)
	// SectorSize returns the logical sector size (BLKSSZGET) of a block
	// device, or 0 when the device does not define one (a regular file);
	// the sector size then comes from the lockspace's records.
	SectorSize() int
	// Size returns the device's size in bytes.
	Size() (int64, error)
	// Close releases the device. I/O still outstanding may fail.
	Close() error
	// String names the device (its path) for messages.
	String() string
}

// Sentinel errors of the device layer.
var (
	// ErrIOTimeout means an I/O did not complete within its timeout. The
	// I/O may still complete later.
	ErrIOTimeout = errors.New("delta: i/o timeout")
	// ErrDeviceHung means too many earlier I/Os are still outstanding after
	// timing out; no new I/O is started until some complete.
	ErrDeviceHung = errors.New("delta: device hung")
	// ErrMisaligned means an offset or length is not a multiple of the
	// sector size.
	ErrMisaligned = errors.New("delta: misaligned i/o")
	// ErrDeviceTooSmall means the device ends before the lockspace area.
	ErrDeviceTooSmall = errors.New("delta: device too small")
	// ErrNotDevice means a path is neither a block device nor a regular
	// file (a directory, a character device, a fifo...).
	ErrNotDevice = errors.New("not a block device or a regular file")
)

// IOError records the operation and location of a failed I/O.
type IOError struct {
	Op     string // "read" or "write"
	Path   string // device name
	Offset int64  // byte offset
	Len    int    // bytes requested
	Err    error
}

func (e *IOError) Error() string {
	return fmt.Sprintf("delta: %s %s at offset %d (%d bytes): %v", e.Op, e.Path, e.Offset, e.Len, e.Err)
}

// Unwrap returns the underlying error.
func (e *IOError) Unwrap() error { return e.Err }
