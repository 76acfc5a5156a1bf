package delta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Doorbells live in the spare sectors after the host records
// (docs/format.md, leader/doorbell.go). The loop reads ours every poll
// interval and rings other hosts' doorbells for the Messenger: a
// read-modify-write of one spare sector. Nothing else here writes outside
// our own host sector, and writeDoorbell refuses (panics on) any offset
// that is not a spare sector.

// DoorbellStats counts the doorbell I/O of a Lockspace.
type DoorbellStats struct {
	// Index is our doorbell's index among the spare sectors.
	Index int
	// Polls counts reads of our doorbell; PollErrors, those that failed.
	Polls, PollErrors int64
	// Bad counts polls that found our doorbell torn or corrupt; Foreign,
	// polls that found something that is not a doorbell (bytes 0..3 not
	// zero). Both are ignored.
	Bad, Foreign int64
	// RingsWritten counts doorbell sectors written (one per ring of one
	// or more targets sharing a doorbell).
	RingsWritten int64
	// RingsRefused counts rings not written because the sector was not a
	// doorbell: it is never written over.
	RingsRefused int64
	// Recreated counts rings written over a torn or corrupt doorbell,
	// with a new epoch.
	Recreated int64
	// RingErrors counts rings whose read or write failed, or that were
	// skipped while an earlier doorbell I/O was still outstanding.
	RingErrors int64
	// TargetedReads and TargetedBytes count the reads of some host
	// sectors between renewals (ringers, awaited targets, our own sector
	// before a message write).
	TargetedReads, TargetedBytes int64
	// Scans counts reads of the whole used area between renewals.
	Scans int64
}

// ErrRingSkipped is passed to Messenger.Rang for a ring not attempted
// because an earlier doorbell I/O timed out and may still be outstanding.
var ErrRingSkipped = errors.New("delta: ring skipped: an earlier doorbell i/o is still outstanding")

// doorbellOffset returns the device offset of doorbell i.
func (a *Area) doorbellOffset(i int) int64 { return a.Offset + a.Geo.DoorbellOffset(i) }

// spareRange returns the device offset and length of the spare sectors.
func (a *Area) spareRange() (int64, int) {
	return a.Offset + int64(a.Geo.MaxHosts*a.Geo.SectorSize), a.Geo.Spare() * a.Geo.SectorSize
}

// pollDoorbell reads our doorbell and hands it to the Messenger.
func (ls *Lockspace) pollDoorbell(ctx context.Context) {
	g := ls.area.Geo
	idx := g.DoorbellIndex(ls.cfg.HostID)
	buf, err := ls.readSector(ctx, ls.area.doorbellOffset(idx))
	ls.mu.Lock()
	ls.bell.Index = idx
	ls.bell.Polls++
	if err != nil {
		ls.bell.PollErrors++
		ls.mu.Unlock()
		return
	}
	db, derr := leader.DecodeDoorbell(buf)
	switch {
	case errors.Is(derr, leader.ErrNotDoorbell):
		ls.bell.Foreign++
	case derr != nil:
		ls.bell.Bad++
	}
	ls.mu.Unlock()
	if ls.msgr == nil {
		return
	}
	if derr != nil {
		ls.msgr.Doorbell(ls.clk.Now(), ls.pollEvery, nil, derr)
		return
	}
	ls.msgr.Doorbell(ls.clk.Now(), ls.pollEvery, &db, nil)
}

// ring rings the doorbells of targets: one read-modify-write per doorbell,
// with every target it holds in the mask, reported to the Messenger.
func (ls *Lockspace) ring(ctx context.Context, targets []uint64) {
	if len(targets) == 0 || ls.cfg.PollInterval < 0 {
		return
	}
	g := ls.area.Geo
	byBell := map[int][]uint64{}
	for _, t := range targets {
		if g.CheckHostID(t) != nil || t == ls.cfg.HostID {
			continue
		}
		i := g.DoorbellIndex(t)
		byBell[i] = append(byBell[i], t)
	}
	spareOff, spareLen := ls.area.spareRange()
	for _, i := range sortedKeys(byBell) {
		ts := byBell[i]
		var err error
		if ls.area.IO.StuckIn(spareOff, spareLen) > 0 {
			// A late doorbell write would land an older ring over newer
			// ones, and stuck I/Os count against the device's limit:
			// no ring until it returns.
			err = ErrRingSkipped
		} else {
			err = ls.ringOne(ctx, i, ts)
		}
		ls.mu.Lock()
		switch {
		case err == nil:
			ls.bell.RingsWritten++
		case errors.Is(err, leader.ErrNotDoorbell):
			ls.bell.RingsRefused++
		default:
			ls.bell.RingErrors++
		}
		ls.mu.Unlock()
		if ls.msgr != nil {
			ls.msgr.Rang(ls.clk.Now(), ts, err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// ringOne adds our ring for targets (all at doorbell i) to doorbell i.
func (ls *Lockspace) ringOne(ctx context.Context, i int, targets []uint64) error {
	g := ls.area.Geo
	var mask uint64
	for _, t := range targets {
		mask |= 1 << uint(g.DoorbellSlot(t))
	}
	off := ls.area.doorbellOffset(i)
	buf, err := ls.area.IO.Read(ctx, off, g.SectorSize, ls.t.IO)
	if err != nil {
		return fmt.Errorf("delta: ring %v: read doorbell %d: %w", targets, i, err)
	}
	db, derr := leader.DecodeDoorbell(buf)
	if errors.Is(derr, leader.ErrNotDoorbell) {
		if ls.ringWarn == nil {
			ls.ringWarn = map[int]bool{}
		}
		if !ls.ringWarn[i] {
			ls.ringWarn[i] = true
			ls.log.Warn("not ringing: the doorbell sector holds something else; it is never written over (messages still arrive at renewals)",
				"doorbell", i, "offset", off, "err", derr)
		}
		return fmt.Errorf("delta: ring %v: %w", targets, derr)
	}
	ls.mu.Lock()
	gen := ls.last.OwnerGeneration
	ls.mu.Unlock()
	epoch := uint32(0)
	if derr != nil {
		// Torn or corrupt: start it again with a new epoch, so its owner
		// does not take the new counter for the old one.
		db = leader.Doorbell{}
		epoch = ls.newEpoch()
		ls.mu.Lock()
		ls.bell.Recreated++
		ls.mu.Unlock()
		ls.log.Info("recreating a torn or corrupt doorbell", "doorbell", i, "err", derr)
	} else if db.Epoch == 0 {
		epoch = ls.newEpoch()
	}
	db.Add(ls.cfg.HostID, uint16(gen), mask, epoch, leader.DoorbellCapacity(g.SectorSize))
	if err := db.Encode(buf); err != nil {
		return fmt.Errorf("delta: ring %v: %w", targets, err)
	}
	if err := ls.writeDoorbell(ctx, i, buf); err != nil {
		return fmt.Errorf("delta: ring %v: write doorbell %d: %w", targets, i, err)
	}
	return nil
}

// writeDoorbell writes doorbell i. The offset must be a spare sector of
// our area: anything else is a bug that would overwrite a host's lease,
// and panics before any I/O.
func (ls *Lockspace) writeDoorbell(ctx context.Context, i int, buf []byte) error {
	off := ls.area.doorbellOffset(i)
	spareOff, spareLen := ls.area.spareRange()
	ss := ls.area.Geo.SectorSize
	if i < 0 || off < spareOff || off+int64(ss) > spareOff+int64(spareLen) || len(buf) != ss || buf[0]|buf[1]|buf[2]|buf[3] != 0 {
		panic(fmt.Sprintf("delta: doorbell write of %d bytes at offset %d is outside the spare sectors [%d, %d) or not a doorbell",
			len(buf), off, spareOff, spareOff+int64(spareLen)))
	}
	return ls.area.IO.Write(ctx, off, buf, ls.t.IO)
}

// newEpoch returns a random non-zero doorbell epoch from Config.Rand.
func (ls *Lockspace) newEpoch() uint32 {
	var b [4]byte
	for {
		if _, err := io.ReadFull(ls.cfg.Rand, b[:]); err != nil {
			// Only a broken source gets here; any non-zero value works,
			// the epoch only has to differ from the last one.
			return uint32(ls.clk.Now().UnixNano()) | 1
		}
		if e := binary.LittleEndian.Uint32(b[:]); e != 0 {
			return e
		}
	}
}
