package callback

import (
	"bufio"
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
)

// SendRequest is a message to send.
type SendRequest struct {
	// Lockspace is the lockspace name.
	Lockspace string
	// Targets are the host ids to send to (one message to all of them).
	Targets []uint64
	// Generation names the target's incarnation (0 = any); one target only.
	Generation uint64
	// Code is the event code bitfield (see leader.ParseCodes).
	Code uint64
	// Seq is the caller's seq (0 = the daemon generates one); it must be
	// greater than every seq sent before in this lockspace membership.
	Seq uint64
	// Data is carried in the event data field; nil carries the seq.
	Data *uint64
	// Wait makes Send return only once every target acked, died,
	// restarted or the send timed out, with the per-target result.
	Wait bool
	// Timeout bounds the send in the daemon (0 = the lockspace's host_dead
	// plus a renewal interval).
	Timeout time.Duration
	// OnAccept, with Wait, is called as soon as the daemon has the message
	// durably (its ID), before the result.
	OnAccept func(SendReply)
}

// Send sends a message. Without Wait it returns as soon as the daemon
// accepted it (SendReply.ID; with a state directory, once it is durable
// there); with Wait, once the send finished, with the outcome for each
// target in SendReply.Targets (SendReply.OK is true when every target got
// it). If the daemon goes away while Send waits, the error says the
// message's ID and that it is durable: ask Result for its fate later.
// Sending reset or reboot codes needs root.
func (c *Client) Send(ctx context.Context, s SendRequest) (*SendReply, error) {
	if s.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout", ErrInvalid)
	}
	req := Request{Op: OpSend, Name: s.Lockspace, Targets: s.Targets, Generation: s.Generation,
		Code: s.Code, Seq: s.Seq, Data: s.Data, Wait: s.Wait, ReportAccept: s.Wait, TimeoutMs: s.Timeout.Milliseconds()}
	var accepted *SendReply
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.do(ctx, req, func(r *Response) bool {
		if r.OK && r.Send != nil && r.Send.Accepted {
			accepted = r.Send
			if s.OnAccept != nil {
				s.OnAccept(*r.Send)
			}
			return true
		}
		return false
	})
	if err != nil {
		if accepted != nil && errors.Is(err, errDaemonClosed) {
			return nil, fmt.Errorf("%w before message %s finished; it was accepted durably and the daemon sends it again once it rejoins lockspace %s: ask for its fate with `sanlock-msg result -s %s %s` (Client.Result)",
				err, accepted.ID, s.Lockspace, s.Lockspace, accepted.ID)
		}
		return nil, err
	}
	if resp.Send == nil {
		return nil, fmt.Errorf("callback: send: empty reply")
	}
	return resp.Send, nil
}

// Result returns what became of message id (HOST:ORIGIN:SEQ) this daemon
// accepted in lockspace (empty: look in every lockspace): State "done"
// with the outcome per target, or "pending" with the outcomes so far. An
// unknown id fails with ErrNotFound.
func (c *Client) Result(ctx context.Context, lockspace, id string) (*SendReply, error) {
	resp, err := c.Do(ctx, Request{Op: OpResult, Name: lockspace, MsgID: id})
	if err != nil {
		return nil, err
	}
	if resp.Send == nil {
		return nil, fmt.Errorf("callback: result: empty reply")
	}
	return resp.Send, nil
}

// Registration is a stream of Records for one lockspace, on its own
// connection to the daemon. Poll Fd for readability, or call Next. Use it
// from one goroutine at a time.
//
// A Next whose ctx ends is harmless: a record half read is kept for the
// next call. Any other failure (an I/O error, a record that cannot be
// decoded, the daemon closing the connection) ends the registration:
// the connection is closed and every later Next returns the same error.
type Registration struct {
	Lockspace string
	nc        *net.UnixConn
	r         *bufio.Reader
	partial   []byte     // a record line read in part when a ctx ended
	err       error      // why the registration ended; nil while it runs
	wmu       sync.Mutex // serialises Ack lines
}

// RegisterOptions are a registration's settings.
type RegisterOptions struct {
	// ManualAck: records with AckNeeded are acked to their sender only
	// once Ack is called with their ID; records this client has not acked
	// when it goes away are delivered again (flagged Redelivered) to the
	// next listener. Ack each record once it is handled (written, stored).
	ManualAck bool
}

// Register opens a connection to the daemon of runDir and registers for
// lockspace's messages (the lockspace may still be joining). Messages that
// arrive while no client is registered are acked "no-listener" to their
// sender and not kept, except within a grace after the join.
func Register(ctx context.Context, runDir, lockspace string) (*Registration, error) {
	return RegisterWith(ctx, runDir, lockspace, RegisterOptions{})
}

// RegisterWith is Register with options.
func RegisterWith(ctx context.Context, runDir, lockspace string, opt RegisterOptions) (*Registration, error) {
	c, err := Dial(ctx, runDir)
	if err != nil {
		return nil, err
	}
	if _, err := c.Do(ctx, Request{Op: OpRegister, Name: lockspace, ManualAck: opt.ManualAck}); err != nil {
		c.Close()
		return nil, err
	}
	return &Registration{Lockspace: lockspace, nc: c.nc, r: c.r}, nil
}

// Next returns the next record, waiting until one arrives or ctx ends.
// After an "end" record it returns an error wrapping io.EOF.
func (g *Registration) Next(ctx context.Context) (Record, error) {
	if g.err != nil {
		return Record{}, g.err
	}
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		g.nc.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
			g.nc.SetReadDeadline(time.Time{})
		}
	}()
	line, err := g.r.ReadBytes('\n')
	if len(g.partial) > 0 {
		line = append(g.partial, line...)
		g.partial = nil
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			g.partial = line // keep what was read for the next call
			return Record{}, ctx.Err()
		}
		if errors.Is(err, net.ErrClosed) {
			return Record{}, g.end(fmt.Errorf("callback: registration for %s: %w", g.Lockspace, ErrClosed))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return Record{}, g.end(fmt.Errorf("callback: registration for %s: the daemon closed the connection: %w", g.Lockspace, io.EOF))
		}
		return Record{}, g.end(fmt.Errorf("callback: registration for %s: %w", g.Lockspace, err))
	}
	var rec Record
	if err := json.Unmarshal(line, &rec); err != nil {
		return Record{}, g.end(fmt.Errorf("callback: registration for %s: bad record: %w", g.Lockspace, err))
	}
	return rec, nil
}

// end closes the connection; err is returned by this and every later
// Next.
func (g *Registration) end(err error) error {
	g.nc.Close()
	g.err = err
	return err
}

// Buffered reports whether a record is already buffered, so Next returns
// without reading the connection. Pollers must check it before poll(2)
// on Fd.
func (g *Registration) Buffered() bool { return g.err == nil && g.r.Buffered() > 0 }

// Fd returns the connection's file descriptor for poll(2)/epoll: it is
// readable when a record arrives. Read records with Next only.
func (g *Registration) Fd() (uintptr, error) {
	rc, err := g.nc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd uintptr
	err = rc.Control(func(f uintptr) { fd = f })
	return fd, err
}

// Ack acks record id of a manual-ack registration: the daemon then acks
// the message "delivered" to its sender.
func (g *Registration) Ack(id string) error {
	b, err := json.Marshal(AckLine{Op: "ack", ID: id})
	if err != nil {
		return err
	}
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	defer g.nc.SetWriteDeadline(time.Time{})
	if _, err := g.nc.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("callback: registration for %s: ack %s: %w", g.Lockspace, id, err)
	}
	return nil
}

// Close ends the registration; it may be called while Next waits. Later
// calls to Next return an error wrapping ErrClosed.
func (g *Registration) Close() error { return g.nc.Close() }
