package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// runDirFlag adds --run-dir, shared by the daemon and its client verbs.
func (c *command) runDirFlag() *string {
	return c.fs.String("run-dir", "", "the daemon's run directory (default: $"+callback.EnvRunDir+", else "+callback.DefaultRunDir+")")
}

// dialDaemon connects to the daemon of the run directory given by
// --run-dir, the environment or the default.
func dialDaemon(ctx context.Context, e *env, runDir string) (*callback.Client, error) {
	return callback.Dial(ctx, callback.ResolveRunDir(runDir, e.getenv))
}

// ago formats an age in seconds for tables: "1.2s ago", "-" if unknown.
func ago(sec float64, known bool) string {
	if !known {
		return "-"
	}
	return fmt.Sprintf("%.1fs ago", sec)
}

// until formats the time left until t: "in 3.2s", "3.2s ago", "-".
func until(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Seconds()
	if d < 0 {
		return fmt.Sprintf("%.1fs ago", -d)
	}
	return fmt.Sprintf("in %.1fs", d)
}
