package callback

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Message ops.
const (
	// OpSend queues a message (Name, Targets, Generation, Code, Seq, Data,
	// Wait, TimeoutMs) and answers with its seq, or with its result if
	// Wait is set.
	OpSend = "send"
	// OpRegister turns the connection into a stream of Records for
	// lockspace Name: the daemon answers OK, then writes one JSON Record
	// per line until the lockspace goes away (an "end" record) or the
	// client closes the connection.
	OpRegister = "register"
)

// registerMessageOps adds the message ops to s.
func (d *Daemon) registerMessageOps(s *Server) {
	s.Handle(OpSend, Op{Handler: d.opSend, Mutating: true})
	s.Handle(OpRegister, Op{Handler: d.opRegister})
}

// messengerOf returns lockspace name's messenger and its max_hosts.
func (d *Daemon) messengerOf(op, name string) (*messenger, int, *Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.members[name]
	if m == nil || m.msg == nil {
		return nil, 0, Fail(CodeNotJoined, fmt.Errorf("callback: %s: lockspace %q is not joined", op, name))
	}
	if m.state != StateJoined {
		return nil, 0, Fail(CodeNotJoined, fmt.Errorf("callback: %s: lockspace %s is %s", op, name, m.state))
	}
	return m.msg, m.ls.Area().Geo.MaxHosts, nil
}

// resetCodes may only be sent by root: they reset the target machine.
const resetCodes = leader.EventReset | leader.EventReboot

func (d *Daemon) opSend(ctx context.Context, c *Conn, req *Request) *Response {
	if req.Code == 0 {
		return Fail(CodeInvalid, errors.New("callback: send: code 0 is not a message"))
	}
	if req.Code&resetCodes != 0 && c.Peer().UID != 0 {
		return Fail(CodePermission, fmt.Errorf("%w (EACCES): only root may send reset or reboot codes; uid %d", ErrPermission, c.Peer().UID))
	}
	ms, maxHosts, resp := d.messengerOf(OpSend, req.Name)
	if resp != nil {
		return resp
	}
	if len(req.Targets) == 0 {
		return Fail(CodeInvalid, errors.New("callback: send: no target host id"))
	}
	for _, t := range req.Targets {
		if t < 1 || t > uint64(maxHosts) {
			return Fail(CodeInvalid, fmt.Errorf("callback: send: target host_id %d out of range 1..%d", t, maxHosts))
		}
	}
	if req.TimeoutMs < 0 {
		return Fail(CodeInvalid, errors.New("callback: send: negative timeout"))
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
		return Fail(sendCode(err), fmt.Errorf("callback: send: %w", err))
	}
	d.log.Info("send", "lockspace", req.Name, "seq", seq, "targets", req.Targets, "code", fmt.Sprintf("%#x", req.Code),
		"wait", req.Wait, "by", c.Peer().String())
	reply := &SendReply{Seq: seq}
	if !req.Wait {
		return &Response{OK: true, Send: reply}
	}
	select {
	case res := <-ch:
		reply.fill(res)
	case <-ctx.Done():
		return Fail(CodeCancelled, fmt.Errorf("callback: send: seq %d: daemon stopping", seq))
	}
	return &Response{OK: true, Send: reply}
}

// sendCode classifies hostmsg's send errors.
func sendCode(err error) string {
	switch {
	case errors.Is(err, ErrNotJoined):
		return CodeNotJoined
	case errors.Is(err, hostmsg.ErrResetting):
		return CodeRefused
	case errors.Is(err, hostmsg.ErrOutboxFull):
		return CodeBusy
	}
	return CodeInvalid
}

func (d *Daemon) opRegister(ctx context.Context, c *Conn, req *Request) *Response {
	ms, _, resp := d.messengerOf(OpRegister, req.Name)
	if resp != nil {
		return resp
	}
	nc, br := c.Hijack()
	r := newRegistration(req.Name, nc, DefaultQueue)
	// Listen before answering: a message that arrives once the client has
	// its OK must find a listener (else it is acked "no-listener"). Records
	// that arrive meanwhile wait in the queue and follow the OK line.
	if err := ms.addReg(r); err != nil {
		resp := Fail(CodeNotJoined, fmt.Errorf("callback: register: %w", err))
		resp.V = ProtocolVersion
		c.WriteJSON(resp)
		return nil
	}
	if err := c.WriteJSON(&Response{V: ProtocolVersion, OK: true}); err != nil {
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

// SendReply is the send op's payload.
type SendReply struct {
	Seq uint64 `json:"seq"`
	// Done is set when the reply carries the result (send with Wait).
	Done    bool           `json:"done,omitempty"`
	OK      bool           `json:"ok,omitempty"` // every target got it (TargetStatus.OK)
	Targets []TargetStatus `json:"targets,omitempty"`
	// Error names each target that did not get the message, and why.
	Error    string    `json:"error,omitempty"`
	QueuedAt time.Time `json:"queued_at,omitzero"`
	SentAt   time.Time `json:"sent_at,omitzero"` // first on disk
	DoneAt   time.Time `json:"done_at,omitzero"`
}

// TargetStatus is how a send ended for one target.
type TargetStatus struct {
	HostID     uint64 `json:"host_id"`
	Generation uint64 `json:"generation"`
	// Outcome is acked, delivered-unacknowledged, timeout, target-dead,
	// target-left, target-restarted or cancelled.
	Outcome string `json:"outcome"`
	// Status is the target's ack status when acked: delivered,
	// no-listener, wrong-generation, resetting, reset-unavailable.
	Status string    `json:"status,omitempty"`
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
}

func (r *SendReply) fill(res hostmsg.Result) {
	r.Done, r.OK = true, res.Err() == nil
	if err := res.Err(); err != nil {
		r.Error = err.Error()
	}
	r.QueuedAt, r.SentAt, r.DoneAt = res.QueuedAt, res.SentAt, res.DoneAt
	for _, t := range res.Targets {
		ts := TargetStatus{HostID: t.HostID, Generation: t.Generation, Outcome: t.Outcome.String(), OK: t.OK(), At: t.At}
		if t.Outcome == hostmsg.OutcomeAcked {
			ts.Status = t.Status.String()
		}
		r.Targets = append(r.Targets, ts)
	}
}

// MessageStatus is the message side of a lockspace, in LockspaceStatus.
type MessageStatus struct {
	Listeners       int   `json:"listeners"`
	Pending         int   `json:"pending"` // sends in flight or queued
	Resetting       bool  `json:"resetting,omitempty"`
	Sent            int64 `json:"sent"`
	SendOK          int64 `json:"send_ok"`
	SendFailed      int64 `json:"send_failed"`
	Delivered       int64 `json:"delivered"`
	NoListener      int64 `json:"no_listener"`
	NativeDelivered int64 `json:"native_delivered"`
	Duplicates      int64 `json:"duplicates"`
	WrongGeneration int64 `json:"wrong_generation"`
	// BadExt counts peer sectors ignored because their extension failed
	// its checksum; BadSector, because their leader record failed.
	BadExt       int64 `json:"bad_ext"`
	BadSector    int64 `json:"bad_sector"`
	AckEvictions int64 `json:"ack_evictions"`
	AckDeferred  int64 `json:"ack_deferred"`
	// Overflows counts records dropped for slow listeners.
	Overflows int `json:"overflows"`
}
