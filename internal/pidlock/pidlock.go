// Package pidlock keeps a second process off a directory: it takes an
// exclusive flock on a file there and writes the holder's pid into it.
package pidlock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrHeld means another process holds the lock; the error names its pid.
var ErrHeld = errors.New("pidlock: held by another process")

// Lock opens path (mode perm if created), takes an exclusive flock on it
// without waiting and writes our pid into it. The lock is held until the
// returned file is closed (or the process dies). The file is left in place
// on exit: removing it would race with a starting process. If another
// process holds it, the error wraps ErrHeld and names that process's pid.
func Lock(path string, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, fmt.Errorf("pidlock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w (pid %s) on %s", ErrHeld, pid, path)
		}
		return nil, fmt.Errorf("pidlock: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pidlock: %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pidlock: %s: %w", path, err)
	}
	return f, nil
}

// Holder returns the pid string an ErrHeld error names ("unknown" if none).
func Holder(err error) string {
	s := err.Error()
	if i := strings.Index(s, "(pid "); i >= 0 {
		if j := strings.IndexByte(s[i:], ')'); j > 0 {
			return s[i+5 : i+j]
		}
	}
	return "unknown"
}
