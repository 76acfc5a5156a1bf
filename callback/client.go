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
type Client struct {
	path string
	nc   net.Conn
	r    *bufio.Reader

	mu sync.Mutex
}

// Dial connects to the daemon of runDir (see ResolveRunDir). If no daemon
// answers, the error wraps ErrNoDaemon and names the socket.
func Dial(ctx context.Context, runDir string) (*Client, error) {
	path := SocketPath(runDir)
	var dl net.Dialer
	nc, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err
		}
		return nil, fmt.Errorf("%w at %s: %v (is `sanlock-msg daemon` running with this run dir?)", ErrNoDaemon, path, err)
	}
	return &Client{path: path, nc: nc, r: bufio.NewReader(nc)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.nc.Close() }

// Do sends req (with V set to ProtocolVersion if zero) and returns the
// daemon's response. A response with OK false
// is returned as an *Error (test it with errors.Is against the sentinels).
// ctx bounds the whole exchange.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	return c.do(ctx, req, nil)
}

// do is Do; interim, if set, is shown every response line first and
// returns true for one that is not the final answer (send's Accepted line).
func (c *Client) do(ctx context.Context, req Request, interim func(*Response) bool) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.V == 0 {
		req.V = ProtocolVersion
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("callback: encode %s: %w", req.Op, err)
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
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
			return nil, fmt.Errorf("callback: %s: bad response from %s: %w", req.Op, c.path, err)
		}
		if interim == nil || !interim(&resp) {
			break
		}
	}
	if !resp.OK {
		return &resp, &Error{Op: req.Op, Code: resp.Code, Msg: resp.Error}
	}
	return &resp, nil
}

func (c *Client) ioErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("callback: %s: %w", op, ctx.Err())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("callback: %s: %w", op, errClosed)
	}
	return fmt.Errorf("callback: %s: %w", op, err)
}

// errClosed: the daemon closed the connection before answering.
var errClosed = errors.New("the daemon closed the connection")

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
	resp, err := c.Do(ctx, Request{Op: OpShutdown, Force: force, Wait: wait})
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
