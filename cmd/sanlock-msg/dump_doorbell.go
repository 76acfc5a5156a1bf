package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Doorbell statuses in dump.
const (
	doorbellEmpty   = "empty"        // all zero: never rung since init
	doorbellOK      = "ok"           // a valid doorbell
	doorbellBad     = "bad-doorbell" // torn or corrupt: its owner ignores it, the next ringer recreates it
	doorbellForeign = "not-doorbell" // bytes 0..3 not zero: sanlock-msg never writes over it
)

// doorbellView is one spare sector as dump shows it.
type doorbellView struct {
	Index   int        `json:"index"`
	Offset  int64      `json:"offset"`
	Status  string     `json:"status"`
	Error   string     `json:"error,omitempty"`
	Epoch   uint32     `json:"epoch"`
	Counter uint64     `json:"counter"`
	Rings   []ringView `json:"rings"`
}

// ringView is one doorbell entry: a ringer asking the targets to read its
// sector.
type ringView struct {
	From     uint64   `json:"from"`
	FromGen  uint16   `json:"from_gen16"`
	Counter  uint64   `json:"counter"`
	Targets  []uint64 `json:"targets"`
	BadSlots []int    `json:"bad_slots,omitempty"` // mask bits that name no host
}

// readDoorbells reads the spare sectors after the host records and
// returns them as dump shows them: every one with all, else those that
// are not empty.
func readDoorbells(ctx context.Context, a *delta.Area, all bool) ([]doorbellView, error) {
	g := a.Geo
	off := a.Offset + int64(g.MaxHosts*g.SectorSize)
	buf, err := a.IO.Read(ctx, off, g.Spare()*g.SectorSize, directReadTimeout)
	if err != nil {
		return nil, fmt.Errorf("read the doorbells: %w", err)
	}
	views := []doorbellView{}
	for i := range g.Spare() {
		v := newDoorbellView(g, i, a.Offset+g.DoorbellOffset(i), buf[i*g.SectorSize:(i+1)*g.SectorSize])
		if all || v.Status != doorbellEmpty {
			views = append(views, v)
		}
	}
	return views, nil
}

func newDoorbellView(g leader.Geometry, i int, off int64, b []byte) doorbellView {
	v := doorbellView{Index: i, Offset: off, Rings: []ringView{}}
	d, err := leader.DecodeDoorbell(b)
	switch {
	case errors.Is(err, leader.ErrNotDoorbell):
		v.Status, v.Error = doorbellForeign, err.Error()
		return v
	case err != nil:
		v.Status, v.Error = doorbellBad, err.Error()
		return v
	case d.Epoch == 0:
		v.Status = doorbellEmpty
		return v
	}
	v.Status, v.Epoch, v.Counter = doorbellOK, d.Epoch, d.Counter
	for _, r := range d.Rings {
		rv := ringView{From: r.From, FromGen: r.FromGen, Counter: r.Counter, Targets: []uint64{}}
		for slot := range leader.DoorbellMaskBits {
			if r.Mask&(1<<uint(slot)) == 0 {
				continue
			}
			if h := g.DoorbellHost(i, slot); h != 0 {
				rv.Targets = append(rv.Targets, h)
			} else {
				rv.BadSlots = append(rv.BadSlots, slot)
			}
		}
		v.Rings = append(v.Rings, rv)
	}
	return v
}

// line formats v for the text dump: "doorbell I offset OFF STATUS" and,
// for a valid one, its epoch, counter and entries, newest first, each
// "FROM/GEN16#COUNTER->TARGETS".
func (v *doorbellView) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "doorbell %d offset %d %s", v.Index, v.Offset, v.Status)
	if v.Status != doorbellOK {
		if v.Error != "" {
			fmt.Fprintf(&b, ": %s", v.Error)
		}
		return b.String()
	}
	fmt.Fprintf(&b, " epoch %#08x counter %d entries %d", v.Epoch, v.Counter, len(v.Rings))
	for i, r := range v.Rings {
		sep := " "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%d/%d#%d->%s", sep, r.From, r.FromGen, r.Counter, joinIDs(r.Targets))
		if len(r.BadSlots) > 0 {
			fmt.Fprintf(&b, "(bad slots %v)", r.BadSlots)
		}
	}
	return b.String()
}
