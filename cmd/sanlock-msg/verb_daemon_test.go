package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// daemonVerb is a `sanlock-msg daemon` running in this process.
type daemonVerb struct {
	done chan struct{} // closed when the verb returned
	code int           // its exit status, once done is closed
	log  testimg.SyncBuffer
}

// startDaemonVerb runs `sanlock-msg daemon` in this process and waits for
// its socket.
func startDaemonVerb(t *testing.T, runDir string, args ...string) *daemonVerb {
	t.Helper()
	dv := &daemonVerb{done: make(chan struct{})}
	log := &dv.log
	args = append([]string{"daemon", "--run-dir", runDir, "--watchdog", "none"}, args...)
	go func() {
		dv.code = run(context.Background(), args, &env{stdout: log, stderr: log, getenv: func(string) string { return "" }})
		close(dv.done)
	}()
	t.Cleanup(func() {
		select {
		case <-dv.done:
			return
		default:
		}
		runCmd(t, "shutdown", "--run-dir", runDir, "--force", "--wait")
		select {
		case <-dv.done:
		case <-time.After(20 * time.Second):
			t.Error("daemon verb did not return")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := callback.Dial(context.Background(), runDir); err == nil {
			c.Close()
			return dv
		}
		select {
		case <-dv.done:
			t.Fatalf("daemon exited with %d:\n%s", dv.code, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon socket never appeared:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDaemonVerbs(t *testing.T) {
	img := testimg.File(t, 2<<20)
	if _, errOut, code := runCmd(t, "init", "-s", "LS:0:"+img+":0", "-o", "1"); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	runDir := filepath.Join(t.TempDir(), "run")
	dv := startDaemonVerb(t, runDir, "-D", "-e", "host-b", "--socket-mode", "0640")
	if st, err := os.Stat(callback.SocketPath(runDir)); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("socket: %v, %v; want mode 0640", st, err)
	}

	out, errOut, st := runCmd(t, "add-lockspace", "--run-dir", runDir, "-s", "LS:2:"+img+":0", "-o", "1")
	if st != 0 || !strings.Contains(out, "generation 1") || !strings.Contains(out, "host-b") {
		t.Fatalf("add-lockspace: exit %d: %s%s", st, out, errOut)
	}

	out, errOut, st = runCmd(t, "status", "--run-dir", runDir, "--json")
	var ds callback.DaemonStatus
	if st != 0 || json.Unmarshal([]byte(out), &ds) != nil || len(ds.Lockspaces) != 1 || ds.Lockspaces[0].HostID != 2 {
		t.Fatalf("status --json: exit %d: %s%s", st, out, errOut)
	}
	out, _, st = runCmd(t, "status", "--run-dir", runDir)
	if st != 0 || !strings.Contains(out, "LOCKSPACE") || !strings.Contains(out, "joined") {
		t.Errorf("status: exit %d:\n%s", st, out)
	}

	out, errOut, st = runCmd(t, "host-status", "--run-dir", runDir, "-s", "LS", "--json")
	var hs hostStatusJSON
	if st != 0 || json.Unmarshal([]byte(out), &hs) != nil || hs.Lockspace != "LS" || len(hs.Hosts) != 1 || hs.Hosts[0].State != "LIVE" {
		t.Fatalf("host-status --json: exit %d: %s%s", st, out, errOut)
	}
	out, _, st = runCmd(t, "host-status", "--run-dir", runDir, "-s", "LS:2:"+img+":0")
	if st != 0 || !strings.Contains(out, "LIVE (us)") {
		t.Errorf("host-status: exit %d:\n%s", st, out)
	}

	out, errOut, st = runCmd(t, "metrics", "--run-dir", runDir)
	for _, want := range []string{"\nsanlock_msg_up 1\n", "\nsanlock_msg_host_id{lockspace=\"LS\"} 2\n",
		"\nsanlock_msg_lockspace_state{lockspace=\"LS\",state=\"joined\"} 1\n", "\nsanlock_msg_hosts{lockspace=\"LS\",state=\"LIVE\"} 1\n",
		"\n# TYPE sanlock_msg_renewals_total counter\n"} {
		if st != 0 || !strings.Contains(out, want) {
			t.Errorf("metrics: exit %d, %s; want %q in:\n%s", st, errOut, want, out)
		}
	}
	out, errOut, st = runCmd(t, "metrics", "--run-dir", filepath.Join(t.TempDir(), "none"))
	if st != 1 || !strings.HasSuffix(out, "\nsanlock_msg_up 0\n") || !strings.Contains(errOut, "no daemon") {
		t.Errorf("metrics without a daemon: exit %d, %q, %q; want 1 and sanlock_msg_up 0", st, out, errOut)
	}

	// Failures and usage errors.
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"second add", []string{"add-lockspace", "-s", "LS:3:" + img + ":0", "-o", "1"}, 1, "already joined"},
		{"io_timeout 0", []string{"add-lockspace", "-s", "LS:3:" + img + ":0", "-o", "0"}, 2, "io_timeout 0"},
		{"no spec", []string{"add-lockspace"}, 2, "required"},
		{"host_id 0", []string{"add-lockspace", "-s", "LS:0:" + img + ":0"}, 2, "host_id 0"},
		{"rem unknown", []string{"rem-lockspace", "-s", "NOPE"}, 1, "not joined"},
		{"host-status unknown", []string{"host-status", "-s", "NOPE"}, 1, "not joined"},
		{"shutdown refused", []string{"shutdown"}, 1, "lockspaces joined: LS"},
		{"stray argument", []string{"status", "extra"}, 2, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, st := runCmd(t, append(tt.args, "--run-dir", runDir)...)
			if st != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", st, errOut, tt.code, tt.want)
			}
		})
	}
	if _, errOut, st := runCmd(t, "status", "--run-dir", filepath.Join(t.TempDir(), "none")); st != 1 || !strings.Contains(errOut, "no daemon at") {
		t.Errorf("status without daemon: exit %d, %q", st, errOut)
	}

	if out, errOut, st := runCmd(t, "rem-lockspace", "--run-dir", runDir, "-s", "LS:2:"+img+":0"); st != 0 {
		t.Fatalf("rem-lockspace: exit %d: %s%s", st, out, errOut)
	}
	if out, errOut, st := runCmd(t, "shutdown", "--run-dir", runDir, "--wait"); st != 0 || !strings.Contains(out, "exited") {
		t.Fatalf("shutdown --wait: exit %d: %s%s", st, out, errOut)
	}
	select {
	case <-dv.done:
		if dv.code != 0 {
			t.Errorf("daemon exited %d, want 0:\n%s", dv.code, dv.log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still running after shutdown --wait")
	}
}

func TestDaemonVerb_badWatchdog(t *testing.T) {
	out, errOut, st := runCmd(t, "daemon", "--run-dir", t.TempDir(), "--watchdog", "/dev/null")
	if st != 1 || !strings.Contains(errOut, "--watchdog none") {
		t.Errorf("exit %d, %s%s; want 1 and a hint to use --watchdog none", st, out, errOut)
	}
	if _, errOut, st := runCmd(t, "daemon", "--socket-mode", "rw"); st != 2 {
		t.Errorf("bad --socket-mode: exit %d, %s", st, errOut)
	}
}

// TestDaemonVerb_fakeFire: a daemon restarted with a reset pending never
// feeds its fake watchdog, which fires; the verb exits 137 as if the host
// had been reset.
func TestDaemonVerb_fakeFire(t *testing.T) {
	runDir := t.TempDir()
	if err := watchdog.WriteMarker(runDir, "test reset"); err != nil {
		t.Fatal(err)
	}
	wdFile := filepath.Join(t.TempDir(), "wd")
	start := time.Now()
	out, errOut, st := runCmd(t, "daemon", "--run-dir", runDir, "--watchdog", "fake:"+wdFile, "--watchdog-timeout", "2s")
	if st != 137 || !strings.Contains(errOut, "RESET PENDING") || !strings.Contains(errOut, "FAKE WATCHDOG FIRED") {
		t.Fatalf("exit %d after %v, want 137 and the reset logged:\n%s%s", st, time.Since(start), out, errOut)
	}
	if b, _ := os.ReadFile(wdFile); !strings.Contains(string(b), "fire") {
		t.Errorf("watchdog file has no fire:\n%s", b)
	}
}
