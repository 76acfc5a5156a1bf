package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
)

// rawConn is a connection to a daemon's socket that writes and reads
// lines by hand.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, dir string) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", callback.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// send writes s as it is (add the newline yourself).
func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// response reads one response line.
func (c *rawConn) response() callback.Response {
	c.t.Helper()
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		c.t.Fatalf("no response line: %v", err)
	}
	var resp callback.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		c.t.Fatalf("response %q: %v", line, err)
	}
	return resp
}

// closed reports whether the daemon closed the connection (a reset when
// it closed with our request unread).
func (c *rawConn) closed() bool {
	_, err := c.r.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// TestServer_lines: every request line gets exactly one response line
// the client can read. Lines that are whole but wrong (empty, not an
// object, a field of the wrong type, a key twice, an unknown op or
// version) leave the connection usable; lines that are not JSON or too
// long close it. Unknown fields are ignored.
func TestServer_lines(t *testing.T) {
	t.Parallel()
	td := startDaemon(t, newDevices(), nil)
	tests := []struct {
		name      string
		send      string
		wantOK    bool
		wantCode  string
		wantField string
		wantID    uint64
		wantClose bool
	}{
		{name: "empty line", send: "\n", wantCode: callback.CodeInvalid},
		{name: "blanks", send: " \t\r\n", wantCode: callback.CodeInvalid},
		{name: "null", send: "null\n", wantCode: callback.CodeInvalid},
		{name: "array", send: "[1,2]\n", wantCode: callback.CodeInvalid},
		{name: "string", send: `"status"` + "\n", wantCode: callback.CodeInvalid},
		{name: "number", send: "42\n", wantCode: callback.CodeInvalid},
		{name: "not UTF-8", send: "{\"op\":\"st\xffatus\"}\n", wantCode: callback.CodeInvalid},
		{name: "no op", send: `{"v":1,"id":3}` + "\n", wantCode: callback.CodeInvalid, wantField: "op", wantID: 3},
		{name: "op in capitals is not op", send: `{"OP":"shutdown"}` + "\n", wantCode: callback.CodeInvalid, wantField: "op"},
		{name: "wrong type", send: `{"op":"status","v":"1"}` + "\n", wantCode: callback.CodeInvalid, wantField: "v"},
		{name: "wrong type nested", send: `{"op":"send","targets":[2,"x"]}` + "\n", wantCode: callback.CodeInvalid, wantField: "targets"},
		{name: "key twice", send: `{"op":"status","op":"shutdown"}` + "\n", wantCode: callback.CodeInvalid},
		{name: "unknown op", send: `{"v":1,"op":"frobnicate","id":4}` + "\n", wantCode: callback.CodeUnsupported, wantID: 4},
		{name: "newer version", send: `{"v":2,"op":"status","id":5}` + "\n", wantCode: callback.CodeUnsupported, wantID: 5},
		{name: "unknown fields", send: `{"v":1,"op":"status","id":6,"bogus":1,"later":{"x":[1,{}]}}` + "\n", wantOK: true, wantID: 6},
		{name: "no version", send: `{"op":"status","id":7}` + "\n", wantOK: true, wantID: 7},
		{name: "not JSON", send: "hello\n", wantCode: callback.CodeInvalid, wantClose: true},
		{name: "cut short", send: `{"op":"status"` + "\n", wantCode: callback.CodeInvalid, wantClose: true},
		{name: "two objects", send: `{"op":"status"} {"op":"status"}` + "\n", wantCode: callback.CodeInvalid, wantClose: true},
		{name: "pretty-printed", send: "{\n\"op\": \"status\"\n}\n", wantCode: callback.CodeInvalid, wantClose: true},
		{name: "oversized", send: `{"op":"status","x":"` + strings.Repeat("x", callback.MaxLine) + `"}` + "\n",
			wantCode: callback.CodeInvalid, wantClose: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, td.dir)
			go c.nc.Write([]byte(tt.send)) // may fail once the daemon closes
			resp := c.response()
			if resp.OK != tt.wantOK || resp.Code != tt.wantCode || resp.Field != tt.wantField || resp.ID != tt.wantID ||
				resp.V != callback.ProtocolVersion {
				t.Fatalf("got %+v, want ok %v code %q field %q id %d", resp, tt.wantOK, tt.wantCode, tt.wantField, tt.wantID)
			}
			if !resp.OK && resp.Error == "" {
				t.Error("a refusal without an error message")
			}
			t.Logf("%s", resp.Error)
			if tt.wantClose {
				if !strings.Contains(resp.Error, "closing the connection") {
					t.Errorf("error %q does not say the connection closes", resp.Error)
				}
				if !c.closed() {
					t.Fatal("connection still open")
				}
				return
			}
			c.send(`{"op":"status","id":99}` + "\n")
			if resp := c.response(); !resp.OK || resp.ID != 99 {
				t.Fatalf("next request on the connection: %+v", resp)
			}
		})
	}
	// Requests written in one go are answered in order.
	c := dialRaw(t, td.dir)
	c.send(`{"op":"status","id":1}` + "\n\n" + `{"op":"nope","id":2}` + "\n" + `{"op":"status","id":3}` + "\n")
	for _, want := range []struct {
		id uint64
		ok bool
	}{{1, true}, {0, false}, {2, false}, {3, true}} {
		if resp := c.response(); resp.ID != want.id || resp.OK != want.ok {
			t.Errorf("pipelined: got %+v, want id %d ok %v", resp, want.id, want.ok)
		}
	}
	if _, err := td.dial(t).Status(context.Background()); err != nil {
		t.Fatalf("daemon not answering after bad requests: %v", err)
	}
}

// TestServer_idle: a connection that sends nothing is closed after the
// idle timeout with an error line; a client sees ErrLimit, then
// ErrClosed. A registration is never idle.
func TestServer_idle(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	const idle = 300 * time.Millisecond
	td := startDaemon(t, ds, func(c *daemon.Config) { c.IdleTimeout = idle })
	ctx := ctxT(t, time.Minute)

	raw := dialRaw(t, td.dir)
	start := time.Now()
	resp := raw.response()
	if resp.OK || resp.Code != callback.CodeLimit || resp.ID != 0 || !strings.Contains(resp.Error, "idle") {
		t.Fatalf("got %+v, want an idle limit line", resp)
	}
	if took := time.Since(start); took < idle {
		t.Errorf("closed after %v, before the idle timeout %v", took, idle)
	}
	if !raw.closed() {
		t.Fatal("idle connection still open")
	}

	// A partial line does not keep a connection alive.
	raw = dialRaw(t, td.dir)
	raw.send(`{"op":`)
	if resp := raw.response(); resp.Code != callback.CodeLimit || !raw.closed() {
		t.Fatalf("partial line: got %+v, want an idle limit line and the end", resp)
	}

	c := td.dial(t)
	if _, err := c.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err) // a request longer than the idle timeout is fine
	}
	reg, err := callback.Register(ctx, td.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	time.Sleep(3 * idle)
	if _, err := c.Status(ctx); !errors.Is(err, callback.ErrLimit) {
		t.Fatalf("idle client: %v, want ErrLimit", err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, callback.ErrClosed) {
		t.Fatalf("idle client, again: %v, want ErrClosed", err)
	}
	if m := messages(t, td.dial(t)); m.Listeners != 1 {
		t.Errorf("%d listeners after the idle timeout, want the registration kept", m.Listeners)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := reg.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("registration: %v, want it open and quiet", err)
	}
}

// TestServer_uidCap: past its cap a uid's connection gets an error line
// and is closed; closing one makes room. (The total cap, and a non-root
// user at its cap while root still gets in, are in TestHostile.)
func TestServer_uidCap(t *testing.T) {
	t.Parallel()
	td := startDaemon(t, newDevices(), func(c *daemon.Config) { c.MaxConnsPerUID = 5 })
	ctx := ctxT(t, time.Minute)
	var cs []*callback.Client
	for range 5 {
		c := td.dial(t)
		if _, err := c.Status(ctx); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	over := td.dial(t)
	_, err := over.Status(ctx)
	if !errors.Is(err, callback.ErrLimit) || !strings.Contains(err.Error(), "uid 0 has 5 connections") {
		t.Fatalf("6th connection: %v, want ErrLimit naming the uid and the count", err)
	}
	cs[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := td.dial(t).Status(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after closing a connection: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClient_timeoutDaemon: a call whose context ends while the daemon
// works (a join) closes the client's connection; the next call gets
// ErrClosed, not the join's late reply.
func TestClient_timeoutDaemon(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	td := startDaemon(t, ds, nil)
	c := td.dial(t)
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.AddLockspace(short, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, callback.ErrClosed) {
		t.Fatalf("add: %v, want DeadlineExceeded and ErrClosed", err)
	}
	time.Sleep(3 * time.Second) // the join ends meanwhile
	st, err := c.Status(context.Background())
	if !errors.Is(err, callback.ErrClosed) || st != nil {
		t.Fatalf("status after the timeout: %+v, %v; want ErrClosed", st, err)
	}
}
