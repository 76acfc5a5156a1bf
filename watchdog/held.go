package watchdog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/internal/atomicfile"
)

// HeldName is the file, in the daemon's run directory, that says the
// daemon holds lockspaces whose renewals the watchdog guards.
const HeldName = "lockspaces-held"

// Held is the content of the held file: which daemon held which
// lockspaces, in which boot.
type Held struct {
	PID        int
	Lockspaces []string
	BootID     string
	Time       time.Time
}

// WriteHeld records in dir that the daemon pid holds lockspaces (non-empty,
// names without newlines) guarded by the watchdog, in the boot bootID. It
// is replaced atomically, as the reset marker is.
//
// Why: a daemon killed (kill -9, a crash) while it holds lockspaces stops
// renewing, and its peers will declare the host DEAD host_dead after its
// last renewal, because its watchdog fires W after the last keepalive. A
// daemon started again before that would open the watchdog and feed it,
// rescuing a host that its peers are about to consider dead: the split
// brain the watchdog exists to prevent (wdmd keeps the same rule: a client
// that vanishes makes it stop feeding). So a daemon that finds this file
// from its own boot must treat the reset as pending.
func WriteHeld(dir string, pid int, lockspaces []string, bootID string) error {
	clean := strings.NewReplacer("\r", " ", "\n", " ", ",", " ")
	names := make([]string, len(lockspaces))
	for i, n := range lockspaces {
		names[i] = clean.Replace(n)
	}
	content := fmt.Sprintf("pid=%d\nlockspaces=%s\ntime=%s\n", pid, strings.Join(names, ","),
		time.Now().UTC().Format(time.RFC3339Nano))
	if bootID != "" {
		content += "boot_id=" + clean.Replace(bootID) + "\n"
	}
	if err := atomicfile.Write(filepath.Join(dir, HeldName), []byte(content), 0o644); err != nil {
		return fmt.Errorf("watchdog: write %s: %w", HeldName, err)
	}
	return nil
}

// LoadHeld returns the held file in dir, or nil if there is none.
func LoadHeld(dir string) (*Held, error) {
	b, err := os.ReadFile(filepath.Join(dir, HeldName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watchdog: read %s: %w", HeldName, err)
	}
	h := &Held{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "pid":
			h.PID, _ = strconv.Atoi(v)
		case "lockspaces":
			if v != "" {
				h.Lockspaces = strings.Split(v, ",")
			}
		case "boot_id":
			h.BootID = v
		case "time":
			h.Time, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	return h, nil
}

// ThisBoot reports whether the file was written in the boot bootID (true
// unless both ids are known and differ).
func (h *Held) ThisBoot(bootID string) bool {
	return h.BootID == "" || bootID == "" || h.BootID == bootID
}

// ClearHeld removes the held file in dir: every lockspace was released
// cleanly, or the boot it was written in ended.
func ClearHeld(dir string) error {
	if err := os.Remove(filepath.Join(dir, HeldName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("watchdog: clear %s: %w", HeldName, err)
	}
	return atomicfile.SyncDir(dir)
}
