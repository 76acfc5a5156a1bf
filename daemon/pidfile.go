package daemon

import (
	"errors"
	"fmt"
	"os"

	"github.com/sanlock-msg/sanlock-msg/internal/pidlock"
)

// lockPIDFile locks the pid file at path (see pidlock.Lock), so a second
// daemon on the same run directory fails here, naming the first one's pid.
func lockPIDFile(path string) (*os.File, error) {
	f, err := pidlock.Lock(path, 0o644)
	if errors.Is(err, pidlock.ErrHeld) {
		return nil, fmt.Errorf("daemon: another daemon (pid %s) holds %s; use another --run-dir", pidlock.Holder(err), path)
	}
	if err != nil {
		return nil, fmt.Errorf("daemon: pid file: %w", err)
	}
	return f, nil
}
