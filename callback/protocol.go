package callback

import (
	"time"
)

// ProtocolVersion is the version of the wire protocol this package speaks.
// Every Request carries it in V; the daemon answers requests of version
// ProtocolVersion (and, for hand-written requests, a missing version) and
// refuses others with CodeUnsupported.
//
// The version changes only when an existing field or op changes meaning.
// Additions do not change it: the daemon ignores request fields it does
// not know, so a newer client works with an older daemon, and refuses ops
// it does not know with CodeUnsupported, so the client can tell "this
// daemon is older" from "my request is wrong". A new field that an older
// daemon must not ignore comes with a new op. See docs/protocol.md.
const ProtocolVersion = 1

// MaxLine is the longest request line the daemon accepts, newline included.
// A longer line gets an error line and closes that connection.
const MaxLine = 64 << 10

// Names of the files in the run directory.
const (
	// SocketName is the daemon's unix socket in the run directory.
	SocketName = "sanlock-msg.sock"
	// PIDName is the daemon's pid file; the daemon holds an flock on it so
	// two daemons cannot share a run directory.
	PIDName = "sanlock-msg.pid"
)

// Ops of the protocol.
const (
	OpAddLockspace = "add_lockspace"
	OpRemLockspace = "rem_lockspace"
	OpStatus       = "status"
	OpHostStatus   = "host_status"
	OpShutdown     = "shutdown"
)

// Codes are the machine-readable error classes of Response.Code. The
// client maps them back to the sentinel errors (ErrPermission, ...).
const (
	CodePermission = "permission" // the peer may not run this op
	CodeExists     = "exists"     // the lockspace is already joined or joining
	CodeNotJoined  = "not_joined" // no such lockspace in the daemon
	CodeBusy       = "busy"       // the host id is held by a live host
	CodeInvalid    = "invalid"    // bad request: spec, io_timeout, not a lockspace...
	CodeRefused    = "refused"    // the daemon refuses (shutdown with lockspaces joined)
	CodeCancelled  = "cancelled"  // the op was cancelled (a join ended by rem_lockspace or shutdown)
	CodeIO         = "io"         // storage error
	CodeNotFound   = "not_found"  // result: no such message (never accepted here, or forgotten)
	CodeInternal   = "internal"   // anything else
	// CodeUnsupported: the daemon does not know the op or the protocol
	// version (it is older than the client).
	CodeUnsupported = "unsupported"
	// CodeLimit: a daemon limit was reached: too many connections (in
	// total or for the peer's uid), or the connection was idle too long.
	// The daemon closes the connection after this line.
	CodeLimit = "limit"
)

// Request is one request line from a client: a JSON object with the
// protocol version, the op, and the fields that op uses (others are
// omitted).
type Request struct {
	V  int    `json:"v"`
	Op string `json:"op"`
	// ID is chosen by the client and echoed in the Response, so a client
	// can tell which request a response answers (0 = none). The Client
	// numbers its requests 1, 2, 3... on each connection.
	ID uint64 `json:"id,omitempty"`

	// Spec is NAME:HOST_ID:PATH:OFFSET (add_lockspace), or that or just
	// NAME (rem_lockspace).
	Spec string `json:"spec,omitempty"`
	// Name is a lockspace name (host_status; rem_lockspace without Spec).
	Name string `json:"name,omitempty"`
	// IOTimeout is add_lockspace's io_timeout in whole seconds, 1..255; nil
	// means the default, 10, as sanlock. An explicit 0 is refused.
	IOTimeout *int `json:"io_timeout,omitempty"`
	// HostName is the name written into our sector (add_lockspace); empty
	// means the daemon's host name (its -e).
	HostName string `json:"host_name,omitempty"`
	// Force makes shutdown release every lockspace first instead of
	// refusing while lockspaces are joined.
	Force bool `json:"force,omitempty"`
	// Wait, on shutdown, tells the daemon the client waits for it to be
	// gone (informational; the client does the waiting); on send, asks for
	// the result instead of just the seq.
	Wait bool `json:"wait,omitempty"`
	// ReportAccept, on send with Wait, asks for a first reply line as
	// soon as the message is durable (SendReply.Accepted, with its ID),
	// before the result line.
	ReportAccept bool `json:"report_accept,omitempty"`
	// ManualAck, on register: records that need an ack (AckNeeded) are
	// acked to their sender only once this client acks them (AckLine);
	// if it goes away first, they are delivered again to the next
	// listener, flagged Redelivered.
	ManualAck bool `json:"manual_ack,omitempty"`
	// MsgID is the message id, HOST:ORIGIN:SEQ (result).
	MsgID string `json:"msg_id,omitempty"`

	// Send: Name is the lockspace; Targets the host ids; Generation the
	// target generation (0 = any incarnation; one target only); Code the
	// event code bitfield; Seq the caller's seq (0 = generate one); Data
	// the event data (absent = the seq); TimeoutMs bounds the send
	// (0 = host_dead of the lockspace).
	Targets    []uint64 `json:"targets,omitempty"`
	Generation uint64   `json:"generation,omitempty"`
	Code       uint64   `json:"code,omitempty"`
	Seq        uint64   `json:"seq,omitempty"`
	Data       *uint64  `json:"data,omitempty"`
	TimeoutMs  int64    `json:"timeout_ms,omitempty"`
}

// Response is the daemon's answer to one Request. OK is false on failure,
// with a human-readable Error and a machine-readable Code; the payload
// fields are set by the ops that return them.
type Response struct {
	V int `json:"v"`
	// ID is the ID of the request answered. It is 0 on an error line the
	// daemon writes without a request it could read (a line it cannot
	// parse, a connection over a limit or idle too long): the daemon then
	// closes the connection.
	ID    uint64 `json:"id,omitempty"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
	// Field names the request field whose value is wrong (for example
	// "spec", "targets", "io_timeout") when a CodeInvalid refusal is about
	// that value itself, not about the daemon's state: a usage error.
	Field string `json:"field,omitempty"`
	// Warning is set on success when something still needs the user's
	// attention (a failed lockspace removed with its watchdog expiry kept).
	Warning string `json:"warning,omitempty"`

	// Lockspace is the lockspace joined (add_lockspace).
	Lockspace *LockspaceStatus `json:"lockspace,omitempty"`
	// Status is the daemon's status (status).
	Status *DaemonStatus `json:"status,omitempty"`
	// Hosts lists the hosts of a lockspace (host_status).
	Hosts []HostStatus `json:"hosts,omitempty"`
	// PID is the daemon's process id (shutdown: the process to wait for).
	PID int `json:"pid,omitempty"`
	// Send is the send op's reply.
	Send *SendReply `json:"send,omitempty"`
}

// Lockspace states in LockspaceStatus.State.
const (
	StateJoining  = "joining"  // add_lockspace in progress
	StateJoined   = "joined"   // renewing
	StateFailed   = "failed"   // renewals stopped for good; rem_lockspace to forget it
	StateRemoving = "removing" // rem_lockspace in progress
)

// DaemonStatus is the status op's payload.
type DaemonStatus struct {
	PID        int               `json:"pid"`
	Version    string            `json:"version"`
	RunDir     string            `json:"run_dir"`
	HostName   string            `json:"host_name"`
	Watchdog   WatchdogStatus    `json:"watchdog"`
	Lockspaces []LockspaceStatus `json:"lockspaces"`
	// Connections counts the open client connections, registrations
	// included; ConnectionsRefused, those refused over a cap since the
	// daemon started.
	Connections        int   `json:"connections"`
	ConnectionsRefused int64 `json:"connections_refused"`
}

// WatchdogStatus describes the daemon's watchdog and the keeper's current
// decision.
type WatchdogStatus struct {
	Device     string  `json:"device"`      // "/dev/watchdog", "fake:FILE", "none"
	TimeoutSec float64 `json:"timeout_sec"` // the device's fire timeout
	Feeding    bool    `json:"feeding"`
	Reset      bool    `json:"reset"`    // a reset is latched
	Decision   string  `json:"decision"` // why it feeds or not
}

// LockspaceStatus describes one lockspace of the daemon. Times are the
// daemon's wall clock; *_sec fields are seconds.
type LockspaceStatus struct {
	Name       string `json:"name"`
	HostID     uint64 `json:"host_id"`
	Generation uint64 `json:"generation"`
	HostName   string `json:"host_name"`
	Path       string `json:"path"`
	Offset     int64  `json:"offset"`
	State      string `json:"state"`
	// Health is the renewal health (ok, late, warn, failed, stopped);
	// empty while joining.
	Health string `json:"health,omitempty"`
	// Error says why a lockspace failed.
	Error      string `json:"error,omitempty"`
	SectorSize int    `json:"sector_size,omitempty"`
	AlignSize  int    `json:"align_size,omitempty"`
	MaxHosts   int    `json:"max_hosts,omitempty"`
	IOTimeout  int    `json:"io_timeout"` // seconds
	// Since is when the join started (joining) or ended (joined).
	Since          time.Time `json:"since"`
	LastRenewal    time.Time `json:"last_renewal,omitzero"`
	LastRenewalAge float64   `json:"last_renewal_age_sec,omitempty"`
	// Expiry is LastRenewal + renewal_fail (8·io_timeout): the watchdog is
	// fed for this lockspace until then.
	Expiry      time.Time `json:"expiry,omitzero"`
	Renewals    int64     `json:"renewals"`
	RenewFails  int64     `json:"renew_fails"`
	Reads       int64     `json:"reads"`
	FullScans   int64     `json:"full_scans"`
	Writes      int64     `json:"writes"`
	ReadBytes   int64     `json:"read_bytes"`
	WriteBytes  int64     `json:"write_bytes"`
	IOTimeouts  int64     `json:"io_timeouts"`
	IOErrors    int64     `json:"io_errors"`
	MaxReadSec  float64   `json:"max_read_sec"`
	MaxWriteSec float64   `json:"max_write_sec"`
	// IOReads and IOWrites count the completed device calls; ReadSec and
	// WriteSec are the sums of their latencies (mean latency = ReadSec /
	// IOReads); LastReadSec and LastWriteSec the latest ones.
	IOReads      int64   `json:"io_reads"`
	IOWrites     int64   `json:"io_writes"`
	ReadSec      float64 `json:"read_sec"`
	WriteSec     float64 `json:"write_sec"`
	LastReadSec  float64 `json:"last_read_sec"`
	LastWriteSec float64 `json:"last_write_sec"`
	// PollSec is the doorbell poll interval (0: renewals only).
	PollSec float64 `json:"poll_interval_sec"`
	// Doorbell is the doorbell side (nil while joining).
	Doorbell *DoorbellStatus `json:"doorbell,omitempty"`
	// Messages is the message side (nil while joining).
	Messages *MessageStatus `json:"messages,omitempty"`
	// Wait is what the lockspace is waiting for right now, if anything:
	// while joining, the acquire's waits (the previous owner's host_dead
	// when the host id was last written under another host name, then the
	// wait before the verify read).
	Wait *WaitStatus `json:"wait,omitempty"`
}

// WaitStatus is a wait in progress: why, and until when. Clients poll the
// status op to show it (sanlock-msg add-lockspace does).
type WaitStatus struct {
	// Reason says what the wait is for, in words.
	Reason string `json:"reason"`
	// Until is when the wait ends, on the daemon's wall clock.
	Until time.Time `json:"until"`
	// LeftSec is the time left when the status was taken, in seconds.
	LeftSec float64 `json:"left_sec"`
}

// DoorbellStatus counts a lockspace's doorbell I/O: the polls of our
// doorbell (a spare sector of the area), the rings found there and written
// to other hosts', and the host sectors read between renewals.
type DoorbellStatus struct {
	// Index is our doorbell's spare sector index.
	Index int `json:"index"`
	// Polls counts reads of our doorbell; PollErrors, those that failed.
	Polls      int64 `json:"polls"`
	PollErrors int64 `json:"poll_errors"`
	// Bad counts polls that found it torn or corrupt, Foreign polls that
	// found something that is not a doorbell: both ignored.
	Bad     int64 `json:"bad"`
	Foreign int64 `json:"foreign"`
	// RingsReceived counts new rings naming us; Gaps, times the doorbell
	// had lost rings (a scan of the area followed).
	RingsReceived int64 `json:"rings_received"`
	Gaps          int64 `json:"gaps"`
	// RingsWritten counts doorbells written, TargetsRung the targets they
	// named. RingsRefused counts rings not written because the sector held
	// something else, Recreated rings written over a torn or corrupt
	// doorbell, RingErrors rings that failed or were skipped.
	RingsWritten int64 `json:"rings_written"`
	TargetsRung  int64 `json:"targets_rung"`
	RingsRefused int64 `json:"rings_refused"`
	Recreated    int64 `json:"recreated"`
	RingErrors   int64 `json:"ring_errors"`
	// TargetedReads and TargetedBytes count reads of some host sectors
	// between renewals (ringers, awaited targets, our own before a message
	// write); Scans, reads of the whole used area between renewals.
	TargetedReads int64 `json:"targeted_reads"`
	TargetedBytes int64 `json:"targeted_bytes"`
	Scans         int64 `json:"scans"`
}

// HostStatus describes one host id of a lockspace as the daemon sees it.
type HostStatus struct {
	HostID     uint64 `json:"host_id"`
	OwnerID    uint64 `json:"owner_id"`
	Generation uint64 `json:"generation"`
	Timestamp  uint64 `json:"timestamp"`
	// State is sanlock's: UNKNOWN, FREE, LIVE, FAIL, DEAD.
	State     string `json:"state"`
	HostName  string `json:"host_name"`
	IOTimeout int    `json:"io_timeout"`
	// Runs is "sanlock-msg" when the host's sector carries our extension,
	// else "sanlock".
	Runs string `json:"runs"`
	// Self marks our own host id.
	Self bool `json:"self,omitempty"`
	// LastChange is when the (owner, generation, timestamp) triple last
	// changed, as seen locally.
	LastChange    time.Time `json:"last_change,omitzero"`
	LastChangeAge float64   `json:"last_change_age_sec"`
	// DeadAt is when the host becomes DEAD if it does not renew again.
	DeadAt time.Time `json:"dead_at,omitzero"`
	// Bad says why the last sector read failed the leader checks.
	Bad string `json:"bad,omitempty"`
	// BadExt counts sectors read whose extension failed its checksum.
	BadExt int `json:"bad_ext,omitempty"`
	// WatchdogSec is the watchdog fire timeout W the host's sector states
	// (sanlock-msg hosts; its host_dead uses it); 0 for a plain sanlock
	// host, whose W is assumed to be this daemon's.
	WatchdogSec int `json:"watchdog_sec,omitempty"`
}

// Message ops.
const (
	// OpSend queues a message (Name, Targets, Generation, Code, Seq, Data,
	// Wait, TimeoutMs) and answers with its seq, or with its result if
	// Wait is set.
	OpSend = "send"
	// OpRegister turns the connection into a stream of Records for
	// lockspace Name: the daemon answers OK, then writes one JSON Record
	// per line until the lockspace goes away (an "end" record) or the
	// client closes the connection. It may be done while the lockspace
	// is still joining.
	OpRegister = "register"
	// OpResult returns what became of message ID (HOST:ORIGIN:SEQ) sent
	// from this daemon in lockspace Name, from its durable outbox.
	OpResult = "result"
)

// SendReply is the send op's payload, and the result op's.
type SendReply struct {
	// ID is the message's identity, HOST:ORIGIN:SEQ: our host id, the
	// generation it was first sent under and its seq. It is unique in the
	// lockspace; `result` takes it.
	ID  string `json:"id,omitempty"`
	Seq uint64 `json:"seq"`
	// Origin is the generation in ID.
	Origin uint64 `json:"origin,omitempty"`
	// Accepted marks the first of two reply lines of a send with Wait and
	// ReportAccept: the message is durable, its result follows.
	Accepted bool `json:"accepted,omitempty"`
	// State is the result op's answer: "pending" (accepted, not finished;
	// Targets lists the outcomes so far) or "done".
	State string `json:"state,omitempty"`
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
	// HeldBack: while we waited, the target said it was holding messages
	// back (no listener with room, or none registered yet after its join).
	HeldBack bool `json:"held_back,omitempty"`
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
	// Overflows counts records a listener missed because its queue was
	// full (others had room); they were not counted as delivered to it.
	Overflows int `json:"overflows"`
	// HeldBack counts messages left on their sender's disk for a while
	// (no listener had room, or none registered yet after the join).
	HeldBack int64 `json:"held_back"`
	// Returned counts deliveries given back by a manual-ack listener that
	// went away; Redelivered, deliveries of a message handed out before.
	Returned    int64 `json:"returned"`
	Redelivered int64 `json:"redelivered"`
	// Inherited counts ack entries carried over from our previous
	// incarnation at the join.
	Inherited int64 `json:"inherited"`
	// Unacked counts deliveries waiting for their ack: a manual one, or
	// for an auto-ack listener's connection to take them.
	Unacked int `json:"unacked"`
	// Durable says sends go through the durable outbox (a state
	// directory is configured).
	Durable bool `json:"durable"`
	// Registrations lists the listeners.
	Registrations []RegistrationStatus `json:"registrations,omitempty"`
	// TargetOutcomes counts finished sends per target by how they ended:
	// "acked/STATUS" (acked/delivered, acked/no-listener, ...) or the
	// outcome (timeout, target-dead, delivered-unacknowledged, ...).
	TargetOutcomes map[string]int64 `json:"target_outcomes,omitempty"`
}

// RegistrationStatus describes one listener.
type RegistrationStatus struct {
	By        string    `json:"by"` // the client's credentials
	ManualAck bool      `json:"manual_ack,omitempty"`
	Since     time.Time `json:"since"`
	Queued    int       `json:"queued"`    // records waiting to be written to it
	Overflows int       `json:"overflows"` // records it missed
	Unacked   int       `json:"unacked"`   // records waiting for its ack
}

// Record types.
const (
	RecordMessage  = "message"  // a message arrived
	RecordOverflow = "overflow" // Dropped messages were lost: the client read too slowly
	RecordEnd      = "end"      // the registration ends (Reason); the connection closes next
)

// Record is one line a registration delivers: a message, an overflow
// report, or the end of the registration.
type Record struct {
	Type      string `json:"type"`
	Lockspace string `json:"lockspace"`
	// Message fields (always present, zero for other types).
	FromHostID     uint64   `json:"from_host_id"`
	FromGeneration uint64   `json:"from_generation"`
	Seq            uint64   `json:"seq"` // 0 for events from plain sanlock hosts
	Code           uint64   `json:"code"`
	Data           uint64   `json:"data"`
	Codes          []string `json:"codes"`
	// Generation is the target generation the sender named (0 = any).
	Generation uint64 `json:"generation"`
	// Native marks an event from a plain sanlock host: no seq, no ack.
	Native bool `json:"native,omitempty"`
	// Status is the ack this host wrote (delivered, resetting, ...).
	Status string    `json:"status,omitempty"`
	Time   time.Time `json:"time,omitzero"`
	// Dropped counts the messages lost before this overflow record.
	Dropped int `json:"dropped,omitempty"`
	// Reason says why the registration ended.
	Reason string `json:"reason,omitempty"`
	// ID is the message's identity, HOST:ORIGIN:SEQ (not for native
	// events). A manual-ack registration acks a message by this id.
	ID string `json:"id,omitempty"`
	// Origin is the generation the message was first sent under (in ID;
	// FromGeneration unless the sender restarted and resent it).
	Origin uint64 `json:"origin,omitempty"`
	// Redelivered: this host handed the same message (same ID) to a
	// listener before: given back by a manual-ack listener that went away
	// unacked, or delivered before a crash that kept its ack off the disk.
	Redelivered bool `json:"redelivered,omitempty"`
	// AckNeeded: a manual-ack registration must ack this record's ID;
	// until one does, the sender is not told it was delivered.
	AckNeeded bool `json:"ack_needed,omitempty"`
}

// AckLine is what a manual-ack registration writes, one per line, to ack
// a record: {"op":"ack","id":"HOST:ORIGIN:SEQ"}.
type AckLine struct {
	Op string `json:"op"` // "ack"
	ID string `json:"id"`
}
