package watchdog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MarkerName is the name of the reset marker file in the daemon's run
// directory.
const MarkerName = "reset-pending"

// WriteMarker records in dir (the daemon's run directory, on a tmpfs such as
// /run so that it disappears with the reboot) that a reset is pending, and
// why. A daemon restarted before the reset finds the marker with ReadMarker
// and must never feed the watchdog again, so a restart cannot rescue a host
// that was told to reset.
//
// The file dir/reset-pending is replaced atomically: its content is written
// to a temporary file in dir, synced, renamed over the marker, and dir is
// synced, so a reader sees either no marker or a complete one. Newlines in
// reason are replaced by spaces.
func WriteMarker(dir, reason string) error {
	reason = strings.NewReplacer("\r", " ", "\n", " ").Replace(reason)
	content := fmt.Sprintf("reason=%s\ntime=%s\n", reason, time.Now().UTC().Format(time.RFC3339Nano))

	tmp, err := os.CreateTemp(dir, "."+MarkerName+"-*")
	if err != nil {
		return fmt.Errorf("watchdog: write reset marker: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.WriteString(content); err != nil {
		return fmt.Errorf("watchdog: write reset marker: %w", err)
	}
	// Sync before rename, as google/renameio does: otherwise a crash may
	// leave the new name pointing at an empty file (ext4 delayed allocation).
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("watchdog: write reset marker: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("watchdog: write reset marker: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, MarkerName)); err != nil {
		return fmt.Errorf("watchdog: write reset marker: %w", err)
	}
	committed = true
	// Sync the directory so the rename itself is durable.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("watchdog: write reset marker: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("watchdog: write reset marker: sync %s: %w", dir, err)
	}
	return nil
}

// ReadMarker reports whether dir holds a reset marker and, if so, the reason
// written with it. No marker gives ok == false and a nil error. A marker
// whose content cannot be parsed still counts (ok == true): its existence is
// what matters. On error, a daemon should refuse to start rather than risk
// feeding a host that must reset.
func ReadMarker(dir string) (reason string, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("watchdog: read reset marker: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if r, found := strings.CutPrefix(line, "reason="); found {
			return r, true, nil
		}
	}
	return "reset marker present, reason unreadable", true, nil
}
