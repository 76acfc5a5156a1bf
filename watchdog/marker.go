package watchdog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/internal/atomicfile"
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
//
// The marker also holds the boot id (CurrentBootID) of the boot that must
// end: a daemon that finds a marker of an earlier boot knows the reset
// happened (LoadMarker, Marker.ThisBoot) even if dir is not a tmpfs.
func WriteMarker(dir, reason string) error {
	boot, _ := CurrentBootID() // no boot id: the marker binds to no boot, and stays
	return WriteMarkerBoot(dir, reason, boot)
}

// WriteMarkerBoot is WriteMarker with the boot id given (tests).
func WriteMarkerBoot(dir, reason, bootID string) error {
	clean := strings.NewReplacer("\r", " ", "\n", " ")
	reason, bootID = clean.Replace(reason), clean.Replace(bootID)
	content := fmt.Sprintf("reason=%s\ntime=%s\n", reason, time.Now().UTC().Format(time.RFC3339Nano))
	if bootID != "" {
		content += "boot_id=" + bootID + "\n"
	}

	if err := atomicfile.Write(filepath.Join(dir, MarkerName), []byte(content), 0o644); err != nil {
		return fmt.Errorf("watchdog: write reset marker: %w", err)
	}
	return nil
}

// BootIDPath is where Linux publishes the current boot's random id.
const BootIDPath = "/proc/sys/kernel/random/boot_id"

// CurrentBootID returns this boot's id, from BootIDPath.
func CurrentBootID() (string, error) {
	b, err := os.ReadFile(BootIDPath)
	if err != nil {
		return "", fmt.Errorf("watchdog: boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Marker is a reset marker's content.
type Marker struct {
	Reason string
	// BootID is the boot the reset was meant to end; empty in a marker
	// written without one (it then counts for every boot).
	BootID string
	Time   time.Time
}

// ThisBoot reports whether the marker's reset is still pending in the boot
// whose id is bootID: true unless both ids are known and differ (then the
// reset happened).
func (m *Marker) ThisBoot(bootID string) bool {
	return m.BootID == "" || bootID == "" || m.BootID == bootID
}

// LoadMarker returns the reset marker in dir, or nil if there is none. A
// marker whose content cannot be parsed still counts (Reason says so).
func LoadMarker(dir string) (*Marker, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watchdog: read reset marker: %w", err)
	}
	m := &Marker{Reason: "reset marker present, reason unreadable"}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "reason":
			m.Reason = v
		case "boot_id":
			m.BootID = v
		case "time":
			m.Time, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	return m, nil
}

// ClearMarker removes the reset marker in dir (the reset happened).
func ClearMarker(dir string) error {
	if err := os.Remove(filepath.Join(dir, MarkerName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("watchdog: clear reset marker: %w", err)
	}
	return atomicfile.SyncDir(dir)
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
