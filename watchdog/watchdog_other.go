//go:build !linux

package watchdog

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
)

// Open is only implemented on Linux. Elsewhere it returns an error wrapping
// os.ErrNotExist and errors.ErrUnsupported; use None or a Fake instead.
func Open(path string, timeout time.Duration) (*Hardware, error) {
	return nil, &detailError{
		msg:      fmt.Sprintf("watchdog: %s: hardware watchdogs are not supported on %s; use --watchdog none or fake:FILE", path, runtime.GOOS),
		sentinel: os.ErrNotExist,
		cause:    errors.ErrUnsupported,
	}
}

// keepalive is never reached: Open never returns a Hardware.
func keepalive(fd int) error { return errors.ErrUnsupported }

// setTimeout is never reached: Open never returns a Hardware.
func setTimeout(fd, secs int) (int, error) { return 0, errors.ErrUnsupported }
