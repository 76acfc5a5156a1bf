package callback

import "path/filepath"

// Run directory defaults.
const (
	// DefaultRunDir is the daemon's run directory when neither --run-dir
	// nor EnvRunDir is set.
	DefaultRunDir = "/run/sanlock-msg"
	// EnvRunDir names the environment variable that sets the run directory
	// for the daemon and every client verb.
	EnvRunDir = "SANLOCK_MSG_RUN_DIR"
)

// ResolveRunDir returns the run directory: flagValue if not empty, else
// the value of EnvRunDir from getenv (nil getenv skips it), else
// DefaultRunDir.
func ResolveRunDir(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if getenv != nil {
		if v := getenv(EnvRunDir); v != "" {
			return v
		}
	}
	return DefaultRunDir
}

// SocketPath returns the daemon's socket path in runDir.
func SocketPath(runDir string) string { return filepath.Join(runDir, SocketName) }
