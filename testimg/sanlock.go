package testimg

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Python is the interpreter that has python3-sanlock (Debian installs the
// module for the system python only).
const Python = "/usr/bin/python3"

// commandTimeout bounds every sanlock command a helper runs; add_lockspace
// takes about 3 s at io_timeout 1 and about 21 s at io_timeout 10.
const commandTimeout = 2 * time.Minute

var (
	sanlockOnce sync.Once
	sanlockErr  error
)

// RequireSanlock checks that the sanlock daemon and CLI, python3-sanlock
// (importable by /usr/bin/python3) and sanlk-reset are installed. When one
// is missing the test is skipped with the reason (failed under CI=true).
func RequireSanlock(t testing.TB) {
	t.Helper()
	sanlockOnce.Do(func() {
		var missing []string
		for _, bin := range []string{"sanlock", "sanlk-reset"} {
			if _, err := exec.LookPath(bin); err != nil {
				missing = append(missing, bin)
			}
		}
		if out, err := exec.Command(Python, "-c", "import sanlock").CombinedOutput(); err != nil {
			missing = append(missing, fmt.Sprintf("python3-sanlock (%s -c 'import sanlock': %v: %s)", Python, err, bytes.TrimSpace(out)))
		}
		if len(missing) > 0 {
			sanlockErr = fmt.Errorf("testimg: missing %s (apt-get install -y sanlock python3-sanlock sanlk-reset)", strings.Join(missing, ", "))
		}
	})
	if sanlockErr != nil {
		Unavailable(t, "%v", sanlockErr)
	}
}

// Sanlock is a real sanlock daemon started for a test: unprivileged
// (SANLOCK_PRIVILEGED=0), without a watchdog (-w 0), with io_timeout 1 and
// its own run directory, so several can run on one machine. Its methods
// are safe for concurrent use.
type Sanlock struct {
	// RunDir is the daemon's SANLOCK_RUN_DIR: its socket and pid file.
	RunDir string
	// HostName is the daemon's -e host name, written as resource_name
	// into the sectors it holds.
	HostName string
	// LogPath is the file that collects the daemon's stdout and stderr.
	LogPath string
	// Pid is the daemon's process id.
	Pid int

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// StartSanlock starts `sanlock daemon -D -w 0 -o 1 -e hostName` with a
// fresh run directory and waits until it answers `sanlock client status`.
// The daemon's output goes to a log file in t.TempDir(), printed when the
// test fails. Cleanup runs `sanlock client shutdown -f 1 -w 1` and, if the
// daemon is still alive a few seconds later, kills it (its pid only).
func StartSanlock(t testing.TB, hostName string) *Sanlock {
	t.Helper()
	RequireSanlock(t)
	// The socket path must fit in sun_path (108 bytes): use a short
	// directory, not t.TempDir(), whose name contains the test's.
	runDir, err := os.MkdirTemp("", "slk-")
	if err != nil {
		t.Fatalf("testimg: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	logPath := fmt.Sprintf("%s/sanlock-%s.log", t.TempDir(), hostName)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("testimg: %v", err)
	}
	defer logFile.Close()

	cmd := exec.Command("sanlock", "daemon", "-D", "-w", "0", "-o", "1", "-e", hostName)
	cmd.Env = append(os.Environ(), "SANLOCK_RUN_DIR="+runDir, "SANLOCK_PRIVILEGED=0")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("testimg: start sanlock daemon: %v", err)
	}
	s := &Sanlock{RunDir: runDir, HostName: hostName, LogPath: logPath, Pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })

	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := s.Client("status")
		if err == nil {
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("testimg: sanlock daemon %s exited at start: %v\n%s", hostName, cmd.ProcessState, s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testimg: sanlock daemon %s does not answer status after 15 s: %v: %s\n%s", hostName, err, out, s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop shuts the daemon down, forcing its lockspaces out, and kills it by
// pid if it does not exit.
func (s *Sanlock) stop(t testing.TB) {
	select {
	case <-s.done:
	default:
		s.Client("shutdown", "-f", "1", "-w", "1")
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Logf("testimg: sanlock daemon %s (pid %d) still running 10 s after shutdown; killing it", s.HostName, s.Pid)
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	if t.Failed() {
		t.Logf("testimg: log of sanlock daemon %s (pid %d):\n%s", s.HostName, s.Pid, s.log())
	}
}

// log returns the daemon's output so far.
func (s *Sanlock) log() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Alive reports whether the daemon process is still running.
func (s *Sanlock) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Client runs `sanlock client ARGS...` against this daemon (its run
// directory) and returns the combined output. A non-zero exit status is
// returned as an error.
func (s *Sanlock) Client(args ...string) (string, error) {
	return run(s.env(), "sanlock", append([]string{"client"}, args...)...)
}

// Python runs `/usr/bin/python3 -c script ARGS...` with this daemon's run
// directory in SANLOCK_RUN_DIR (libsanlock reads it once per process, so
// each daemon needs its own interpreter) and returns the combined output.
func (s *Sanlock) Python(script string, args ...string) (string, error) {
	return run(s.env(), Python, append([]string{"-c", script}, args...)...)
}

func (s *Sanlock) env() []string {
	return append(os.Environ(), "SANLOCK_RUN_DIR="+s.RunDir)
}

// Direct runs `sanlock direct ARGS...` (no daemon involved) and returns the
// combined output. A non-zero exit status is returned as an error.
func Direct(args ...string) (string, error) {
	return run(nil, "sanlock", append([]string{"direct"}, args...)...)
}

// SanlockInit runs `sanlock direct init -o IO -s NAME:0:PATH:OFF EXTRA...`
// (EXTRA is, for example, "-Z", "4096", "-A", "1M") and fails the test if
// sanlock does not report "init done 0". ioTimeout 0 leaves -o out, so
// sanlock writes its default (10).
func SanlockInit(t testing.TB, name, path string, off int64, ioTimeout int, extra ...string) {
	t.Helper()
	RequireSanlock(t)
	args := []string{"init"}
	if ioTimeout != 0 {
		args = append(args, "-o", fmt.Sprint(ioTimeout))
	}
	args = append(args, "-s", fmt.Sprintf("%s:0:%s:%d", name, path, off))
	args = append(args, extra...)
	out, err := Direct(args...)
	if err != nil || !strings.Contains(out, "init done 0") {
		t.Fatalf("testimg: sanlock direct %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// run runs a command with env (nil: the test's environment) and a timeout.
func run(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}
