package delta

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Config configures a lockspace membership. Zero fields take the defaults
// documented on each; Join does not modify the Config given.
type Config struct {
	// Name is the lockspace name (1..48 bytes); it must match the area.
	Name string
	// HostID is our host id, 1..max_hosts of the area.
	HostID uint64
	// Offset is the byte offset of the area on the device.
	Offset int64
	// HostName is written into our sector's resource_name (≤ 47 bytes). A
	// sector last written under this name is re-acquired without the
	// host_dead wait, so it must be unique to this machine. Default: a
	// random UUID followed by "." and the node name, like sanlock.
	HostName string
	// IOTimeout is io_timeout, in whole seconds (default 10 s). Every
	// renewal timeout derives from it (Timeouts), and peers read it from
	// our record to derive theirs toward us.
	IOTimeout time.Duration
	// WatchdogTimeout is W, the watchdog fire timeout assumed for every
	// host (default 60 s). It must be the same on every host.
	WatchdogTimeout time.Duration
	// PollInterval is how often the loop reads our doorbell between
	// renewals (default 250 ms): one sector, where a ring tells us to read
	// a sender's sector. It is stretched when the area is so full that
	// renewals leave too little of sanlock's read rate (docs/design-notes.md,
	// "I/O budget"). Negative disables everything between renewals (no
	// doorbell polls, planned reads, rings or message writes): only
	// renewals read and write the area, as in sanlock.
	PollInterval time.Duration
	// FullScanEvery makes every n-th renewal read the whole area, to find
	// hosts that joined above the highest known host id; other reads cover
	// host ids 1..highest+PollMargin (default 4).
	FullScanEvery int
	// PollMargin is how many sectors above the highest joined host id
	// every read also covers (default 8).
	PollMargin int
	// Clock is the time source (default the real clock).
	Clock clock.Clock
	// Logger receives the lockspace's log (default slog.Default()).
	Logger *slog.Logger
	// Messenger, if set, rides on the loop: it sees every read and adds
	// its payload to every write.
	Messenger Messenger
	// Rand is the source of the random epoch of a doorbell we recreate
	// over a torn or corrupt one (default crypto/rand).
	Rand io.Reader
	// OnRenewal, if set, is called from the loop after every renewal
	// attempt; it must not block.
	OnRenewal func(RenewalEvent)
	// OnAcquireWait, if set, is called by Join (or Step) each time the
	// acquire starts a wait with no I/O (Step.Why and Step.Until), so that a caller can
	// show what a long join waits for; it must not block.
	OnAcquireWait func(why string, until time.Time)
	// TimestampBase, if non-zero, replaces CLOCK_MONOTONIC seconds at Join
	// as the base of the on-disk timestamps (tests).
	TimestampBase uint64

	// waitHook, if set, is called each time the loop goes to sleep, with
	// the time it will wake up, once that wake-up is scheduled on Clock
	// (tests drive a fake clock from it).
	waitHook func(until time.Time)
}

// DefaultPollInterval is the doorbell poll between renewals
// (Config.PollInterval).
const DefaultPollInterval = 250 * time.Millisecond

// RenewalEvent reports one renewal attempt to Config.OnRenewal.
type RenewalEvent struct {
	Name        string
	OK          bool
	Err         error
	LastSuccess time.Time // start of the last successful renewal
	// Expiry is LastSuccess + renewal_fail: the watchdog may be fed until
	// then.
	Expiry time.Time
}

func (c Config) withDefaults() Config {
	if c.IOTimeout == 0 {
		c.IOTimeout = DefaultIOTimeout
	}
	if c.WatchdogTimeout == 0 {
		c.WatchdogTimeout = DefaultWatchdogTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.FullScanEvery == 0 {
		c.FullScanEvery = 4
	}
	if c.PollMargin == 0 {
		c.PollMargin = 8
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HostName == "" {
		c.HostName = DefaultHostName()
	}
	return c
}

// DefaultHostName returns "<random uuid>.<node name>", truncated to 47
// bytes, as sanlock makes its default host name at each start.
func DefaultHostName() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	node, _ := os.Hostname()
	s := fmt.Sprintf("%x-%x-%x-%x-%x.%s", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16], node)
	if len(s) > leader.MaxHostName {
		s = s[:leader.MaxHostName]
	}
	return s
}

// Messenger plugs a message protocol into the lockspace loop. Its methods
// are called from the loop goroutine only, one at a time, and must not
// block: they run between an I/O and the next.
//
// A loop turn (a renewal, a doorbell poll, or a wake-up for planned I/O)
// goes: Doorbell (if polled), Plan, the reads (Observe, or Tick if nothing
// was read), Payload and, if a write is due, Written, then Plan again and
// the rings it asks for (Rang).
type Messenger interface {
	// Joined is called once, after the lease is acquired and before the
	// loop starts, with our identity and the area's geometry.
	Joined(hostID, generation uint64, geo leader.Geometry)
	// Observe is called after every successful read with the host sectors
	// read: the whole used part of the area (a renewal or a scan), or
	// only some of them (planned reads). v and its sectors are only valid
	// during the call.
	Observe(now time.Time, v *View)
	// Doorbell is called after every poll of our doorbell sector with
	// what it holds, or with the error of leader.DecodeDoorbell (a torn,
	// corrupt or foreign sector: never act on it), and the idle poll
	// interval (every host of the area polls about as often: rings and
	// waiting reads are timed by it). A poll whose read failed is not
	// reported.
	Doorbell(now time.Time, every time.Duration, db *leader.Doorbell, err error)
	// Plan returns the reads and rings the protocol wants now.
	Plan(now time.Time) Plan
	// Rang reports a doorbell written for targets, or why not.
	Rang(now time.Time, targets []uint64, err error)
	// Payload returns the message part of our next sector write, and
	// whether it must be written now rather than at the next renewal.
	Payload(now time.Time) (p Payload, urgent bool)
	// Written reports the outcome of writing the payload last returned.
	Written(now time.Time, err error)
	// Tick is called instead of Observe when a turn read nothing (or its
	// read failed), so that the protocol's timeouts still run.
	Tick(now time.Time)
}

// Inheritor is implemented by a Messenger that carries state over from
// our previous incarnation in the lockspace. The acquire then keeps the
// ack table of the sector it takes over (Acquirer.CarryAcks), and Inherit
// is called once, before Joined, with that sector as the acquire's first
// read found it (its Ext is nil unless it was ours and intact).
type Inheritor interface {
	Inherit(prev leader.Sector)
}

// Plan is what the Messenger wants done between renewals, besides writing
// our sector (hostmsg.Plan has the same fields and meaning).
type Plan struct {
	// Read lists host ids whose sectors to read now (ascending). The loop
	// merges nearby ones into one read and does big ones within its read
	// budget.
	Read []uint64
	// Scan asks for one read of the whole used part of the area, done
	// when the read budget allows or at the next renewal.
	Scan bool
	// Ring lists the targets whose doorbells to ring now (ascending).
	Ring []uint64
	// Next is when the plan asks for something new by itself; zero if
	// never.
	Next time.Time
	// Fast asks for doorbell polls five times as often (at least 50 ms
	// apart): messages are flowing, the next one is likely soon.
	Fast bool
}

// Payload is the message part of our own sector: the event fields, the
// bitmap and the extension.
type Payload struct {
	WriteID, WriteGeneration, WriteTimestamp uint64
	Bitmap                                   leader.Bitmap
	Ext                                      *leader.Extension
}

// View is one read of host sectors, as shown to the Messenger.
type View struct {
	// IDs holds the host id of each sector, ascending.
	IDs     []uint64
	Sectors []leader.Sector
	// States holds each sector's host state, computed after the read.
	States []HostState
	// Bad holds, per sector, the leader check error (magic, version,
	// name, checksum) or nil. A sector with a Bad error must not be acted
	// on.
	Bad []error
	// Area reports a read of the whole used part of the area (or more): a
	// renewal read or a scan. Full reports a read of the whole area.
	Area, Full bool
}

// Lockspace is a held host id in a lockspace, renewed by a loop goroutine
// until Release or Close (or, for a Lockspace made by Start, by its
// caller's calls to Step). Its methods are safe for concurrent use.
type Lockspace struct {
	cfg  Config
	area *Area
	t    Timeouts
	log  *slog.Logger
	clk  clock.Clock
	msgr Messenger

	tsBase uint64
	t0     time.Time

	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	// Owned by the goroutine that calls Step (the loop's, or Start's
	// caller).
	acq      *acquiring // non-nil while acquiring
	lp       loopState
	ringWarn map[int]bool // doorbells whose refusal was logged
	sbuf     []byte       // the loop's sector buffer (readSector)

	mu          sync.Mutex // guards everything below
	joined      bool
	running     bool // a loop goroutine calls Step
	hosts       *Hosts
	last        leader.Record // last record written
	lastAcks    []leader.Ack  // ack table of the last sector written
	lastWriteOK bool
	lastRenewal time.Time // start of the last successful renewal
	joinedAt    time.Time
	renewals    int64
	renewFails  int64
	polls       int64
	fullScans   int64
	writes      int64
	bell        DoorbellStats
	warned      bool
	err         error // why the loop ended
	closed      bool
	pollEvery   time.Duration
	wWarned     map[uint64]uint16 // per host id, the other W last warned about
}

// acquiring is the state of an acquire driven by Step.
type acquiring struct {
	a          *Acquirer
	step       Step
	writeStart time.Time
	logged     bool // the current wait was logged
}

// Join acquires cfg.HostID in the lockspace on o and starts renewing it. It
// blocks for the whole acquire (ShortDelay on a free sector; AcquireWait
// more if the sector was held by another host), logging every wait, and
// gives up when ctx ends.
func Join(ctx context.Context, o *IO, cfg Config) (*Lockspace, error) {
	ls, err := Start(ctx, o, cfg)
	if err != nil {
		return nil, err
	}
	for !ls.Joined() {
		next, err := ls.Step(ctx)
		if err != nil {
			return nil, err
		}
		if ls.Joined() {
			break
		}
		if err := sleepUntil(ctx, ls.clk, next); err != nil {
			return nil, fmt.Errorf("delta: join %s host_id %d: %w", ls.cfg.Name, ls.cfg.HostID, err)
		}
	}
	ls.mu.Lock()
	ls.running = true
	ls.mu.Unlock()
	go ls.run()
	return ls, nil
}

// Start checks cfg and probes the area on o, and returns a Lockspace that
// its caller drives: each call to Step does what is due (the acquire's
// reads and writes, then renewals, doorbell polls, planned reads, message
// writes and rings) and says when to call again. No goroutine runs and
// nothing sleeps, so a deterministic simulation can step any number of
// hosts on one fake clock and one device. Join is Start plus a goroutine
// that sleeps between Steps; the daemon uses Join. Wake does nothing for a
// Lockspace driven by its caller: call Step.
func Start(ctx context.Context, o *IO, cfg Config) (*Lockspace, error) {
	cfg = cfg.withDefaults()
	if _, err := ioSeconds(cfg.IOTimeout); err != nil {
		return nil, err
	}
	if len(cfg.HostName) > leader.MaxHostName {
		return nil, fmt.Errorf("%w: host name %q is %d bytes, at most %d", leader.ErrNameTooLong, cfg.HostName, len(cfg.HostName), leader.MaxHostName)
	}
	t := NewTimeouts(cfg.IOTimeout, cfg.WatchdogTimeout)
	area, err := Probe(ctx, o, cfg.Offset, cfg.Name, t.IO)
	if err != nil {
		return nil, err
	}
	if err := area.Geo.CheckHostID(cfg.HostID); err != nil {
		return nil, fmt.Errorf("delta: join %s: %w", cfg.Name, err)
	}
	ls := &Lockspace{
		cfg: cfg, area: area, t: t, clk: cfg.Clock, msgr: cfg.Messenger,
		log:  cfg.Logger.With("lockspace", cfg.Name, "host_id", cfg.HostID),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		hosts: NewHosts(cfg.HostID, cfg.Name, t),
	}
	ls.bell.Index = area.Geo.DoorbellIndex(cfg.HostID)
	ls.t0 = ls.clk.Now()
	ls.tsBase = cfg.TimestampBase
	if ls.tsBase == 0 {
		ls.tsBase = monotonicSeconds()
	}
	_, carry := ls.msgr.(Inheritor)
	a := &Acquirer{Name: cfg.Name, HostID: cfg.HostID, HostName: cfg.HostName, Timeouts: t,
		Timestamp: ls.timestamp, Ext: ls.emptyExt(), CarryAcks: carry}
	ls.acq = &acquiring{a: a, step: a.Start(ls.clk.Now())}
	return ls, nil
}

// Joined reports whether the host id is acquired (the loop is renewing
// it, or was until it stopped).
func (ls *Lockspace) Joined() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.joined
}

func monotonicSeconds() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil || ts.Sec < 1 {
		return 1
	}
	return uint64(ts.Sec)
}

// timestamp converts local time to the on-disk timestamp: monotonic
// seconds, never 0.
func (ls *Lockspace) timestamp(now time.Time) uint64 {
	return ls.tsBase + uint64(max(now.Sub(ls.t0), 0)/time.Second)
}

// sleepUntil waits on the clock until t, or until ctx ends.
func sleepUntil(ctx context.Context, clk clock.Clock, t time.Time) error {
	d := t.Sub(clk.Now())
	if d <= 0 {
		return ctx.Err()
	}
	ch := make(chan struct{})
	stop := clk.AfterFunc(d, func() { close(ch) })
	defer stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stepAcquire drives the Acquirer with real I/O until it waits, succeeds
// or fails.
func (ls *Lockspace) stepAcquire(ctx context.Context) (time.Time, error) {
	q := ls.acq
	off := ls.area.HostOffset(ls.cfg.HostID)
	ss := ls.area.Geo.SectorSize
	for {
		var data []byte
		var err error
		switch q.step.Kind {
		case StepRead:
			data, err = ls.area.IO.Read(ctx, off, ss, ls.t.IO)
		case StepWrite:
			q.writeStart = ls.clk.Now()
			err = ls.area.IO.Write(ctx, off, q.step.Sector, ls.t.IO)
		case StepWait:
			now := ls.clk.Now()
			if now.Before(q.step.Until) {
				if !q.logged {
					q.logged = true
					ls.log.Info("acquire: waiting", "reason", q.step.Why, "until", q.step.Until.Sub(now).Round(time.Millisecond))
					if ls.cfg.OnAcquireWait != nil {
						ls.cfg.OnAcquireWait(q.step.Why, q.step.Until)
					}
				}
				return q.step.Until, ctx.Err()
			}
			q.logged = false
		case StepDone:
			ls.joinDone(q.step.Record, q.writeStart, q.a.Previous())
			return ls.clk.Now(), nil
		case StepFail:
			return time.Time{}, fmt.Errorf("delta: join %s: %w", ls.cfg.Name, q.step.Err)
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("delta: join %s host_id %d: %w", ls.cfg.Name, ls.cfg.HostID, ctx.Err())
		}
		q.step = q.a.Next(ls.clk.Now(), data, err)
	}
}

// joinDone takes the lease acquired with rec, whose write started at
// start (its first renewal), and readies the loop; prev is our sector as
// the acquire first found it.
func (ls *Lockspace) joinDone(rec leader.Record, start time.Time, prev leader.Sector) {
	now := ls.clk.Now()
	ls.acq = nil
	inh, carry := ls.msgr.(Inheritor)
	ls.mu.Lock()
	ls.last, ls.lastWriteOK, ls.lastRenewal, ls.joinedAt, ls.joined = rec, true, start, now, true
	if carry && prev.Ext != nil {
		ls.lastAcks = prev.Ext.Acks
	}
	ls.mu.Unlock()
	if carry {
		inh.Inherit(prev)
	}
	ls.lp = loopState{nextRenewal: start.Add(ls.t.RenewalInterval()), full: true, first: true}
	ls.log.Info("joined lockspace", "generation", rec.OwnerGeneration, "host_name", ls.cfg.HostName,
		"io_timeout", ls.t.IO, "sector_size", ls.area.Geo.SectorSize, "align", leader.AlignString(ls.area.Geo.AlignSize),
		"took", now.Sub(ls.t0))
	if ls.msgr != nil {
		ls.msgr.Joined(ls.cfg.HostID, rec.OwnerGeneration, ls.area.Geo)
	}
	ls.renewalEvent(true, nil)
}

// Area returns the lockspace area.
func (ls *Lockspace) Area() *Area { return ls.area }

// Timeouts returns our timeouts.
func (ls *Lockspace) Timeouts() Timeouts { return ls.t }

// HostID returns our host id.
func (ls *Lockspace) HostID() uint64 { return ls.cfg.HostID }

// Name returns the lockspace name.
func (ls *Lockspace) Name() string { return ls.cfg.Name }

// Generation returns our owner_generation.
func (ls *Lockspace) Generation() uint64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.last.OwnerGeneration
}

// Wake makes the loop poll (and write, if the Messenger asks) now instead
// of at its next scheduled time.
func (ls *Lockspace) Wake() {
	select {
	case ls.wake <- struct{}{}:
	default:
	}
}

// Done is closed when the loop has stopped: after Close or Release, or
// when the lockspace failed (see Err).
func (ls *Lockspace) Done() <-chan struct{} { return ls.done }

// Err returns why the loop stopped: nil after Close or Release,
// ErrRenewalFailed, ErrRenewOwner or ErrRenewDiff (wrapped) on failure.
func (ls *Lockspace) Err() error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.err
}

// Close stops renewing without releasing the lease, as a crash would: peers
// see the host FAIL and then DEAD. It is idempotent and waits for the loop.
func (ls *Lockspace) Close() {
	ls.mu.Lock()
	if !ls.closed {
		ls.closed = true
		close(ls.stop)
		if !ls.running {
			// Driven by Step: no loop goroutine to close done.
			close(ls.done)
		}
	}
	ls.mu.Unlock()
	<-ls.done
}

// Release stops the loop and releases the lease: our sector is rewritten
// with timestamp 0 (owner and generation kept, bitmap and extension
// cleared), so peers see the host id FREE at once. As sanlock, it refuses
// unless the last write of the sector succeeded.
func (ls *Lockspace) Release(ctx context.Context) error {
	ls.Close()
	ls.mu.Lock()
	rec, ok, lerr, acks := ls.last, ls.lastWriteOK, ls.err, ls.lastAcks
	ls.mu.Unlock()
	if !ok || lerr != nil {
		return fmt.Errorf("delta: release %s host_id %d: last renewal did not succeed (%v); the lease will expire instead",
			ls.cfg.Name, ls.cfg.HostID, lerr)
	}
	if n := ls.area.IO.StuckWritesIn(ls.area.HostOffset(ls.cfg.HostID), ls.area.Geo.SectorSize); n > 0 {
		return fmt.Errorf("delta: release %s host_id %d: %d earlier write(s) still outstanding; the lease will expire instead",
			ls.cfg.Name, ls.cfg.HostID, n)
	}
	rec.Timestamp = 0
	// The extension stays (without a message): the sector is still ours,
	// and a later join of this host reads its ack table.
	ext := ls.emptyExt()
	ext.Acks = acks
	s := leader.Sector{Record: rec, Ext: ext}
	s.Seal()
	buf := make([]byte, ls.area.Geo.SectorSize)
	if err := s.Encode(buf); err != nil {
		return err
	}
	if err := ls.area.IO.Write(ctx, ls.area.HostOffset(ls.cfg.HostID), buf, ls.t.IO); err != nil {
		return fmt.Errorf("delta: release %s host_id %d: %w", ls.cfg.Name, ls.cfg.HostID, err)
	}
	ls.log.Info("released lockspace", "generation", rec.OwnerGeneration)
	return nil
}

func (ls *Lockspace) fail(err error) {
	ls.mu.Lock()
	ls.err = err
	ls.mu.Unlock()
	ls.log.Error("lockspace failed: no more writes; the watchdog will reset this host unless it is removed cleanly",
		"err", err)
}

func (ls *Lockspace) renewalEvent(ok bool, err error) {
	if ls.cfg.OnRenewal == nil {
		return
	}
	ls.mu.Lock()
	ev := RenewalEvent{Name: ls.cfg.Name, OK: ok, Err: err, LastSuccess: ls.lastRenewal,
		Expiry: ls.lastRenewal.Add(ls.t.RenewalFail())}
	ls.mu.Unlock()
	ls.cfg.OnRenewal(ev)
}

type peerW struct {
	id uint64
	w  uint16
}

// otherWatchdogs returns the peers among sectors secs (of host ids ids)
// whose sector states a W other than ours, once per peer and value.
// Callers hold mu.
func (ls *Lockspace) otherWatchdogs(ids []uint64, secs []leader.Sector) []peerW {
	var out []peerW
	ours := ls.watchdogSeconds()
	for i := range secs {
		id := ids[i]
		e := secs[i].Ext
		if id == ls.cfg.HostID || e == nil || e.Watchdog == 0 || e.Watchdog == ours || secs[i].Record.Timestamp == 0 {
			continue
		}
		if ls.wWarned == nil {
			ls.wWarned = make(map[uint64]uint16)
		}
		if ls.wWarned[id] != e.Watchdog {
			ls.wWarned[id] = e.Watchdog
			out = append(out, peerW{id, e.Watchdog})
		}
	}
	return out
}

// watchdogSeconds is W as our extension carries it: peers use it for our
// host_dead.
func (ls *Lockspace) watchdogSeconds() uint16 {
	return uint16(min(ls.t.Watchdog/time.Second, 0xffff))
}

// emptyExt is our extension without a message or acks.
func (ls *Lockspace) emptyExt() *leader.Extension {
	return &leader.Extension{Version: leader.ExtVersion, Watchdog: ls.watchdogSeconds()}
}

// checkOwn applies sanlock's renewal checks to our sector as just read.
// Callers hold mu.
func (ls *Lockspace) checkOwn(r *leader.Record) error {
	if err := r.Verify(ls.cfg.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrRenewOwner, err)
	}
	if r.OwnerID != ls.last.OwnerID || r.OwnerGeneration != ls.last.OwnerGeneration ||
		r.ResourceName != ls.last.ResourceName {
		return fmt.Errorf("%w: owner %d generation %d name %q, we are %d generation %d",
			ErrRenewOwner, r.OwnerID, r.OwnerGeneration, r.ResourceNameString(), ls.last.OwnerID, ls.last.OwnerGeneration)
	}
	if ls.lastWriteOK && !bytes.Equal(r.Bytes(), ls.last.Bytes()) {
		return fmt.Errorf("%w: timestamp %d on disk, %d written", ErrRenewDiff, r.Timestamp, ls.last.Timestamp)
	}
	return nil
}
