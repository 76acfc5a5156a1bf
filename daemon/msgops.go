package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// registerMessageOps adds the message ops to s.
func (d *Daemon) registerMessageOps(s *Server) {
	s.Handle(callback.OpSend, Op{Handler: d.opSend, Mutating: true})
	s.Handle(callback.OpRegister, Op{Handler: d.opRegister})
}

// messengerOf returns lockspace name's messenger and its max_hosts.
func (d *Daemon) messengerOf(op, name string) (*messenger, int, *callback.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.members[name]
	if m == nil || m.msg == nil {
		return nil, 0, Fail(callback.CodeNotJoined, fmt.Errorf("daemon: %s: lockspace %q is not joined", op, name))
	}
	if m.state != callback.StateJoined {
		return nil, 0, Fail(callback.CodeNotJoined, fmt.Errorf("daemon: %s: lockspace %s is %s", op, name, m.state))
	}
	return m.msg, m.ls.Area().Geo.MaxHosts, nil
}

// resetCodes may only be sent by root: they reset the target machine.
const resetCodes = leader.EventReset | leader.EventReboot

func (d *Daemon) opSend(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	if req.Code == 0 {
		return Invalid("code", errors.New("daemon: send: code 0 is not a message"))
	}
	if req.Code&resetCodes != 0 && c.Peer().UID != 0 {
		return Fail(callback.CodePermission, fmt.Errorf("%w (EACCES): only root may send reset or reboot codes; uid %d", callback.ErrPermission, c.Peer().UID))
	}
	ms, maxHosts, resp := d.messengerOf(callback.OpSend, req.Name)
	if resp != nil {
		return resp
	}
	if len(req.Targets) == 0 {
		return Invalid("targets", errors.New("daemon: send: no target host id"))
	}
	for _, t := range req.Targets {
		if t < 1 || t > uint64(maxHosts) {
			return Invalid("targets", fmt.Errorf("daemon: send: host id %d out of range 1..%d (max_hosts of lockspace %s)", t, maxHosts, req.Name))
		}
	}
	if req.TimeoutMs < 0 {
		return Invalid("timeout_ms", errors.New("daemon: send: negative timeout"))
	}
	msg := hostmsg.Message{Targets: req.Targets, TargetGeneration: req.Generation, Code: req.Code, Seq: req.Seq,
		Timeout: time.Duration(req.TimeoutMs) * time.Millisecond,
		// A reset names the incarnation it was meant for, so that a target
		// that restarted meanwhile is not reset again.
		CurrentGeneration: req.Code&resetCodes != 0}
	if req.Data != nil {
		msg.Data, msg.HasData = *req.Data, true
	}
	seq, ch, err := ms.send(d.clk.Now(), msg, req.Wait)
	if err != nil {
		return Fail(sendCode(err), fmt.Errorf("daemon: send: %w", err))
	}
	d.log.Info("send", "lockspace", req.Name, "seq", seq, "targets", req.Targets, "code", fmt.Sprintf("%#x", req.Code),
		"wait", req.Wait, "by", c.Peer().String())
	reply := &callback.SendReply{Seq: seq}
	if !req.Wait {
		return &callback.Response{OK: true, Send: reply}
	}
	select {
	case res := <-ch:
		fillReply(reply, res)
	case <-ctx.Done():
		return Fail(callback.CodeCancelled, fmt.Errorf("daemon: send: seq %d: daemon stopping", seq))
	}
	return &callback.Response{OK: true, Send: reply}
}

// sendCode classifies hostmsg's send errors.
func sendCode(err error) string {
	switch {
	case errors.Is(err, callback.ErrNotJoined):
		return callback.CodeNotJoined
	case errors.Is(err, hostmsg.ErrResetting):
		return callback.CodeRefused
	case errors.Is(err, hostmsg.ErrOutboxFull):
		return callback.CodeBusy
	}
	return callback.CodeInvalid
}

func (d *Daemon) opRegister(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	ms, _, resp := d.messengerOf(callback.OpRegister, req.Name)
	if resp != nil {
		return resp
	}
	nc, br := c.Hijack()
	r := newRegistration(req.Name, nc, DefaultQueue)
	// Listen before answering: a message that arrives once the client has
	// its OK must find a listener (else it is acked "no-listener"). Records
	// that arrive meanwhile wait in the queue and follow the OK line.
	if err := ms.addReg(r); err != nil {
		resp := Fail(callback.CodeNotJoined, fmt.Errorf("daemon: register: %w", err))
		resp.V = callback.ProtocolVersion
		c.WriteJSON(resp)
		return nil
	}
	if err := c.WriteJSON(&callback.Response{V: callback.ProtocolVersion, OK: true}); err != nil {
		ms.removeReg(r)
		return nil
	}
	r.clearDeadline()
	d.log.Info("listener registered", "lockspace", req.Name, "by", c.Peer().String())
	r.serve(br)
	ms.removeReg(r)
	d.log.Info("listener gone", "lockspace", req.Name, "by", c.Peer().String())
	return nil
}

// fillReply puts a finished send's result into r.
func fillReply(r *callback.SendReply, res hostmsg.Result) {
	r.Done, r.OK = true, res.Err() == nil
	if err := res.Err(); err != nil {
		r.Error = err.Error()
	}
	r.QueuedAt, r.SentAt, r.DoneAt = res.QueuedAt, res.SentAt, res.DoneAt
	for _, t := range res.Targets {
		ts := callback.TargetStatus{HostID: t.HostID, Generation: t.Generation, Outcome: t.Outcome.String(), OK: t.OK(), At: t.At}
		if t.Outcome == hostmsg.OutcomeAcked {
			ts.Status = t.Status.String()
		}
		r.Targets = append(r.Targets, ts)
	}
}
