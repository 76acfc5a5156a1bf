//go:build linux

package delta

import (
	"fmt"
	"os"

	"github.com/ncw/directio"
	"golang.org/x/sys/unix"
)

// File is a Device backed by a block device or regular file, opened with
// O_DIRECT|O_SYNC as sanlock opens it, so every read sees the disk and every
// write is on stable storage when it returns.
type File struct {
	f          *os.File
	path       string
	sectorSize int
	block      bool
}

var _ Device = (*File)(nil)

// OpenFile opens path for lockspace I/O. readOnly opens it O_RDONLY (dump,
// read). For a block device the sector size comes from BLKSSZGET; for a
// regular file SectorSize returns 0.
func OpenFile(path string, readOnly bool) (*File, error) {
	// Say what the path is before O_DIRECT does: opening a directory or a
	// character device with it fails with EINVAL, which reads as "this
	// filesystem does not support O_DIRECT".
	if st, err := os.Stat(path); err == nil {
		if err := deviceKind(path, st); err != nil {
			return nil, err
		}
	}
	flag := os.O_RDWR | unix.O_SYNC
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := directio.OpenFile(path, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("delta: open %s with O_DIRECT: %w", path, err)
	}
	d := &File{f: f, path: path}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("delta: stat %s: %w", path, err)
	}
	if err := deviceKind(path, st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode()&os.ModeDevice != 0 {
		ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("delta: %s: BLKSSZGET: %w", path, err)
		}
		d.sectorSize, d.block = ss, true
	}
	return d, nil
}

// deviceKind returns nil for a block device or a regular file, else an
// error wrapping ErrNotDevice that says what path is.
func deviceKind(path string, st os.FileInfo) error {
	m := st.Mode()
	var what string
	switch {
	case m.IsRegular(), m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		return nil
	case m.IsDir():
		what = "a directory"
	case m&os.ModeCharDevice != 0:
		what = "a character device"
	case m&os.ModeNamedPipe != 0:
		what = "a fifo"
	case m&os.ModeSocket != 0:
		what = "a socket"
	default:
		what = "of type " + m.Type().String()
	}
	return fmt.Errorf("delta: %s is %s: %w", path, what, ErrNotDevice)
}

// ReadAt reads with pread(2).
func (d *File) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// WriteAt writes with pwrite(2); O_SYNC makes it durable.
func (d *File) WriteAt(p []byte, off int64) (int, error) { return d.f.WriteAt(p, off) }

// SectorSize returns BLKSSZGET for block devices and 0 for regular files.
func (d *File) SectorSize() int { return d.sectorSize }

// Size returns the block device size (BLKGETSIZE64) or the file size.
func (d *File) Size() (int64, error) {
	if d.block {
		n, err := unix.IoctlGetUint64(int(d.f.Fd()), unix.BLKGETSIZE64)
		if err != nil {
			return 0, fmt.Errorf("delta: %s: BLKGETSIZE64: %w", d.path, err)
		}
		return int64(n), nil
	}
	st, err := d.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("delta: stat %s: %w", d.path, err)
	}
	return st.Size(), nil
}

// Close closes the file.
func (d *File) Close() error { return d.f.Close() }

// String returns the path.
func (d *File) String() string { return d.path }

// AlignedBuffer returns a zeroed buffer of n bytes aligned for O_DIRECT.
func AlignedBuffer(n int) []byte { return directio.AlignedBlock(n) }
