package delta

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Errors of the delta lease protocol.
var (
	// ErrHostIDBusy means another live host holds the host id (sanlock
	// -262 HOSTID_BUSY).
	ErrHostIDBusy = errors.New("delta: host_id held by live host")
	// ErrRenewOwner means our sector now names another owner or generation
	// (sanlock -260): someone took our host id.
	ErrRenewOwner = errors.New("delta: sector no longer ours")
	// ErrRenewDiff means our sector changed since we wrote it (sanlock -261).
	ErrRenewDiff = errors.New("delta: sector changed since our last write")
	// ErrRenewalFailed means no renewal succeeded for renewal_fail (8·io):
	// the lease is lost and the watchdog will fire.
	ErrRenewalFailed = errors.New("delta: renewal failed")
)

// BusyError details an ErrHostIDBusy.
type BusyError struct {
	HostID     uint64
	Owner      string // resource name of the holder
	Generation uint64
	Timestamp  uint64
	Waited     time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("delta: host_id %d held by live host %q, generation %d (its timestamp changed during the %v wait)",
		e.HostID, e.Owner, e.Generation, e.Waited.Round(time.Millisecond))
}

// Unwrap returns ErrHostIDBusy.
func (e *BusyError) Unwrap() error { return ErrHostIDBusy }

// StepKind says what an Acquirer wants done next.
type StepKind int

// Acquire steps.
const (
	// StepRead: read our host sector and pass it to Next.
	StepRead StepKind = iota + 1
	// StepWrite: write Step.Sector to our host sector and pass the result.
	StepWrite
	// StepWait: call Next again at Step.Until (no I/O).
	StepWait
	// StepDone: the lease is ours with Step.Record (generation in it).
	StepDone
	// StepFail: acquire failed with Step.Err.
	StepFail
)

// Step is one instruction from an Acquirer.
type Step struct {
	Kind   StepKind
	Sector []byte        // StepWrite: the whole sector to write
	Until  time.Time     // StepWait
	Record leader.Record // StepDone: the record written
	Err    error         // StepFail
	Why    string        // StepWait: the reason, for logs
}

// Acquirer is sanlock's delta lease acquire (sanlock-format.md §4.1) as a
// deterministic step machine: it never does I/O or reads a clock. The
// driver performs each Step and feeds the outcome back with the time it
// completed, so tests can interleave any number of acquirers on one device
// with simulated time.
//
// Acquire reads the sector; a free sector, or one last written by a host
// of our name (a fast reacquire after a crash), is taken at once. A sector
// held by another host is watched for AcquireWait (the previous owner's
// host_dead) and taken only if nothing changed. The write bumps
// owner_generation; after ShortDelay a verify read detects a concurrent
// acquirer.
type Acquirer struct {
	Name     string // lockspace name
	HostID   uint64
	HostName string // our resource name (≤ 47 bytes)
	Timeouts Timeouts
	// Timestamp converts local time to the on-disk timestamp (monotonic
	// seconds).
	Timestamp func(time.Time) uint64
	// Ext is the extension to write with the lease (may be nil).
	Ext *leader.Extension
	// CarryAcks makes the acquire write keep the ack table of the sector
	// it takes over, if that sector was ours (marked) and its extension
	// intact: messages our previous incarnation acked stay acked for
	// senders that still wait, and its next incarnation can read them
	// again after a crash right after the join.
	CarryAcks bool

	phase   int
	ss      int
	first   leader.Record
	prev    leader.Sector // the whole sector of the first read
	written leader.Record
	start   time.Time
}

const (
	phRead1 = iota
	phWait1
	phRead2
	phWrite
	phWait2
	phVerify
)

// Previous returns the sector as the first read found it, before our
// write: its extension (Ext, if it was ours and intact) holds the ack table
// our previous incarnation left there.
func (a *Acquirer) Previous() leader.Sector { return a.prev }

// Start returns the first step.
func (a *Acquirer) Start(now time.Time) Step {
	a.phase, a.start = phRead1, now
	return Step{Kind: StepRead}
}

func fail(err error) Step { return Step{Kind: StepFail, Err: err} }

// Next takes the outcome of the previous step (data for a read; nil data
// otherwise; err for failed I/O) at time now and returns the next step.
func (a *Acquirer) Next(now time.Time, data []byte, ioErr error) Step {
	if ioErr != nil {
		return fail(fmt.Errorf("delta: acquire host_id %d: %w", a.HostID, ioErr))
	}
	switch a.phase {
	case phRead1:
		r, err := a.verify(data)
		if err != nil {
			return fail(err)
		}
		a.ss, a.first = len(data), r
		a.prev, _ = leader.DecodeSector(data)
		if r.Timestamp == 0 || r.HasResourceName(a.HostName) {
			return a.write(now, r)
		}
		// The previous owner's W, if its extension says it: a host with a
		// longer watchdog timeout is dead later.
		wait := a.Timeouts.Of(&a.prev).AcquireWait()
		a.phase = phWait1
		return Step{Kind: StepWait, Until: now.Add(wait), Why: fmt.Sprintf(
			"host_id %d was last written by %q generation %d; watching it for %v before taking it over",
			a.HostID, r.ResourceNameString(), r.OwnerGeneration, wait)}
	case phWait1:
		a.phase = phRead2
		return Step{Kind: StepRead}
	case phRead2:
		r, err := a.verify(data)
		if err != nil {
			return fail(err)
		}
		if r.Timestamp != 0 && !bytes.Equal(r.Bytes(), a.first.Bytes()) {
			return fail(&BusyError{HostID: a.HostID, Owner: r.ResourceNameString(), Generation: r.OwnerGeneration,
				Timestamp: r.Timestamp, Waited: now.Sub(a.start)})
		}
		return a.write(now, r)
	case phWrite:
		a.phase = phWait2
		return Step{Kind: StepWait, Until: now.Add(a.Timeouts.Other(a.first.IOTimeout).ShortDelay()),
			Why: "waiting before the verify read, to catch a concurrent acquirer"}
	case phWait2:
		a.phase = phVerify
		return Step{Kind: StepRead}
	case phVerify:
		r, err := a.verify(data)
		if err != nil {
			return fail(err)
		}
		if !bytes.Equal(r.Bytes(), a.written.Bytes()) {
			return fail(&BusyError{HostID: a.HostID, Owner: r.ResourceNameString(), Generation: r.OwnerGeneration,
				Timestamp: r.Timestamp, Waited: now.Sub(a.start)})
		}
		return Step{Kind: StepDone, Record: a.written}
	}
	panic(fmt.Sprintf("delta: acquirer in phase %d", a.phase))
}

func (a *Acquirer) verify(data []byte) (leader.Record, error) {
	r, err := leader.DecodeRecord(data)
	if err != nil {
		return r, err
	}
	if err := r.Verify(a.Name); err != nil {
		return r, fmt.Errorf("delta: acquire host_id %d: %w", a.HostID, err)
	}
	return r, nil
}

// write builds the acquire write from the record just read: new timestamp,
// our io_timeout, owner id, generation+1 and host name; event fields are
// left as the previous owner wrote them, as sanlock does.
func (a *Acquirer) write(now time.Time, r leader.Record) Step {
	r.Timestamp = a.Timestamp(now)
	if r.Timestamp == a.first.Timestamp || r.Timestamp == 0 {
		r.Timestamp = a.first.Timestamp + 1
	}
	r.IOTimeout = uint16(a.Timeouts.IO/time.Second) & 0xFF
	r.OwnerID = a.HostID
	r.OwnerGeneration++
	if err := leader.SetName(&r.ResourceName, a.HostName, leader.MaxHostName); err != nil {
		return fail(err)
	}
	ext := a.Ext
	if a.CarryAcks && ext != nil && a.prev.Ext != nil && len(a.prev.Ext.Acks) > 0 {
		e := *ext
		e.Acks = append([]leader.Ack(nil), a.prev.Ext.Acks...)
		ext = &e
	}
	s := leader.Sector{Record: r, Ext: ext}
	s.Seal()
	buf := make([]byte, a.ss)
	if err := s.Encode(buf); err != nil {
		return fail(err)
	}
	a.written = s.Record
	a.phase = phWrite
	return Step{Kind: StepWrite, Sector: buf}
}
