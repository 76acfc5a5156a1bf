package callback_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// fakeDaemon listens on a run directory's socket and serves each
// connection with serve, so that tests can script what a daemon answers.
type fakeDaemon struct {
	dir string
}

// startFake serves every connection to a new run directory with serve.
func startFake(t *testing.T, serve func(t *testing.T, c *fakeConn)) *fakeDaemon {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("unix", callback.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c := &fakeConn{nc: nc, r: bufio.NewReader(nc)}
			go func() {
				defer nc.Close()
				serve(t, c)
			}()
		}
	}()
	return &fakeDaemon{dir: dir}
}

// fakeConn is one connection to a fakeDaemon.
type fakeConn struct {
	nc net.Conn
	r  *bufio.Reader
}

// read returns the next request, or false when the client is gone.
func (c *fakeConn) read() (callback.Request, bool) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return callback.Request{}, false
	}
	var req callback.Request
	if err := json.Unmarshal(line, &req); err != nil {
		return callback.Request{}, false
	}
	return req, true
}

// write writes v as one line.
func (c *fakeConn) write(v any) {
	b, _ := json.Marshal(v)
	c.nc.Write(append(b, '\n'))
}

// okStatus answers a status request.
func okStatus(req callback.Request, pid int) callback.Response {
	return callback.Response{V: 1, ID: req.ID, OK: true, Status: &callback.DaemonStatus{PID: pid}}
}

func dialFake(t *testing.T, d *fakeDaemon) *callback.Client {
	t.Helper()
	c, err := callback.Dial(context.Background(), d.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClient_timeoutClosesConnection: a call whose context ends before
// the reply closes the connection; the late reply is never returned to
// the next call (the bug: the next call got the previous call's reply),
// which fails with ErrClosed at once.
func TestClient_timeoutClosesConnection(t *testing.T) {
	requests := make(chan callback.Request, 4)
	d := startFake(t, func(t *testing.T, c *fakeConn) {
		for n := 1; ; n++ {
			req, ok := c.read()
			if !ok {
				return
			}
			requests <- req
			if n == 1 {
				time.Sleep(200 * time.Millisecond) // the first reply is late
			}
			c.write(okStatus(req, n))
		}
	})
	c := dialFake(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Status(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, callback.ErrClosed) {
		t.Fatalf("first call: %v, want DeadlineExceeded and ErrClosed", err)
	}
	time.Sleep(300 * time.Millisecond) // the late reply is on its way
	st, err := c.Status(context.Background())
	if !errors.Is(err, callback.ErrClosed) || st != nil {
		t.Fatalf("second call: %+v, %v; want ErrClosed and no status", st, err)
	}
	if !strings.Contains(err.Error(), "dial again") {
		t.Errorf("error %q does not say what to do", err)
	}
	if req := <-requests; req.ID != 1 || req.Op != callback.OpStatus || req.V != callback.ProtocolVersion {
		t.Errorf("first request %+v, want id 1, op status, v 1", req)
	}
	select {
	case req := <-requests:
		t.Errorf("the closed client sent %+v", req)
	default:
	}
}

// TestClient_expiredContext: a context that ended before the call sends
// nothing and leaves the connection usable.
func TestClient_expiredContext(t *testing.T) {
	d := startFake(t, func(t *testing.T, c *fakeConn) {
		for {
			req, ok := c.read()
			if !ok {
				return
			}
			c.write(okStatus(req, 7))
		}
	})
	c := dialFake(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Status(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, callback.ErrClosed) {
		t.Fatalf("got %v, want Canceled without closing", err)
	}
	if st, err := c.Status(context.Background()); err != nil || st.PID != 7 {
		t.Fatalf("after a cancelled call: %+v, %v", st, err)
	}
}

// TestClient_badReplies: a reply that cannot be decoded or that answers
// another request closes the connection; a refusal does not.
func TestClient_badReplies(t *testing.T) {
	tests := []struct {
		name      string
		reply     func(req callback.Request) string
		want      error
		wantOpen  bool
		wantField string
	}{
		{"garbage", func(callback.Request) string { return "garbage" }, callback.ErrClosed, false, ""},
		{"not an object", func(callback.Request) string { return "[1]" }, callback.ErrClosed, false, ""},
		{"another request's reply", func(req callback.Request) string {
			return fmt.Sprintf(`{"v":1,"id":%d,"ok":true,"status":{"pid":1}}`, req.ID+1)
		}, callback.ErrClosed, false, ""},
		{"no id on success", func(callback.Request) string { return `{"v":1,"ok":true,"status":{"pid":1}}` }, callback.ErrClosed, false, ""},
		{"connection refused by the daemon", func(callback.Request) string {
			return `{"v":1,"ok":false,"code":"limit","error":"daemon: too many"}`
		}, callback.ErrLimit, false, ""},
		{"refusal", func(req callback.Request) string {
			return fmt.Sprintf(`{"v":1,"id":%d,"ok":false,"code":"invalid","field":"spec","error":"bad spec"}`, req.ID)
		}, callback.ErrInvalid, true, "spec"},
		{"unknown op", func(req callback.Request) string {
			return fmt.Sprintf(`{"v":1,"id":%d,"ok":false,"code":"unsupported","error":"unknown op"}`, req.ID)
		}, callback.ErrUnsupported, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startFake(t, func(t *testing.T, c *fakeConn) {
				for n := 1; ; n++ {
					req, ok := c.read()
					if !ok {
						return
					}
					if n == 1 {
						c.nc.Write([]byte(tt.reply(req) + "\n"))
					} else {
						c.write(okStatus(req, 2))
					}
				}
			})
			c := dialFake(t, d)
			_, err := c.Status(context.Background())
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var e *callback.Error
			if tt.wantField != "" && (!errors.As(err, &e) || e.Field != tt.wantField) {
				t.Errorf("error %#v, want Field %q", err, tt.wantField)
			}
			st, err := c.Status(context.Background())
			if tt.wantOpen {
				if err != nil || st.PID != 2 {
					t.Fatalf("next call: %+v, %v; want the connection usable", st, err)
				}
			} else if !errors.Is(err, callback.ErrClosed) {
				t.Fatalf("next call: %v, want ErrClosed", err)
			}
		})
	}
}

// TestClient_notice: an error line the daemon wrote on its own (closing an
// idle connection) is reported by the next call, which sends nothing.
func TestClient_notice(t *testing.T) {
	got := make(chan bool, 1)
	d := startFake(t, func(t *testing.T, c *fakeConn) {
		req, _ := c.read()
		c.write(okStatus(req, 1))
		c.write(callback.Response{V: 1, Code: callback.CodeLimit, Error: "daemon: no request for 5m0s; closing the idle connection"})
		c.nc.(*net.UnixConn).CloseWrite()
		_, ok := c.read()
		got <- ok
	})
	c := dialFake(t, d)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err := c.Status(context.Background())
	if !errors.Is(err, callback.ErrLimit) || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("got %v, want ErrLimit saying the connection was idle", err)
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, callback.ErrClosed) {
		t.Fatalf("after the notice: %v, want ErrClosed", err)
	}
	c.Close()
	if <-got {
		t.Error("the client sent a request after the daemon's notice")
	}
}

// TestClient_closedByDaemon: the daemon closing the connection is
// reported, and later calls fail with ErrClosed.
func TestClient_closedByDaemon(t *testing.T) {
	d := startFake(t, func(t *testing.T, c *fakeConn) { c.read() })
	c := dialFake(t, d)
	_, err := c.Status(context.Background())
	if !errors.Is(err, callback.ErrClosed) || !strings.Contains(err.Error(), "closed the connection") {
		t.Fatalf("got %v, want the daemon closed the connection", err)
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, callback.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

// TestRegistration_partialRecord: a Next whose context ends in the middle
// of a record loses nothing: the next call returns the whole record. A
// record that cannot be decoded ends the registration.
func TestRegistration_partialRecord(t *testing.T) {
	step := make(chan struct{})
	d := startFake(t, func(t *testing.T, c *fakeConn) {
		req, _ := c.read()
		c.write(callback.Response{V: 1, ID: req.ID, OK: true})
		rec, _ := json.Marshal(callback.Record{Type: callback.RecordMessage, Lockspace: "LS", FromHostID: 1, Seq: 7, Codes: []string{}})
		c.nc.Write(rec[:10])
		<-step
		c.nc.Write(append(rec[10:], '\n'))
		<-step
		c.nc.Write([]byte("not json\n"))
		<-step
	})
	reg, err := callback.Register(context.Background(), d.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := reg.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	step <- struct{}{}
	rec, err := reg.Next(context.Background())
	if err != nil || rec.Seq != 7 || rec.FromHostID != 1 {
		t.Fatalf("got %+v, %v; want the record with seq 7", rec, err)
	}
	step <- struct{}{}
	_, err = reg.Next(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bad record") {
		t.Fatalf("got %v, want a bad record error", err)
	}
	if _, err2 := reg.Next(context.Background()); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("after a bad record: %v, want the same error again", err2)
	}
	close(step)
}

// TestRegistration_close: Close ends a Next that waits, with ErrClosed.
func TestRegistration_close(t *testing.T) {
	d := startFake(t, func(t *testing.T, c *fakeConn) {
		req, _ := c.read()
		c.write(callback.Response{V: 1, ID: req.ID, OK: true})
		c.read() // until the client closes
	})
	reg, err := callback.Register(context.Background(), d.dir, "LS")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := reg.Next(context.Background())
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	reg.Close()
	if err := <-errc; !errors.Is(err, callback.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

// TestDial_permission: a socket this user may not open is reported as
// that, with the socket's owner, group and mode, not as "no daemon".
func TestDial_permission(t *testing.T) {
	dir := t.TempDir()
	path := callback.SocketPath(dir)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	err = callback.DialErrorForTest(path, &net.OpError{Op: "dial", Net: "unix", Err: syscall.EACCES})
	if !errors.Is(err, callback.ErrPermission) || errors.Is(err, callback.ErrNoDaemon) {
		t.Fatalf("got %v, want ErrPermission and not ErrNoDaemon", err)
	}
	for _, want := range []string{path, "permission denied", "mode 0640", "group ", "--group"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
