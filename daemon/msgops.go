package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/state"
)

// registerMessageOps adds the message ops to s.
func (d *Daemon) registerMessageOps(s *Server) {
	s.Handle(callback.OpSend, Op{Handler: d.opSend, Mutating: true})
	s.Handle(callback.OpRegister, Op{Handler: d.opRegister})
	s.Handle(callback.OpResult, Op{Handler: d.opResult, Mutating: true})
}

// messengerOf returns lockspace name's messenger and its max_hosts; with
// joining, a lockspace still joining will do (max_hosts is then 0).
func (d *Daemon) messengerOf(op, name string, joining bool) (*messenger, int, *callback.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.members[name]
	if m == nil || m.msg == nil {
		return nil, 0, Fail(callback.CodeNotJoined, fmt.Errorf("daemon: %s: lockspace %q is not joined", op, name))
	}
	if joining && m.state == callback.StateJoining {
		return m.msg, 0, nil
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
	root := c.Peer().UID == 0
	if req.Code&resetCodes != 0 && !root {
		return Fail(callback.CodePermission, fmt.Errorf("%w (EACCES): only root may send reset or reboot codes; uid %d", callback.ErrPermission, c.Peer().UID))
	}
	ms, maxHosts, resp := d.messengerOf(callback.OpSend, req.Name, false)
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
		CurrentGeneration: req.Code&resetCodes != 0,
		// Root's resets may use the reserved seqs: whatever other users
		// sent, a fence always gets a seq.
		Privileged: root && req.Code&leader.EventReset != 0}
	if req.Data != nil {
		msg.Data, msg.HasData = *req.Data, true
	}
	tk, err := ms.send(d.clk.Now(), msg, req.Wait)
	if err != nil {
		return Fail(sendCode(err), fmt.Errorf("daemon: send: %w", err))
	}
	d.log.Info("send", "lockspace", req.Name, "id", tk.id.String(), "targets", req.Targets, "code", fmt.Sprintf("%#x", req.Code),
		"wait", req.Wait, "by", c.Peer().String())
	reply := &callback.SendReply{ID: tk.id.String(), Seq: tk.id.Seq, Origin: tk.id.Origin}
	if !req.Wait {
		return &callback.Response{OK: true, Send: reply}
	}
	if req.ReportAccept {
		acc := *reply
		acc.Accepted = true
		if err := c.WriteJSON(&callback.Response{V: callback.ProtocolVersion, OK: true, Send: &acc}); err != nil {
			return nil // the client is gone; the message goes on
		}
	}
	select {
	case r := <-tk.result:
		reply = &r
	case <-ctx.Done():
		return Fail(callback.CodeCancelled, fmt.Errorf("daemon: send: message %s: daemon stopping before it finished%s", tk.id, durableNote(ms, tk.id)))
	}
	return &callback.Response{OK: true, Send: reply}
}

// durableNote tells a client whose wait was cut short how to learn the
// message's fate later.
func durableNote(ms *messenger, id hostmsg.MsgID) string {
	if ms.outbox == nil {
		return ""
	}
	return fmt.Sprintf("; it is in the durable outbox and is sent again when the lockspace is joined again: `sanlock-msg result -s %s %s`", ms.name, id)
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
	case errors.Is(err, errJournal):
		return callback.CodeIO
	}
	return callback.CodeInvalid
}

// opRegister turns the connection into a record stream. A lockspace still
// joining will do: a restarting receiver's listeners can be in place
// before its first message arrives.
func (d *Daemon) opRegister(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	ms, _, resp := d.messengerOf(callback.OpRegister, req.Name, true)
	if resp != nil {
		return resp
	}
	nc, br := c.Hijack()
	r := newRegistration(req.Name, nc, DefaultQueue)
	r.manual, r.by = req.ManualAck, c.Peer().String()
	r.onAck = func(id string) { ms.appAck(r, id) }
	r.onWritten = func(ids []string) { ms.written(r, ids) }
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
	d.log.Info("listener registered", "lockspace", req.Name, "manual_ack", r.manual, "by", r.by)
	r.serve(br)
	ms.removeReg(r)
	d.log.Info("listener gone", "lockspace", req.Name, "by", r.by)
	return nil
}

// opResult answers what became of a message this daemon accepted, from
// the lockspace's durable outbox (also after a restart, and for a
// lockspace not joined now).
func (d *Daemon) opResult(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	id, err := hostmsg.ParseMsgID(req.MsgID)
	if err != nil {
		return Fail(callback.CodeInvalid, fmt.Errorf("daemon: result: %w", err))
	}
	if d.store == nil {
		return Fail(callback.CodeNotFound, errors.New("daemon: result: this daemon keeps no state directory (--state-dir none): results are not kept"))
	}
	names := []string{req.Name}
	if req.Name == "" {
		names = d.lockspaceNames(id.Host)
	}
	for _, name := range names {
		f, ok, err := d.lookupFate(name, id)
		if err != nil {
			return Fail(callback.CodeIO, fmt.Errorf("daemon: result: %w", err))
		}
		if ok {
			return &callback.Response{OK: true, Send: fateReply(f)}
		}
	}
	where := "any lockspace"
	if req.Name != "" {
		where = "lockspace " + req.Name
	}
	return Fail(callback.CodeNotFound, fmt.Errorf("daemon: result: no message %s in %s: never accepted by this daemon as host %d, or older than the last %d results kept",
		id, where, id.Host, state.DefaultKeep))
}

// lookupFate finds message id in lockspace name's outbox: the open one if
// the lockspace is joined with that host id, else the journal on disk.
func (d *Daemon) lookupFate(name string, id hostmsg.MsgID) (state.Fate, bool, error) {
	d.mu.Lock()
	m := d.members[name]
	d.mu.Unlock()
	if m != nil && m.spec.HostID == id.Host && m.msg.outbox != nil {
		f, ok := m.msg.lookup(id.String())
		return f, ok, nil
	}
	fates, err := state.LoadOutbox(d.store.Dir(name, id.Host))
	if err != nil {
		return state.Fate{}, false, err
	}
	for _, f := range fates {
		if f.Message.ID == id.String() {
			return f, true, nil
		}
	}
	return state.Fate{}, false, nil
}

// lockspaceNames lists the lockspaces with a journal for host id: joined
// ones first, then those in the state directory.
func (d *Daemon) lockspaceNames(host uint64) []string {
	seen := map[string]bool{}
	var names []string
	d.mu.Lock()
	for n, m := range d.members {
		if m.spec.HostID == host {
			names = append(names, n)
			seen[n] = true
		}
	}
	d.mu.Unlock()
	for _, n := range state.Lockspaces(d.store.Root(), host) {
		if !seen[n] {
			names = append(names, n)
		}
	}
	return names
}

// fateReply is the result op's answer for f.
func fateReply(f state.Fate) *callback.SendReply {
	if f.Result != nil {
		r := *f.Result
		r.State = "done"
		return &r
	}
	return &callback.SendReply{ID: f.Message.ID, Seq: f.Message.Seq, Origin: f.Message.Origin, State: "pending",
		Targets: f.Targets, QueuedAt: f.Message.QueuedAt}
}
