package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// helperEnv makes the test binary act as a client: TestMain runs
// peerHelper instead of the tests.
const helperEnv = "CALLBACK_TEST_PEER_RUN_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(peerHelper(dir))
	}
	if dir := os.Getenv(sendEnv); dir != "" {
		os.Exit(sendHelper(dir))
	}
	if spec := os.Getenv(floodEnv); spec != "" {
		os.Exit(floodHelper(spec))
	}
	os.Exit(m.Run())
}

// helperResult is what peerHelper prints.
type helperResult struct {
	DialErr   string `json:"dial_err,omitempty"`
	DialPerm  bool   `json:"dial_perm,omitempty"` // DialErr wraps ErrPermission
	DialNone  bool   `json:"dial_none,omitempty"` // DialErr wraps ErrNoDaemon
	StatusErr string `json:"status_err,omitempty"`
	AddCode   string `json:"add_code"`
	AddErr    string `json:"add_err"`
	SendCode  string `json:"send_code"`  // a user code
	ResetCode string `json:"reset_code"` // WD_RESET: root only
	ResetErr  string `json:"reset_err"`
}

// peerHelper connects to the daemon of dir, asks for its status and tries
// a state-changing op (an add with host_id 0: a permitted peer gets
// "invalid", others "permission").
func peerHelper(dir string) int {
	var r helperResult
	defer func() { json.NewEncoder(os.Stdout).Encode(r) }()
	ctx := context.Background()
	c := helperDial(dir, &r)
	if c == nil {
		return 0
	}
	defer c.Close()
	if _, err := c.Status(ctx); err != nil {
		r.StatusErr = err.Error()
	}
	_, err := c.AddLockspace(ctx, "LS:0:img:0", callback.AddOptions{})
	var e *callback.Error
	if errors.As(err, &e) {
		r.AddCode, r.AddErr = e.Code, e.Error()
	} else if err != nil {
		r.AddErr = err.Error()
	}
	// Both sends name a lockspace that is not joined: a permitted peer
	// gets "not_joined".
	if _, err := c.Send(ctx, callback.SendRequest{Lockspace: "NOPE", Targets: []uint64{2}, Code: 1 << 16}); errors.As(err, &e) {
		r.SendCode = e.Code
	}
	if _, err := c.Send(ctx, callback.SendRequest{Lockspace: "NOPE", Targets: []uint64{2}, Code: 1}); errors.As(err, &e) {
		r.ResetCode, r.ResetErr = e.Code, e.Error()
	}
	return 0
}

// helperDial connects to the daemon of dir, or notes in r why it could
// not and returns nil.
func helperDial(dir string, r *helperResult) *callback.Client {
	c, err := callback.Dial(context.Background(), dir)
	if err != nil {
		r.DialErr = err.Error()
		r.DialPerm, r.DialNone = errors.Is(err, callback.ErrPermission), errors.Is(err, callback.ErrNoDaemon)
		return nil
	}
	return c
}

// sendEnv makes the test binary a sender (sendHelper) to the daemon of
// its value.
const sendEnv = "DAEMON_TEST_SEND"

// sendHelper sends, in lockspace LS of the daemon of dir, a user code and
// then a reset to host 1, and prints the codes of the refusals.
func sendHelper(dir string) int {
	var r helperResult
	defer func() { json.NewEncoder(os.Stdout).Encode(r) }()
	ctx := context.Background()
	c := helperDial(dir, &r)
	if c == nil {
		return 0
	}
	defer c.Close()
	if _, err := c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{1}, Code: 1 << 16, Wait: true}); err != nil {
		r.SendCode = callback.CodeOf(err)
	}
	if _, err := c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{1}, Code: 1, Wait: true}); err != nil {
		r.ResetCode, r.ResetErr = callback.CodeOf(err), err.Error()
	}
	return 0
}

func requireRoot(t *testing.T) {
	t.Helper()
	testimg.RequireRoot(t, "to run a client as another uid")
}

// TestDaemon_permission runs clients as uid 65534 (with and without the
// daemon's group) against a daemon whose socket is 0666, so that only the
// SO_PEERCRED check stands between them and the daemon's state.
func TestDaemon_permission(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	const group = 54321 // a group nobody has
	base, helper := helperBinary(t)
	td := startDaemon(t, newDevices(), func(c *daemon.Config) {
		c.RunDir = filepath.Join(base, "run")
		c.SocketMode = 0o666
		c.Group = fmt.Sprint(group)
	})
	st, err := os.Stat(callback.SocketPath(td.dir))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o666 || st.Sys().(*syscall.Stat_t).Gid != group {
		t.Errorf("socket mode %v gid %d, want 0666 and %d", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, group)
	}

	tests := []struct {
		name               string
		cred               *syscall.Credential
		wantCode, wantSend string
		wantReset          string
	}{
		{"root", nil, callback.CodeInvalid, callback.CodeNotJoined, callback.CodeNotJoined},
		{"nobody", &syscall.Credential{Uid: 65534, Gid: 65534}, callback.CodePermission, callback.CodePermission, callback.CodePermission},
		{"nobody in the group", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{group}}, callback.CodeInvalid,
			callback.CodeNotJoined, callback.CodePermission},
		{"nobody with the group as primary", &syscall.Credential{Uid: 65534, Gid: group}, callback.CodeInvalid,
			callback.CodeNotJoined, callback.CodePermission},
		// More groups than the first SO_PEERGROUPS buffer holds.
		{"nobody in 100 groups, the group last", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: append(manyGroups(99), group)},
			callback.CodeInvalid, callback.CodeNotJoined, callback.CodePermission},
		{"nobody in 100 other groups", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: manyGroups(100)},
			callback.CodePermission, callback.CodePermission, callback.CodePermission},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runHelper(t, helper, helperEnv, td.dir, tt.cred)
			if r.DialErr != "" || r.StatusErr != "" {
				t.Fatalf("read-only access failed: %+v", r)
			}
			if r.AddCode != tt.wantCode {
				t.Fatalf("add_lockspace: code %q (%s), want %q", r.AddCode, r.AddErr, tt.wantCode)
			}
			if r.SendCode != tt.wantSend || r.ResetCode != tt.wantReset {
				t.Fatalf("send: code %q, reset: code %q (%s); want %q and %q", r.SendCode, r.ResetCode, r.ResetErr, tt.wantSend, tt.wantReset)
			}
			t.Logf("add_lockspace: %s; reset: %s", r.AddErr, r.ResetErr)
		})
	}
}

// runHelper runs the test binary at helper with credentials cred (nil:
// ours) and the environment variable mode set to dir: peerHelper
// (helperEnv) or sendHelper (sendEnv) as a client of the daemon of dir.
// It returns what the helper found.
func runHelper(t *testing.T, helper, mode, dir string, cred *syscall.Credential) helperResult {
	t.Helper()
	cmd := exec.Command(helper)
	cmd.Env = append(os.Environ(), mode+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var r helperResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return r
}

// manyGroups returns n gids nobody else uses.
func manyGroups(n int) []uint32 {
	gs := make([]uint32, n)
	for i := range gs {
		gs[i] = 60000 + uint32(i)
	}
	return gs
}

// helperBinary copies the test binary where another uid may run it,
// under base (mode 0755).
func helperBinary(t *testing.T) (base, helper string) {
	t.Helper()
	base, err := os.MkdirTemp("", "callback-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	helper = filepath.Join(base, "helper")
	copyFile(t, os.Args[0], helper, 0o755)
	return base, helper
}

// TestDaemon_socketAccess: a user who may not open the socket is told so,
// with the socket's owner, group and mode (or the directory it cannot
// enter) and what to do; not "no daemon".
func TestDaemon_socketAccess(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	const group = 54321
	base, helper := helperBinary(t)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}

	td := startDaemon(t, newDevices(), func(c *daemon.Config) {
		c.RunDir = filepath.Join(base, "run")
		c.Group = fmt.Sprint(group)
	})
	if err := os.Chmod(td.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := runHelper(t, helper, helperEnv, td.dir, nobody)
	if !r.DialPerm || r.DialNone {
		t.Fatalf("dial as nobody: %+v, want ErrPermission and not ErrNoDaemon", r)
	}
	for _, want := range []string{"permission denied", callback.SocketPath(td.dir), "group 54321", "mode 0660", "uid 65534", "--group"} {
		if !strings.Contains(r.DialErr, want) {
			t.Errorf("dial error %q does not contain %q", r.DialErr, want)
		}
	}
	t.Logf("socket: %s", r.DialErr)

	// A run directory inside a directory nobody may enter.
	locked := filepath.Join(base, "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	td2 := startDaemon(t, newDevices(), func(c *daemon.Config) {
		c.RunDir = filepath.Join(locked, "run")
		c.SocketMode = 0o666
	})
	r = runHelper(t, helper, helperEnv, td2.dir, nobody)
	if !r.DialPerm || !strings.Contains(r.DialErr, "directory "+locked+" is owned by user root") ||
		!strings.Contains(r.DialErr, "mode 0700") {
		t.Fatalf("dial through a locked directory: %+v, want ErrPermission naming %s and its mode", r, locked)
	}
	t.Logf("directory: %s", r.DialErr)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
