package callback

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Client is a connection to a daemon. Its methods send one request each
// and wait for the answer; they are safe for concurrent use but run one at
// a time on the connection.
//
// A refusal by the daemon (a Response with OK false) is returned as an
// *Error and leaves the connection usable. Any other failure of an
// exchange (ctx ending while a request is in flight, an I/O error, a reply
// that cannot be decoded or that does not answer this request) closes the
// connection, because the stream is then in an unknown state and a reply
// read later could belong to another request. Every later call fails at
// once with an error wrapping ErrClosed: Dial again. Each request carries
// an id that the daemon echoes, as a second line of defence.
type Client struct {
	path string
	nc   *net.UnixConn
	r    *bufio.Reader

	mu     sync.Mutex
	lastID uint64
	closed error // why the connection is closed (wraps ErrClosed); nil while usable
}

// Dial connects to the daemon of runDir (see ResolveRunDir). If no daemon
// answers, the error wraps ErrNoDaemon and names the socket; if the socket
// exists but this user may not open it, the error wraps ErrPermission and
// says who may.
func Dial(ctx context.Context, runDir string) (*Client, error) {
	path := SocketPath(runDir)
	var dl net.Dialer
	nc, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, dialError(path, err)
	}
	return &Client{path: path, nc: nc.(*net.UnixConn), r: bufio.NewReader(nc)}, nil
}

// Close closes the connection. It may be called while a request is in
// flight, which then fails.
func (c *Client) Close() error {
	err := c.nc.Close()
	c.mu.Lock()
	if c.closed == nil {
		c.closed = &closedError{cause: errors.New("closed by Close")}
	}
	c.mu.Unlock()
	return err
}

// closedError is returned by calls on a closed Client.
type closedError struct{ cause error }

func (e *closedError) Error() string {
	return fmt.Sprintf("connection closed (%v); dial again", e.cause)
}

func (e *closedError) Unwrap() error { return ErrClosed }

// Do sends req (with V set to ProtocolVersion if zero, and ID set to the
// connection's next request id) and returns the daemon's response. A
// response with OK false is returned with an *Error (test it with
// errors.Is against the sentinels). ctx bounds the whole exchange; if it
// ends before the reply arrives, the connection is closed (see Client).
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.do(ctx, req, nil)
}

// do is Do with c.mu held; interim, if set, is shown every response line
// first and returns true for one that is not the final answer (send's
// Accepted line).
func (c *Client) do(ctx context.Context, req Request, interim func(*Response) bool) (*Response, error) {
	if c.closed != nil {
		return nil, fmt.Errorf("callback: %s: %w", req.Op, c.closed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("callback: %s: %w", req.Op, err) // nothing sent: still usable
	}
	if req.V == 0 {
		req.V = ProtocolVersion
	}
	c.lastID++
	req.ID = c.lastID
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("callback: encode %s: %w", req.Op, err)
	}
	if resp, err := c.notice(req.Op); err != nil {
		return resp, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.nc.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired // the deadline is set: clear it only after that
			c.nc.SetDeadline(time.Time{})
		}
	}()
	if _, err := c.nc.Write(append(b, '\n')); err != nil {
		return nil, c.ioErr(ctx, req.Op, err)
	}
	var resp Response
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			return nil, c.ioErr(ctx, req.Op, err)
		}
		resp = Response{}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, c.broken(fmt.Errorf("callback: %s: bad reply from %s: %w", req.Op, c.path, err))
		}
		switch {
		case resp.ID == req.ID:
		case resp.ID == 0 && !resp.OK:
			// The daemon refused the line or the connection without reading
			// a request (a limit, an idle timeout, a line it could not parse);
			// it closes the connection after this line.
			c.shut(errors.New(resp.Error))
			return &resp, responseError(req.Op, &resp)
		default:
			return nil, c.broken(fmt.Errorf("callback: %s: the reply answers request %d, not %d", req.Op, resp.ID, req.ID))
		}
		if interim == nil || !interim(&resp) {
			break
		}
	}
	if !resp.OK {
		return &resp, responseError(req.Op, &resp)
	}
	return &resp, nil
}

func responseError(op string, resp *Response) *Error {
	return &Error{Op: op, Code: resp.Code, Msg: resp.Error, Field: resp.Field}
}

// notice reads what the daemon wrote before this request was sent: the
// error line with which it closes an idle connection, or its end of the
// connection. It returns nil when the connection is quiet, so the request
// can go. A notice closes the Client: the request is not sent.
func (c *Client) notice(op string) (*Response, error) {
	if c.r.Buffered() == 0 && !readable(c.nc) {
		return nil, nil
	}
	c.nc.SetReadDeadline(time.Now().Add(time.Second)) // the daemon writes whole lines
	line, err := c.r.ReadBytes('\n')
	c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, c.ioErr(context.Background(), op, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil || resp.OK {
		return nil, c.broken(fmt.Errorf("callback: %s: unexpected line from %s before the request: %q", op, c.path, line))
	}
	c.shut(errors.New(resp.Error))
	return &resp, responseError(op, &resp)
}

// readable reports whether the daemon wrote something (or closed its end)
// that nobody asked for, without blocking.
func readable(nc *net.UnixConn) bool {
	rc, err := nc.SyscallConn()
	if err != nil {
		return false
	}
	var rerr error
	buf := make([]byte, 1)
	if err := rc.Read(func(fd uintptr) bool {
		_, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	// n > 0: a line is waiting; n == 0 and no error: the daemon closed.
	return rerr == nil || !errors.Is(rerr, unix.EAGAIN)
}

// ioErr closes the connection after a failed write or read and returns
// the error to report.
func (c *Client) ioErr(ctx context.Context, op string, err error) error {
	switch {
	case ctx.Err() != nil:
		return c.broken(fmt.Errorf("callback: %s: %w before the reply", op, ctx.Err()))
	case errors.Is(err, net.ErrClosed):
		return c.broken(fmt.Errorf("callback: %s: closed by Close", op))
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return c.broken(fmt.Errorf("callback: %s: %w", op, errDaemonClosed))
	}
	return c.broken(fmt.Errorf("callback: %s: %w", op, err))
}

// broken closes the connection because of err and returns err, also
// wrapping ErrClosed.
func (c *Client) broken(err error) error {
	c.shut(err)
	return fmt.Errorf("%w (%w)", err, ErrClosed)
}

// shut closes the connection; later calls fail with cause.
func (c *Client) shut(cause error) {
	c.nc.Close()
	if c.closed == nil {
		c.closed = &closedError{cause: cause}
	}
}

// errDaemonClosed: the daemon closed the connection before answering.
var errDaemonClosed = errors.New("the daemon closed the connection")

// AddOptions are add_lockspace's optional settings.
type AddOptions struct {
	// IOTimeout is the lockspace's io_timeout, whole seconds in 1..255;
	// zero means the default, 10 s, as sanlock.
	IOTimeout time.Duration
	// HostName is written into our sector; empty means the daemon's.
	HostName string
}

// AddLockspace joins the lockspace spec (NAME:HOST_ID:PATH:OFFSET) and
// returns its status once joined. Like sanlock's add_lockspace it blocks
// for the whole acquire: about 2·io_timeout on a free host id, and the
// previous owner's host_dead (8·io_timeout + 60 s) more if the host id
// was last held by another host name. A host id still renewed by another
// host fails with ErrBusy after that wait.
func (c *Client) AddLockspace(ctx context.Context, spec string, opt AddOptions) (*LockspaceStatus, error) {
	req := Request{Op: OpAddLockspace, Spec: spec, HostName: opt.HostName}
	if opt.IOTimeout != 0 {
		if opt.IOTimeout%time.Second != 0 {
			return nil, fmt.Errorf("%w: io_timeout %v is not whole seconds", ErrInvalid, opt.IOTimeout)
		}
		n := int(opt.IOTimeout / time.Second)
		req.IOTimeout = &n
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.Lockspace, nil
}

// RemLockspace leaves a lockspace, releasing its host id; spec is
// NAME:HOST_ID:PATH:OFFSET or just NAME. Removing a lockspace that is still
// joining cancels the join. The warning is non-empty when the removal
// needs attention (a failed lockspace whose watchdog expiry is kept).
func (c *Client) RemLockspace(ctx context.Context, spec string) (warning string, err error) {
	resp, err := c.Do(ctx, Request{Op: OpRemLockspace, Spec: spec})
	if err != nil {
		return "", err
	}
	return resp.Warning, nil
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*DaemonStatus, error) {
	resp, err := c.Do(ctx, Request{Op: OpStatus})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("callback: status: empty response")
	}
	return resp.Status, nil
}

// HostStatus returns every host of lockspace name as the daemon sees it.
func (c *Client) HostStatus(ctx context.Context, name string) ([]HostStatus, error) {
	resp, err := c.Do(ctx, Request{Op: OpHostStatus, Name: name})
	if err != nil {
		return nil, err
	}
	return resp.Hosts, nil
}

// Shutdown asks the daemon to exit. Without force the daemon refuses
// (ErrRefused) while lockspaces are joined; with force it releases them
// first. The daemon answers before exiting; with wait, Shutdown then waits
// until the daemon has closed the connection and its process is gone, or
// ctx ends.
func (c *Client) Shutdown(ctx context.Context, force, wait bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.do(ctx, Request{Op: OpShutdown, Force: force, Wait: wait}, nil)
	if err != nil {
		return err
	}
	if !wait {
		return nil
	}
	// The daemon closes every connection as it stops.
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	_, rerr := io.Copy(io.Discard, c.r)
	stop()
	c.shut(errors.New("the daemon shut down"))
	if ctx.Err() != nil {
		return fmt.Errorf("callback: shutdown: waiting for the daemon to exit: %w", ctx.Err())
	}
	if rerr != nil && !errors.Is(rerr, syscall.ECONNRESET) {
		return fmt.Errorf("callback: shutdown: waiting for the daemon to exit: %w", rerr)
	}
	return waitGone(ctx, resp.PID)
}

// waitGone waits until process pid no longer exists or is a zombie (an
// exited child its parent has not reaped yet). A daemon in our own process
// (tests) counts as gone once it closed the connection.
func waitGone(ctx context.Context, pid int) error {
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if gone(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("callback: shutdown: daemon pid %d still running: %w", pid, ctx.Err())
		case <-t.C:
		}
	}
}

// gone reports whether pid has exited.
func gone(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) S ...: the state follows the last ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}
