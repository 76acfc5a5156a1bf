package delta

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
	// PollInterval is the idle message poll: between renewals the loop
	// reads the used part of the area this often (default 250 ms). The
	// loop stretches it so that polls and renewals together never read
	// more than sanlock's renewals would (polls at most half of it).
	// Negative disables polls: only renewals read the area, as in sanlock.
	PollInterval time.Duration
	// FastPollInterval is the poll interval while the Messenger is busy
	// (a message in flight or just received; default 50 ms).
	FastPollInterval time.Duration
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
	// OnRenewal, if set, is called from the loop after every renewal
	// attempt; it must not block.
	OnRenewal func(RenewalEvent)
	// OnAcquireWait, if set, is called by Join each time the acquire starts
	// a wait with no I/O (Step.Why and Step.Until), so that a caller can
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

// Defaults of the message poll between renewals (Config.PollInterval and
// Config.FastPollInterval).
const (
	DefaultPollInterval     = 250 * time.Millisecond
	DefaultFastPollInterval = 50 * time.Millisecond
)

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
	if c.FastPollInterval == 0 {
		c.FastPollInterval = DefaultFastPollInterval
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
type Messenger interface {
	// Joined is called once, after the lease is acquired and before the
	// loop starts, with our identity and the area's sector size.
	Joined(hostID, generation uint64, sectorSize int)
	// Observe is called after every successful read of the area with what
	// was read. v and its sectors are only valid during the call.
	Observe(now time.Time, v *View)
	// Payload returns the message part of our next sector write, and
	// whether it must be written now rather than at the next renewal.
	Payload(now time.Time) (p Payload, urgent bool)
	// Written reports the outcome of writing the payload last returned.
	Written(now time.Time, err error)
	// Busy reports whether messages are in flight, so the loop polls at
	// FastPollInterval.
	Busy(now time.Time) bool
	// Tick is called instead of Observe when a read fails, so that the
	// protocol's timeouts still run.
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

// Payload is the message part of our own sector: the event fields, the
// bitmap and the extension.
type Payload struct {
	WriteID, WriteGeneration, WriteTimestamp uint64
	Bitmap                                   leader.Bitmap
	Ext                                      *leader.Extension
}

// View is one read of the area, as shown to the Messenger.
type View struct {
	// First is the host id of Sectors[0]; the read covered host ids
	// First..First+len(Sectors)-1.
	First   uint64
	Sectors []leader.Sector
	// States holds each sector's host state, computed after the read.
	States []HostState
	// Bad holds, per sector, the leader check error (magic, version,
	// name, checksum) or nil. A sector with a Bad error must not be acted
	// on.
	Bad []error
	// Full reports a read of the whole area.
	Full bool
}

// Lockspace is a held host id in a lockspace, renewed by a loop goroutine
// until Release or Close. Its methods are safe for concurrent use.
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

	mu          sync.Mutex // guards everything below
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
	warned      bool
	err         error // why the loop ended
	closed      bool
	pollEvery   time.Duration
	pollHigh    uint64
	wWarned     map[uint64]uint16 // per host id, the other W last warned about
}

// Join acquires cfg.HostID in the lockspace on o and starts renewing it. It
// blocks for the whole acquire (ShortDelay on a free sector; AcquireWait
// more if the sector was held by another host), logging every wait, and
// gives up when ctx ends.
func Join(ctx context.Context, o *IO, cfg Config) (*Lockspace, error) {
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
	ls.t0 = ls.clk.Now()
	ls.tsBase = cfg.TimestampBase
	if ls.tsBase == 0 {
		ls.tsBase = monotonicSeconds()
	}
	rec, start, prev, err := ls.acquire(ctx)
	if err != nil {
		return nil, err
	}
	ls.last, ls.lastWriteOK, ls.lastRenewal, ls.joinedAt = rec, true, start, ls.clk.Now()
	if inh, ok := ls.msgr.(Inheritor); ok {
		if prev.Ext != nil {
			ls.lastAcks = prev.Ext.Acks
		}
		inh.Inherit(prev)
	}
	ls.log.Info("joined lockspace", "generation", rec.OwnerGeneration, "host_name", cfg.HostName,
		"io_timeout", t.IO, "sector_size", area.Geo.SectorSize, "align", leader.AlignString(area.Geo.AlignSize),
		"took", ls.clk.Now().Sub(ls.t0))
	if ls.msgr != nil {
		ls.msgr.Joined(cfg.HostID, rec.OwnerGeneration, area.Geo.SectorSize)
	}
	ls.renewalEvent(true, nil)
	go ls.run()
	return ls, nil
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

// acquire drives an Acquirer with real I/O; it returns the record written,
// when the acquire write started (the lease's first renewal), and our
// sector as the acquire first found it.
func (ls *Lockspace) acquire(ctx context.Context) (leader.Record, time.Time, leader.Sector, error) {
	_, carry := ls.msgr.(Inheritor)
	a := &Acquirer{Name: ls.cfg.Name, HostID: ls.cfg.HostID, HostName: ls.cfg.HostName, Timeouts: ls.t,
		Timestamp: ls.timestamp, Ext: ls.emptyExt(), CarryAcks: carry}
	off := ls.area.HostOffset(ls.cfg.HostID)
	ss := ls.area.Geo.SectorSize
	var writeStart time.Time
	step := a.Start(ls.clk.Now())
	for {
		var data []byte
		var err error
		switch step.Kind {
		case StepRead:
			data, err = ls.area.IO.Read(ctx, off, ss, ls.t.IO)
		case StepWrite:
			writeStart = ls.clk.Now()
			err = ls.area.IO.Write(ctx, off, step.Sector, ls.t.IO)
		case StepWait:
			ls.log.Info("acquire: waiting", "reason", step.Why, "until", step.Until.Sub(ls.clk.Now()).Round(time.Millisecond))
			if ls.cfg.OnAcquireWait != nil {
				ls.cfg.OnAcquireWait(step.Why, step.Until)
			}
			if err := sleepUntil(ctx, ls.clk, step.Until); err != nil {
				return leader.Record{}, time.Time{}, leader.Sector{}, fmt.Errorf("delta: join %s host_id %d: %w", ls.cfg.Name, ls.cfg.HostID, err)
			}
		case StepDone:
			return step.Record, writeStart, a.Previous(), nil
		case StepFail:
			return leader.Record{}, time.Time{}, leader.Sector{}, fmt.Errorf("delta: join %s: %w", ls.cfg.Name, step.Err)
		}
		step = a.Next(ls.clk.Now(), data, err)
	}
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
	if n := ls.area.IO.StuckWrites(); n > 0 {
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

// run is the loop: renewals on sanlock's schedule, message polls between.
func (ls *Lockspace) run() {
	defer close(ls.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ls.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	ls.mu.Lock()
	nextRenewal := ls.lastRenewal.Add(ls.t.RenewalInterval())
	ls.mu.Unlock()
	var lastPoll time.Time
	full := true // the next renewal reads the whole area
	for {
		now := ls.clk.Now()
		ls.mu.Lock()
		since := now.Sub(ls.lastRenewal)
		warn := since >= ls.t.RenewalWarn() && !ls.warned
		if warn {
			ls.warned = true
		}
		ls.mu.Unlock()
		if since >= ls.t.RenewalFail() {
			ls.fail(fmt.Errorf("%w: no successful renewal for %v (limit %v)", ErrRenewalFailed, since.Round(time.Millisecond), ls.t.RenewalFail()))
			ls.renewalEvent(false, ErrRenewalFailed)
			return
		}
		if warn {
			ls.log.Warn("renewal late", "since_last_success", since.Round(time.Millisecond), "fails_at", ls.t.RenewalFail())
		}
		busy := ls.msgr != nil && ls.msgr.Busy(now)
		interval := ls.pollInterval(busy)
		renew := !now.Before(nextRenewal)
		if renew || (interval > 0 && !now.Before(lastPoll.Add(interval))) {
			// Only renewals (and the first read) scan the whole area;
			// polls read the used part.
			ok, err := ls.iterate(ctx, now, renew, (renew && full) || lastPoll.IsZero())
			lastPoll = now
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrRenewOwner) || errors.Is(err, ErrRenewDiff) {
				ls.fail(err)
				ls.renewalEvent(false, err)
				return
			}
			if renew {
				if ok {
					nextRenewal = now.Add(ls.t.RenewalInterval())
					full = false
					ls.mu.Lock()
					ls.renewals++
					ls.warned = false
					if ls.cfg.FullScanEvery > 0 && ls.renewals%int64(ls.cfg.FullScanEvery) == 0 {
						full = true
					}
					ls.mu.Unlock()
				} else {
					// sanlock retries a failed renewal at its next
					// one-second check.
					nextRenewal = now.Add(time.Second)
					ls.mu.Lock()
					ls.renewFails++
					ls.mu.Unlock()
					ls.log.Warn("renewal failed", "err", err)
				}
				ls.renewalEvent(ok, err)
			}
			// Recompute: the read may have changed the range or busyness.
			busy = ls.msgr != nil && ls.msgr.Busy(ls.clk.Now())
			interval = ls.pollInterval(busy)
		}
		next := nextRenewal
		if interval > 0 && lastPoll.Add(interval).Before(next) {
			next = lastPoll.Add(interval)
		}
		// Wake at renewal_fail too, so that failure is declared on time
		// rather than at the next retry or poll.
		ls.mu.Lock()
		failAt := ls.lastRenewal.Add(ls.t.RenewalFail())
		ls.mu.Unlock()
		if failAt.Before(next) {
			next = failAt
		}
		if !ls.waitUntil(next) {
			return
		}
	}
}

// waitUntil sleeps until t, a Wake, or Close; it returns false on Close.
func (ls *Lockspace) waitUntil(t time.Time) bool {
	d := t.Sub(ls.clk.Now())
	if d <= 0 {
		select {
		case <-ls.stop:
			return false
		default:
			return true
		}
	}
	timer := make(chan struct{})
	stop := ls.clk.AfterFunc(d, func() { close(timer) })
	defer stop()
	// The hook runs once the wake-up is scheduled, so a test may advance
	// its fake clock from here on.
	if ls.cfg.waitHook != nil {
		ls.cfg.waitHook(t)
	}
	select {
	case <-timer:
		return true
	case <-ls.wake:
		return true
	case <-ls.stop:
		return false
	}
}

// pollInterval returns the current poll interval: fast while busy, else
// the idle interval stretched so that polls and renewals together read no
// more than sanlock's renewals (the area every RenewalInterval), and polls
// alone at most half of that. 0 means no polls.
func (ls *Lockspace) pollInterval(busy bool) time.Duration {
	if ls.cfg.PollInterval < 0 {
		return 0
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if busy {
		ls.pollEvery = ls.cfg.FastPollInterval
		return ls.pollEvery
	}
	area := float64(ls.area.Geo.AlignSize)
	perPoll := float64(ls.readHigh()) * float64(ls.area.Geo.SectorSize)
	// What our renewals read, on average: the whole area every
	// FullScanEvery-th, the used part otherwise.
	renewal := perPoll
	if n := float64(ls.cfg.FullScanEvery); n > 0 {
		renewal = (float64(ls.area.Geo.MaxHosts*ls.area.Geo.SectorSize) + (n-1)*perPoll) / n
	}
	budget := min(area/2, area-renewal) / ls.t.RenewalInterval().Seconds() // bytes per second
	if budget <= 0 {
		ls.pollEvery = 0
		return 0
	}
	iv := time.Duration(perPoll / budget * float64(time.Second))
	ls.pollEvery = max(ls.cfg.PollInterval, iv)
	return ls.pollEvery
}

// readHigh is the highest host id a partial read covers. Callers hold mu.
func (ls *Lockspace) readHigh() uint64 {
	h := max(ls.hosts.Highest(), ls.cfg.HostID) + uint64(ls.cfg.PollMargin)
	return min(h, uint64(ls.area.Geo.MaxHosts))
}

// iterate does one read of the area and, for a renewal or when the
// Messenger asks, one write of our sector.
func (ls *Lockspace) iterate(ctx context.Context, now time.Time, renew, full bool) (bool, error) {
	ls.mu.Lock()
	last := uint64(ls.area.Geo.MaxHosts)
	if !full {
		last = ls.readHigh()
	}
	ls.mu.Unlock()
	buf, err := ls.area.ReadHosts(ctx, 1, last, ls.t.IO)
	if err != nil {
		if ls.msgr != nil {
			ls.msgr.Tick(ls.clk.Now())
		}
		return false, fmt.Errorf("delta: read hosts 1..%d: %w", last, err)
	}
	secs := ls.area.DecodeHosts(buf)
	readDone := ls.clk.Now()
	v := &View{First: 1, Sectors: secs, States: make([]HostState, len(secs)), Bad: make([]error, len(secs)), Full: full}

	ls.mu.Lock()
	ls.polls++
	if full {
		ls.fullScans++
	}
	for i := range secs {
		id := uint64(i + 1)
		ls.hosts.Observe(readDone, id, &secs[i])
	}
	for i := range secs {
		id := uint64(i + 1)
		v.States[i] = ls.hosts.State(readDone, id)
		v.Bad[i] = ls.hosts.hosts[id].Bad
	}
	own := secs[ls.cfg.HostID-1].Record
	err = ls.checkOwn(&own)
	last0, stuck := ls.last, ls.area.IO.StuckWrites()
	otherW := ls.otherWatchdogs(secs)
	ls.mu.Unlock()
	for _, o := range otherW {
		ls.log.Warn("a peer states another watchdog timeout W than ours; its host_dead uses its own W, but W should be the same on every host",
			"peer", o.id, "peer_w", time.Duration(o.w)*time.Second, "our_w", ls.t.Watchdog)
	}
	if err != nil {
		return false, err
	}
	var p Payload
	urgent := false
	if ls.msgr != nil {
		ls.msgr.Observe(readDone, v)
		p, urgent = ls.msgr.Payload(readDone)
	} else {
		p.Ext = ls.emptyExt()
	}
	if !renew && !urgent {
		return true, nil
	}
	if stuck > 0 {
		err := fmt.Errorf("delta: not writing: %d earlier write(s) of our sector still outstanding", stuck)
		if ls.msgr != nil {
			ls.msgr.Written(ls.clk.Now(), err)
		}
		return false, err
	}
	rec := last0
	// Past what is on disk too: a write that failed may have landed
	// anyway (torn, or late), and peers only notice a change.
	rec.Timestamp = max(ls.timestamp(now), last0.Timestamp+1, own.Timestamp+1)
	rec.IOTimeout = uint16(ls.t.IO/time.Second) & 0xFF
	rec.WriteID, rec.WriteGeneration, rec.WriteTimestamp = p.WriteID, p.WriteGeneration, p.WriteTimestamp
	if p.Ext != nil {
		p.Ext.Watchdog = ls.watchdogSeconds()
	}
	s := leader.Sector{Record: rec, Bitmap: p.Bitmap, Ext: p.Ext}
	s.Seal()
	rec = s.Record
	sec := make([]byte, ls.area.Geo.SectorSize)
	if err := s.Encode(sec); err != nil {
		return false, fmt.Errorf("delta: encode our sector: %w", err)
	}
	werr := ls.area.IO.Write(ctx, ls.area.HostOffset(ls.cfg.HostID), sec, ls.t.IO)
	ls.mu.Lock()
	if werr == nil {
		ls.last, ls.lastWriteOK = rec, true
		ls.lastAcks = nil
		if p.Ext != nil {
			ls.lastAcks = append(ls.lastAcks, p.Ext.Acks...)
		}
		ls.writes++
		if renew {
			ls.lastRenewal = now
		}
	} else {
		ls.lastWriteOK = false
	}
	ls.mu.Unlock()
	if ls.msgr != nil {
		ls.msgr.Written(ls.clk.Now(), werr)
	}
	if werr != nil {
		return false, fmt.Errorf("delta: write our sector: %w", werr)
	}
	return true, nil
}

type peerW struct {
	id uint64
	w  uint16
}

// otherWatchdogs returns the peers whose sector states a W other than
// ours, once per peer and value. Callers hold mu.
func (ls *Lockspace) otherWatchdogs(secs []leader.Sector) []peerW {
	var out []peerW
	ours := ls.watchdogSeconds()
	for i := range secs {
		id := uint64(i + 1)
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
