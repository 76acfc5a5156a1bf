package watchdog

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Hardware is a kernel watchdog device opened with Open. It is safe for
// concurrent use.
type Hardware struct {
	path     string
	identity string

	mu      sync.Mutex // guards the fields below and serializes ioctls
	f       *os.File
	timeout time.Duration
	closed  bool
}

// Keepalive pets the watchdog with WDIOC_KEEPALIVE.
func (h *Hardware) Keepalive() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked("keepalive"); err != nil {
		return err
	}
	return h.controlLocked("WDIOC_KEEPALIVE", keepalive)
}

// SetTimeout sets the timeout with WDIOC_SETTIMEOUT to d in whole seconds,
// rounded up, at least one, and returns the timeout the driver accepted,
// which may differ. The kernel also pets the watchdog, so the new countdown
// starts now.
func (h *Hardware) SetTimeout(d time.Duration) (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked("settimeout"); err != nil {
		return 0, err
	}
	var got int
	err := h.controlLocked("WDIOC_SETTIMEOUT", func(fd int) error {
		var err error
		got, err = setTimeout(fd, roundTimeout(d))
		return err
	})
	if err != nil {
		return 0, err
	}
	h.timeout = time.Duration(got) * time.Second
	return h.timeout, nil
}

// Timeout reports the timeout last accepted by the driver.
func (h *Hardware) Timeout() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.timeout
}

// Identity reports the driver's identity string from WDIOC_GETSUPPORT, such
// as "Software Watchdog" for softdog, or "iTCO_wdt".
func (h *Hardware) Identity() string { return h.identity }

// Close disarms the watchdog by writing the magic character 'V', then closes
// the device. It closes the device even if the write fails; the error then
// reports the failed write, and the watchdog may still fire (for example
// with a driver built with nowayout). Close is idempotent.
func (h *Hardware) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.f == nil {
		return nil
	}
	h.closed = true
	_, werr := h.f.Write([]byte("V"))
	cerr := h.f.Close()
	switch {
	case werr != nil:
		return fmt.Errorf("watchdog: %s: magic close: %w", h.path, werr)
	case cerr != nil:
		return fmt.Errorf("watchdog: %s: close: %w", h.path, cerr)
	}
	return nil
}

// String returns the device path.
func (h *Hardware) String() string { return h.path }

// usableLocked returns the error for an operation on a closed device.
func (h *Hardware) usableLocked(op string) error {
	if h.closed || h.f == nil {
		return fmt.Errorf("watchdog: %s: %s: %w", h.path, op, os.ErrClosed)
	}
	return nil
}

// controlLocked runs fn on the device's file descriptor, keeping the file
// alive meanwhile, and names the ioctl in the error.
func (h *Hardware) controlLocked(ioctl string, fn func(fd int) error) error {
	rc, err := h.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("watchdog: %s: %s: %w", h.path, ioctl, err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("watchdog: %s: %s: %w", h.path, ioctl, err)
	}
	if ferr != nil {
		return fmt.Errorf("watchdog: %s: %s: %w", h.path, ioctl, ferr)
	}
	return nil
}
