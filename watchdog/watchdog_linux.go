package watchdog

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel interface is described in
// https://docs.kernel.org/watchdog/watchdog-api.html.

// Open opens the watchdog device at path (such as /dev/watchdog0), checks
// that it is one (WDIOC_GETSUPPORT), and sets its timeout to timeout
// (DefaultTimeout if timeout <= 0), rounded up to whole seconds.
//
// Opening a watchdog arms it: from then on the machine resets unless
// Keepalive is called at least once per Timeout, or the device is disarmed
// with Close. Exiting, crashing or closing the file any other way leaves it
// armed. The driver may accept a different timeout than requested; callers
// that rely on the timeout (every host of a lockspace must use the same one)
// must compare Timeout with what they asked for.
//
// A path that is not a watchdog gives an error wrapping ErrNotWatchdog; a
// regular file or block device is rejected before it is opened for writing,
// so it is never modified. A device already open by another program (Linux
// watchdogs are single-open) gives an error wrapping ErrBusy that names the
// holding processes when /proc shows them.
func Open(path string, timeout time.Duration) (*Hardware, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	if fi.Mode().Type() != fs.ModeDevice|fs.ModeCharDevice {
		return nil, notWatchdog(path, describeMode(fi.Mode()), nil)
	}

	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, busyError(path, rdevOf(fi), err)
		}
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	// Check again on the open file, in case path changed since the Stat.
	if fi, err := f.Stat(); err != nil || fi.Mode().Type() != fs.ModeDevice|fs.ModeCharDevice {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("watchdog: %s: %w", path, err)
		}
		return nil, notWatchdog(path, describeMode(fi.Mode()), nil)
	}

	h := &Hardware{path: path, f: f}
	var info *unix.WatchdogInfo
	h.mu.Lock()
	err = h.controlLocked("WDIOC_GETSUPPORT", func(fd int) error {
		var err error
		info, err = unix.IoctlGetWatchdogInfo(fd)
		return err
	})
	h.mu.Unlock()
	if err != nil {
		// Not (usably) a watchdog. If it is one after all, opening armed it:
		// Close disarms it with the magic write.
		h.Close()
		for _, errno := range []unix.Errno{unix.ENOTTY, unix.EINVAL} {
			if errors.Is(err, errno) {
				return nil, notWatchdog(path, unix.ErrnoName(errno), errno)
			}
		}
		return nil, err
	}
	h.identity = string(bytes.TrimRight(info.Identity[:], "\x00"))

	if _, err := h.SetTimeout(orDefault(timeout)); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// keepalive pets the watchdog open on fd.
func keepalive(fd int) error { return unix.IoctlWatchdogKeepalive(fd) }

// setTimeout sets the timeout of the watchdog open on fd to secs seconds and
// returns the timeout the driver reports afterwards.
func setTimeout(fd, secs int) (int, error) {
	if err := unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, secs); err != nil {
		return 0, err
	}
	got, err := unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT)
	if err != nil || got <= 0 {
		// An old driver without WDIOC_GETTIMEOUT: trust the request.
		return secs, nil
	}
	return got, nil
}

// notWatchdog is the error for a path that is not a watchdog device.
func notWatchdog(path, why string, cause error) error {
	return &detailError{
		msg:      fmt.Sprintf("watchdog: %s is not a watchdog device (%s); use --watchdog none or fake:FILE", path, why),
		sentinel: ErrNotWatchdog,
		cause:    cause,
	}
}

// describeMode names the kind of file m describes.
func describeMode(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "regular file"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "block device"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	}
	return "not a character device"
}

// rdevOf returns the device number of a device file, or 0.
func rdevOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Rdev)
	}
	return 0
}
