package delta

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// The loop (docs/design-notes.md, "I/O budget"): renewals on sanlock's
// schedule, each reading the used part of the area (host ids 1..highest
// joined + PollMargin; the whole area every FullScanEvery-th), and between
// them, for the Messenger: a read of our doorbell every poll interval, the
// reads its Plan asks for, a write of our sector when it has something to
// say, and rings.
//
// Reads are budgeted against sanlock's, which reads the whole area (A
// bytes) every renewal interval. What our renewals leave of that funds the
// doorbell polls first (one sector each: the poll interval stretches past
// DefaultPollInterval only on a crowded area), then a bucket of at most one
// used-area read, from which scans and big planned reads draw. Small
// planned reads (a few sectors per ringer or awaited target, on the
// Messenger's backoff schedule) are the allowance the protocol needs while
// messages are in flight.

// Limits of planned reads (not renewals, not scans).
const (
	// mergeGap: planned host ids at most this many sectors apart are read
	// in one I/O, the sectors between included.
	mergeGap = 4
	// maxRuns is the most planned read I/Os per turn; the rest wait for
	// the next turn, minTurn later.
	maxRuns = 8
	// minTurn is the shortest wait between two turns that have planned
	// I/O left over.
	minTurn = 20 * time.Millisecond
	// minFastPoll bounds the doorbell poll while Plan.Fast: every P/5,
	// but not more often than this.
	minFastPoll = 50 * time.Millisecond
)

// loopState is the loop's schedule, owned by the goroutine calling Step.
type loopState struct {
	nextRenewal time.Time
	nextPoll    time.Time // next doorbell poll; zero: at the first turn
	lastPoll    time.Time // last doorbell poll
	full        bool      // the next renewal reads the whole area
	first       bool      // nothing read since the join: read the whole area
	// holdReads delays planned reads: the budget cannot pay for them yet,
	// or the last one failed.
	holdReads time.Time
	bucket    readBucket
	// fast are the peers whose sectors must be read more often than our
	// renewals for their states to stay right (Hosts.Fast), as of the last
	// area read.
	fast []uint64
}

// readBucket is the read budget for scans and big planned reads: it fills
// at rate bytes per second, up to capacity.
type readBucket struct {
	level, rate, capacity float64
	at                    time.Time
}

func (b *readBucket) refill(now time.Time, rate, capacity float64) {
	if !b.at.IsZero() && now.After(b.at) {
		b.level += b.rate * now.Sub(b.at).Seconds()
	}
	b.at, b.rate, b.capacity = now, rate, capacity
	b.level = min(b.level, capacity)
}

// take spends n bytes if the bucket holds them.
func (b *readBucket) take(n float64) bool {
	if b.level < n {
		return false
	}
	b.level -= n
	return true
}

// when returns when the bucket will hold n bytes (zero if never).
func (b *readBucket) when(n float64) time.Time {
	if b.level >= n {
		return b.at
	}
	if b.rate <= 0 || n > b.capacity {
		return time.Time{}
	}
	return b.at.Add(time.Duration(math.Ceil((n - b.level) / b.rate * float64(time.Second))))
}

// run is the loop goroutine of a joined Lockspace: Step, then sleep until
// it asks, a Wake, or Close.
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
	for {
		next, err := ls.Step(ctx)
		if err != nil || ctx.Err() != nil {
			return
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

// ErrStopped is what Step returns once the Lockspace was closed or
// released.
var ErrStopped = errors.New("delta: lockspace stopped")

// Step does what is due at the clock's current time and returns when it
// wants to be called again: later than now, except once, right after the
// acquire, when the first turn is due at once. While acquiring it does the acquire's I/O
// (Joined says when that is over); then each call is one turn of the loop:
// a renewal if due, a doorbell poll if due, the Messenger's planned reads,
// a write of our sector if the Messenger asks, and rings. It returns an
// error once the lockspace failed (Err), was closed (ErrStopped), or the
// acquire failed. Calls must not overlap; Join's loop goroutine makes them,
// or the caller of Start does.
func (ls *Lockspace) Step(ctx context.Context) (time.Time, error) {
	ls.mu.Lock()
	err, closed := ls.err, ls.closed
	ls.mu.Unlock()
	switch {
	case err != nil:
		return time.Time{}, err
	case closed:
		return time.Time{}, ErrStopped
	case ls.acq != nil:
		return ls.stepAcquire(ctx)
	}
	now := ls.clk.Now()
	ls.mu.Lock()
	since := now.Sub(ls.lastRenewal)
	warn := since >= ls.t.RenewalWarn() && !ls.warned
	if warn {
		ls.warned = true
	}
	ls.mu.Unlock()
	if since >= ls.t.RenewalFail() {
		err := fmt.Errorf("%w: no successful renewal for %v (limit %v)", ErrRenewalFailed, since.Round(time.Millisecond), ls.t.RenewalFail())
		ls.fail(err)
		ls.renewalEvent(false, ErrRenewalFailed)
		return time.Time{}, err
	}
	if warn {
		ls.log.Warn("renewal late", "since_last_success", since.Round(time.Millisecond), "fails_at", ls.t.RenewalFail())
	}
	lp := &ls.lp
	poll, scanRate, used := ls.budget()
	lp.bucket.refill(now, scanRate, float64(used))
	renew := !now.Before(lp.nextRenewal)
	doPoll := poll > 0 && !now.Before(lp.nextPoll)
	if renew || poll > 0 {
		ok, err := ls.turn(ctx, now, renew, doPoll)
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if errors.Is(err, ErrRenewOwner) || errors.Is(err, ErrRenewDiff) {
			ls.fail(err)
			ls.renewalEvent(false, err)
			return time.Time{}, err
		}
		if renew {
			ls.renewed(now, ok, err)
		}
	}
	return ls.nextWake(now, poll), nil
}

// renewed updates the schedule after a renewal attempt.
func (ls *Lockspace) renewed(now time.Time, ok bool, err error) {
	lp := &ls.lp
	if ok {
		lp.nextRenewal = now.Add(ls.t.RenewalInterval())
		lp.full = false
		ls.mu.Lock()
		ls.renewals++
		ls.warned = false
		if ls.cfg.FullScanEvery > 0 && ls.renewals%int64(ls.cfg.FullScanEvery) == 0 {
			lp.full = true
		}
		ls.mu.Unlock()
	} else {
		// sanlock retries a failed renewal at its next one-second check.
		lp.nextRenewal = now.Add(time.Second)
		ls.mu.Lock()
		ls.renewFails++
		ls.mu.Unlock()
		ls.log.Warn("renewal failed", "err", err)
	}
	ls.renewalEvent(ok, err)
}

// nextWake returns when the loop must run next: the next renewal, doorbell
// poll or planned I/O, or renewal_fail, whichever comes first.
func (ls *Lockspace) nextWake(now time.Time, poll time.Duration) time.Time {
	lp := &ls.lp
	next := lp.nextRenewal
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	if poll > 0 {
		p := ls.plan(now)
		if fast := latest(lp.lastPoll.Add(max(poll/5, minFastPoll)), now.Add(minTurn)); p.Fast && fast.Before(lp.nextPoll) {
			// Messages flow: poll the doorbell five times as often, a few
			// more sectors per idle poll while it lasts.
			lp.nextPoll = fast
		}
		earlier(lp.nextPoll)
		if !p.Next.IsZero() || len(p.Read) > 0 || len(p.Ring) > 0 || p.Scan {
			if len(p.Read) > 0 || len(p.Ring) > 0 {
				// Left over from this turn (too many runs, no budget, a
				// failed read): not before minTurn, nor before the hold.
				earlier(latest(now.Add(minTurn), lp.holdReads))
			}
			if !p.Next.IsZero() {
				earlier(latest(p.Next, lp.holdReads, now.Add(minTurn)))
			}
			if t := lp.bucket.when(lp.bucket.capacity); p.Scan && !t.IsZero() {
				// Not never: the next renewal reads the used area anyway.
				earlier(latest(t, lp.holdReads, now.Add(minTurn)))
			}
		}
	}
	// Wake at renewal_fail too, so that failure is declared on time
	// rather than at the next retry or poll.
	ls.mu.Lock()
	failAt := ls.lastRenewal.Add(ls.t.RenewalFail())
	ls.mu.Unlock()
	earlier(failAt)
	return next
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// plan returns the Messenger's plan, or none.
func (ls *Lockspace) plan(now time.Time) Plan {
	if ls.msgr == nil {
		return Plan{}
	}
	return ls.msgr.Plan(now)
}

// budget returns the doorbell poll interval (0: no polls), the rate in
// bytes per second that scans and big planned reads may use on top, and
// the size of the used part of the area: what renewals leave of sanlock's
// read rate (the whole area every renewal interval) goes to the polls,
// stretched past PollInterval only if they would not fit, and the rest to
// the bucket.
func (ls *Lockspace) budget() (poll time.Duration, rate float64, used int) {
	g := ls.area.Geo
	ls.mu.Lock()
	defer ls.mu.Unlock()
	used = int(ls.readHigh()) * g.SectorSize
	if ls.cfg.PollInterval < 0 || ls.msgr == nil {
		// Renewals only: nobody between them to read or write for.
		ls.pollEvery = 0
		return 0, 0, used
	}
	ri := ls.t.RenewalInterval().Seconds()
	// What our renewals read per renewal interval, on average: the whole
	// area every FullScanEvery-th, the used part otherwise.
	renewal := float64(used)
	if n := float64(ls.cfg.FullScanEvery); n > 0 {
		renewal = (float64(g.MaxHosts*g.SectorSize) + (n-1)*float64(used)) / n
	}
	left := (float64(g.AlignSize) - renewal) / ri // bytes per second
	ss := float64(g.SectorSize)
	for _, id := range ls.lp.fast {
		// Their liveness reads (staleFast) come first.
		if hi := ls.hosts.hosts[id]; hi != nil {
			left -= ss / (ls.hosts.peer(hi).HostFail() / 2).Seconds()
		}
	}
	if left < ss/ri {
		ls.pollEvery = 0
		return 0, 0, used
	}
	// 2% headroom: a window that catches one poll more than the average
	// still stays below sanlock's reads.
	poll = max(ls.cfg.PollInterval, time.Duration(math.Ceil(ss/(0.98*left)*1000))*time.Millisecond)
	ls.pollEvery = poll
	return poll, max(left-ss/poll.Seconds(), 0), used
}

// readHigh is the highest host id a partial read covers. Callers hold mu.
func (ls *Lockspace) readHigh() uint64 {
	h := max(ls.hosts.Highest(), ls.cfg.HostID) + uint64(ls.cfg.PollMargin)
	return min(h, uint64(ls.area.Geo.MaxHosts))
}

// turn is one turn of the loop; for a renewal it reports whether it
// succeeded.
func (ls *Lockspace) turn(ctx context.Context, now time.Time, renew, poll bool) (bool, error) {
	lp := &ls.lp
	if poll {
		lp.lastPoll, lp.nextPoll = now, now.Add(ls.pollEvery)
		ls.pollDoorbell(ctx)
	}
	plan := ls.plan(now)
	rd, err := ls.turnReads(ctx, now, renew, plan)
	if err != nil {
		if ls.msgr != nil {
			ls.msgr.Tick(ls.clk.Now())
		}
		if renew {
			return false, err
		}
		// A planned read failed: try again at the next poll.
		lp.holdReads = now.Add(ls.pollEvery)
	}
	readDone := ls.clk.Now()
	if rd != nil {
		ls.observe(readDone, rd)
	} else if ls.msgr != nil && err == nil {
		ls.msgr.Tick(readDone)
	}
	ok, werr := ls.maybeWrite(ctx, now, renew, rd)
	if werr != nil {
		return false, werr
	}
	if ls.msgr != nil {
		ls.ring(ctx, ls.msgr.Plan(ls.clk.Now()).Ring)
	}
	return ok, nil
}

// reads is what one turn read.
type reads struct {
	ids        []uint64
	secs       []leader.Sector
	area, full bool
	own        *leader.Record // our sector, if it was read
}

// turnReads does the reads of a turn: the used part (or the whole area)
// for a renewal, the first turn or a scan the budget allows; else the
// Messenger's planned reads, merged into few I/Os. It returns nil if
// nothing was read.
func (ls *Lockspace) turnReads(ctx context.Context, now time.Time, renew bool, plan Plan) (*reads, error) {
	lp := &ls.lp
	ls.mu.Lock()
	high := ls.readHigh()
	ls.mu.Unlock()
	g := ls.area.Geo
	used := float64(int(high) * g.SectorSize)
	switch {
	case renew || lp.first:
		last := high
		full := lp.first || lp.full
		if full {
			last = uint64(g.MaxHosts)
		}
		rd, err := ls.readRange(ctx, 1, last)
		if err != nil {
			return nil, err
		}
		lp.first = false
		rd.area, rd.full = true, full
		ls.mu.Lock()
		ls.polls++
		if full {
			ls.fullScans++
		}
		ls.mu.Unlock()
		return rd, nil
	case plan.Scan && !now.Before(lp.holdReads) && lp.bucket.take(used):
		return ls.scan(ctx, high)
	}
	ids := plan.Read
	if now.Before(lp.holdReads) {
		ids = nil
	}
	if stale := ls.staleFast(now); len(stale) > 0 {
		ids = append(slices.Clone(ids), stale...)
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	runs := mergeRuns(ids, mergeGap)
	if len(runs) > maxRuns {
		runs = runs[:maxRuns]
	}
	bytes := 0
	for _, r := range runs {
		bytes += int(r[1]-r[0]+1) * g.SectorSize
	}
	if float64(bytes) >= used/2 {
		// As big as half the used area: a scan, paid from the budget, or
		// left to the next renewal.
		if !lp.bucket.take(used) {
			lp.holdReads = lp.nextRenewal
			if t := lp.bucket.when(used); !t.IsZero() && t.Before(lp.holdReads) {
				lp.holdReads = t
			}
			return nil, nil
		}
		return ls.scan(ctx, high)
	}
	var out reads
	for _, r := range runs {
		rd, err := ls.readRange(ctx, r[0], r[1])
		if err != nil {
			return nil, err
		}
		ls.mu.Lock()
		ls.bell.TargetedReads++
		ls.bell.TargetedBytes += int64(len(rd.secs) * g.SectorSize)
		ls.mu.Unlock()
		out.ids = append(out.ids, rd.ids...)
		out.secs = append(out.secs, rd.secs...)
		if rd.own != nil {
			out.own = rd.own
		}
	}
	return &out, nil
}

// staleFast returns the fast peers (loopState.fast) not read for half
// their host_fail: read now, they never look FAIL while they renew.
func (ls *Lockspace) staleFast(now time.Time) []uint64 {
	var ids []uint64
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, id := range ls.lp.fast {
		hi := ls.hosts.hosts[id]
		if hi != nil && now.Sub(hi.LastRead) >= ls.hosts.peer(hi).HostFail()/2 {
			ids = append(ids, id)
		}
	}
	return ids
}

// scan reads the used part of the area between renewals.
func (ls *Lockspace) scan(ctx context.Context, high uint64) (*reads, error) {
	rd, err := ls.readRange(ctx, 1, high)
	if err != nil {
		return nil, err
	}
	rd.area = true
	ls.mu.Lock()
	ls.polls++
	ls.bell.Scans++
	ls.mu.Unlock()
	return rd, nil
}

// mergeRuns groups sorted host ids into ranges [first, last], merging ids
// at most gap sectors apart.
func mergeRuns(ids []uint64, gap uint64) [][2]uint64 {
	var runs [][2]uint64
	for _, id := range ids {
		if n := len(runs); n > 0 && id <= runs[n-1][1]+gap+1 {
			runs[n-1][1] = max(runs[n-1][1], id)
			continue
		}
		runs = append(runs, [2]uint64{id, id})
	}
	return runs
}

// MaxReadChunk is the largest read of host sectors the loop does in one
// I/O: a longer range (the used part of a 4096/8M area) is read in chunks
// of this size, one after the other. The bytes read are the same as in one
// I/O, but the daemon's memory does not grow by the area's size (8 MiB at
// 4096/8M) at every full read.
const MaxReadChunk = 1 << 20

// chunkPool holds MaxReadChunk-sized aligned buffers for readRange, shared
// by every lockspace of the process: one joined to many lockspaces does
// not keep a buffer per lockspace, and an idle one keeps none (a Pool
// empties itself across garbage collections).
var chunkPool = sync.Pool{New: func() any {
	b := AlignedBuffer(MaxReadChunk)
	return &b
}}

// readSector reads one sector at off into the loop's own sector buffer,
// which it returns: valid until the loop's next readSector. A buffer whose
// read failed is dropped, not used again: a read that timed out may still
// be filling it.
func (ls *Lockspace) readSector(ctx context.Context, off int64) ([]byte, error) {
	buf := ls.sbuf
	if buf == nil {
		buf = AlignedBuffer(ls.area.Geo.SectorSize)
	}
	ls.sbuf = nil
	if err := ls.area.IO.ReadInto(ctx, buf, off, ls.t.IO); err != nil {
		return nil, err
	}
	ls.sbuf = buf
	return buf, nil
}

// readRange reads and decodes host sectors first..last.
func (ls *Lockspace) readRange(ctx context.Context, first, last uint64) (*reads, error) {
	g := ls.area.Geo
	per := uint64(max(MaxReadChunk/g.SectorSize, 1))
	rd := &reads{secs: make([]leader.Sector, 0, last-first+1)}
	bp := chunkPool.Get().(*[]byte)
	for lo := first; lo <= last; lo += per {
		hi := min(lo+per-1, last)
		buf := (*bp)[:int(hi-lo+1)*g.SectorSize]
		if err := ls.area.IO.ReadInto(ctx, buf, ls.area.HostOffset(lo), ls.t.IO); err != nil {
			// The buffer is dropped: a read that timed out may still fill it.
			return nil, fmt.Errorf("delta: read hosts %d..%d: %w", first, last, err)
		}
		rd.secs = append(rd.secs, ls.area.DecodeHosts(buf)...)
	}
	chunkPool.Put(bp)
	rd.ids = make([]uint64, len(rd.secs))
	for i := range rd.secs {
		rd.ids[i] = first + uint64(i)
		if rd.ids[i] == ls.cfg.HostID {
			rd.own = &rd.secs[i].Record
		}
	}
	return rd, nil
}

// observe records what a turn read in the host table and shows it to the
// Messenger.
func (ls *Lockspace) observe(readDone time.Time, rd *reads) {
	v := &View{IDs: rd.ids, Sectors: rd.secs, States: make([]HostState, len(rd.secs)), Bad: make([]error, len(rd.secs)),
		Area: rd.area, Full: rd.full}
	ls.mu.Lock()
	for i, id := range rd.ids {
		ls.hosts.Observe(readDone, id, &rd.secs[i])
	}
	for i, id := range rd.ids {
		v.States[i] = ls.hosts.State(readDone, id)
		v.Bad[i] = ls.hosts.hosts[id].Bad
	}
	if rd.area {
		ls.lp.fast = ls.hosts.Fast(ls.t.RenewalInterval())
	}
	otherW := ls.otherWatchdogs(rd.ids, rd.secs)
	ls.mu.Unlock()
	for _, o := range otherW {
		ls.log.Warn("a peer states another watchdog timeout W than ours; its host_dead uses its own W, but W should be the same on every host",
			"peer", o.id, "peer_w", time.Duration(o.w)*time.Second, "our_w", ls.t.Watchdog)
	}
	if ls.msgr != nil {
		ls.msgr.Observe(readDone, v)
	}
}

// maybeWrite writes our sector if a renewal is due or the Messenger asks,
// after checking it as just read (reading it first if the turn did not),
// as a renewal does. It reports whether the write happened and succeeded.
func (ls *Lockspace) maybeWrite(ctx context.Context, now time.Time, renew bool, rd *reads) (bool, error) {
	var p Payload
	urgent := false
	if ls.msgr != nil {
		p, urgent = ls.msgr.Payload(ls.clk.Now())
	} else {
		p.Ext = ls.emptyExt()
	}
	if !renew && !urgent {
		return true, nil
	}
	written := func(err error) {
		if ls.msgr != nil {
			ls.msgr.Written(ls.clk.Now(), err)
		}
	}
	var own *leader.Record
	if rd != nil {
		own = rd.own
	}
	if own == nil {
		o, err := ls.readRange(ctx, ls.cfg.HostID, ls.cfg.HostID)
		if err != nil {
			written(err)
			return false, err
		}
		ls.mu.Lock()
		ls.bell.TargetedReads++
		ls.bell.TargetedBytes += int64(ls.area.Geo.SectorSize)
		ls.mu.Unlock()
		own = o.own
	}
	ownOff := ls.area.HostOffset(ls.cfg.HostID)
	ls.mu.Lock()
	err := ls.checkOwn(own)
	last0, stuck := ls.last, ls.area.IO.StuckWritesIn(ownOff, ls.area.Geo.SectorSize)
	ls.mu.Unlock()
	if err != nil {
		return false, err
	}
	if stuck > 0 {
		err := fmt.Errorf("delta: not writing: %d earlier write(s) of our sector still outstanding", stuck)
		written(err)
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
	werr := ls.area.IO.Write(ctx, ownOff, sec, ls.t.IO)
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
	written(werr)
	if werr != nil {
		return false, fmt.Errorf("delta: write our sector: %w", werr)
	}
	return true, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
