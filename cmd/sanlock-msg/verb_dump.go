package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// directReadTimeout bounds every read of dump and read, as sanlock direct
// dump uses its default io_timeout.
const directReadTimeout = delta.DefaultIOTimeout

const dumpAbout = `
Lists the used host sectors of the lockspace at OFFSET of PATH, read
straight from disk (read-only; no daemon needed), like 'sanlock direct
dump'. A sector is used when its owner_id, owner_generation, timestamp,
event fields, bitmap or extension are not zero, or when it fails a check:
such sectors are shown with their STATUS (bad-magic, bad-version,
wrong-name, bad-checksum, wrong-geometry, bad-ext-crc, bad-ext-version) and
never modified. --all lists every sector.

NAME must be the lockspace's name (checked against host 1's sector); an
empty NAME (-s :0:PATH:OFFSET) dumps whatever lockspace is there, as sanlock
does. HOST_ID is ignored (0..2000). The geometry comes from host 1's sector; if that
sector is damaged, give --sector-size and --align to dump the area anyway.

Columns: offset, lockspace, resource (the owner's host name), timestamp,
own (owner_id), gen (owner_generation), lver, as sanlock prints them, then
status, io (io_timeout), and, when set: event=GEN/CODE/DATA (target
generation, code, data) with codes=NAMES, targets=IDS (bitmap), and the
sanlock-msg extension: seq=N flags=0xF acks=HOST/GEN16/STATUS/SEQ,...

After the hosts, one line per doorbell (spare sector after the host
records) that is not empty (--all: every one): index, offset, status (ok,
bad-doorbell: torn or corrupt, not-doorbell: bytes 0..3 are not zero, which
sanlock-msg never writes over; empty with --all), and for a valid one its
epoch, counter and entries, newest first, as FROM/GEN16#COUNTER->TARGETS.`

// runDump implements `sanlock-msg dump`.
func runDump(ctx context.Context, e *env, args []string) int {
	c := newCommand("dump", "-s NAME:0:PATH:OFFSET [--json] [--all] [-Z 512|4096 -A 1M|2M|4M|8M]", dumpAbout)
	spec := c.specFlag("lockspace to dump, NAME:HOST_ID:PATH:OFFSET (HOST_ID is ignored; NAME may be empty)")
	asJSON := c.fs.Bool("json", false, "print one JSON object (see the manual for its fields)")
	all := c.fs.Bool("all", false, "list every host sector, used or not")
	geo := c.geometryFlags(" (only to dump an area whose host 1 sector is damaged)")
	if done, st := c.parse(e, args); done {
		return st
	}
	sp, ok := c.spec(e, *spec, true)
	if !ok {
		return exitUsage
	}
	area, closeDev, err := openArea(ctx, sp, geo)
	if err != nil {
		return fail(e, "dump", err)
	}
	defer closeDev()
	buf, err := area.ReadAll(ctx, directReadTimeout)
	if err != nil {
		return fail(e, "dump", fmt.Errorf("read the area: %w", err))
	}
	d := &areaView{areaInfo: newAreaInfo(sp.Path, area), Hosts: []sectorView{}}
	for i, s := range area.DecodeHosts(buf) {
		v := newSectorView(area, uint64(i+1), &s)
		if *all || v.used() {
			d.Hosts = append(d.Hosts, v)
		}
	}
	if d.Doorbells, err = readDoorbells(ctx, area, *all); err != nil {
		return fail(e, "dump", err)
	}
	if *asJSON {
		return jsonOut(e, "dump", d)
	}
	d.print(e.stdout)
	return exitOK
}

// openArea opens the spec's path read-only and finds the lockspace area at
// its offset: from host 1's sector (delta.Probe), or from explicit geometry
// flags for a damaged area. sp.Name, if set, must match the area's name.
func openArea(ctx context.Context, sp delta.Spec, geo *geometryFlags) (*delta.Area, func(), error) {
	dev, err := openDevice(sp.Path, true)
	if err != nil {
		return nil, nil, err
	}
	o := delta.NewIO(dev, clock.Real{})
	area, err := findArea(ctx, o, sp, geo)
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	return area, func() { dev.Close() }, nil
}

func findArea(ctx context.Context, o *delta.IO, sp delta.Spec, geo *geometryFlags) (*delta.Area, error) {
	dev := o.Device()
	if geo.set() {
		g, err := geo.resolve(dev.SectorSize())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sp.Path, err)
		}
		if sp.Offset%int64(g.SectorSize) != 0 {
			return nil, fmt.Errorf("%w: offset %d is not a multiple of the %d-byte sector size", delta.ErrMisaligned, sp.Offset, g.SectorSize)
		}
		size, err := dev.Size()
		if err != nil {
			return nil, err
		}
		if end := sp.Offset + int64(g.AlignSize); end > size {
			return nil, fmt.Errorf("%w: the %s area at offset %d needs %d bytes, %s has %d",
				delta.ErrDeviceTooSmall, leader.AlignString(g.AlignSize), sp.Offset, end, sp.Path, size)
		}
		return &delta.Area{IO: o, Offset: sp.Offset, Geo: g, Name: sp.Name}, nil
	}
	area, err := delta.Probe(ctx, o, sp.Offset, "", directReadTimeout)
	if err != nil {
		if errors.Is(err, leader.ErrMagic) || errors.Is(err, leader.ErrChecksum) || errors.Is(err, leader.ErrVersion) ||
			errors.Is(err, leader.ErrSectorSize) || errors.Is(err, leader.ErrGeometry) {
			return nil, fmt.Errorf("%w (host 1's sector is damaged or this is not a lockspace; to dump it anyway give --sector-size and --align)", err)
		}
		return nil, err
	}
	if sp.Name != "" && area.Name != sp.Name {
		return nil, fmt.Errorf("%w: the lockspace at offset %d of %s is %q, not %q (use -s %s:0:%s:%d, or an empty name to accept any)",
			leader.ErrName, sp.Offset, sp.Path, area.Name, sp.Name, area.Name, sp.Path, sp.Offset)
	}
	return area, nil
}

// areaInfo names a lockspace area and its geometry in dump and read output.
type areaInfo struct {
	Lockspace  string `json:"lockspace"`
	Path       string `json:"path"`
	Offset     int64  `json:"offset"`
	SectorSize int    `json:"sector_size"`
	AlignSize  int    `json:"align_size"`
	MaxHosts   int    `json:"max_hosts"`
}

func newAreaInfo(path string, a *delta.Area) areaInfo {
	return areaInfo{
		Lockspace: a.Name, Path: path, Offset: a.Offset,
		SectorSize: a.Geo.SectorSize, AlignSize: a.Geo.AlignSize, MaxHosts: a.Geo.MaxHosts,
	}
}

// String describes the area on one line.
func (a areaInfo) String() string {
	return fmt.Sprintf("%q at %s:%d: %d-byte sectors, align %s, max_hosts %d",
		a.Lockspace, a.Path, a.Offset, a.SectorSize, leader.AlignString(a.AlignSize), a.MaxHosts)
}

// areaView is the JSON form of dump's output.
type areaView struct {
	areaInfo
	Hosts []sectorView `json:"hosts"`
	// Doorbells are the spare sectors after the host records.
	Doorbells []doorbellView `json:"doorbells"`
}

// sectorView is one host sector as dump and read show it.
type sectorView struct {
	HostID          uint64    `json:"host_id"`
	Offset          int64     `json:"offset"`
	Status          string    `json:"status"`
	Error           string    `json:"error,omitempty"`
	Lockspace       string    `json:"lockspace"`
	Resource        string    `json:"resource"`
	Timestamp       uint64    `json:"timestamp"`
	OwnerID         uint64    `json:"owner_id"`
	OwnerGeneration uint64    `json:"owner_generation"`
	LVer            uint64    `json:"lver"`
	IOTimeout       uint16    `json:"io_timeout"`
	Checksum        uint32    `json:"checksum"`
	Event           eventView `json:"event"`
	Targets         []uint64  `json:"targets"`
	Ext             *extView  `json:"ext"`
}

// eventView is the host event (message) fields of a sector.
type eventView struct {
	Generation uint64   `json:"generation"` // write_id: target generation, 0 = any
	Code       uint64   `json:"code"`       // write_generation
	Codes      []string `json:"codes"`      // names of the bits of Code
	Data       uint64   `json:"data"`       // write_timestamp: seq, or data
}

// extView is the sanlock-msg extension of a sector.
type extView struct {
	Version uint8  `json:"version"`
	Seq     uint64 `json:"seq"`
	// Origin is the low 16 bits of the generation the message was first
	// sent under.
	Origin uint16 `json:"origin_gen16"`
	Flags  uint8  `json:"flags"`
	// WatchdogSec is the owner's watchdog fire timeout (0: not said).
	WatchdogSec uint16    `json:"watchdog_sec"`
	Acks        []ackView `json:"acks"`
}

// ackView is one ack table entry.
type ackView struct {
	HostID uint64 `json:"host_id"`
	Gen16  uint16 `json:"gen16"`
	Status string `json:"status"`
	Seq    uint64 `json:"seq"`
}

// Sector statuses, in the order the checks run.
const (
	statusOK            = "ok"
	statusBadMagic      = "bad-magic"
	statusBadVersion    = "bad-version"
	statusWrongName     = "wrong-name"
	statusBadChecksum   = "bad-checksum"
	statusWrongGeometry = "wrong-geometry"
	statusBadExtCRC     = "bad-ext-crc"
	statusBadExtVersion = "bad-ext-version"
)

// sectorStatus checks a sector as sanlock checks its own (magic, version,
// name, checksum), then its geometry fields against the area's, then the
// extension. It returns the first failure's status and detail.
func sectorStatus(a *delta.Area, s *leader.Sector) (string, error) {
	r := &s.Record
	if err := r.Verify(a.Name); err != nil {
		switch {
		case errors.Is(err, leader.ErrMagic):
			return statusBadMagic, err
		case errors.Is(err, leader.ErrVersion):
			return statusBadVersion, err
		case errors.Is(err, leader.ErrName):
			return statusWrongName, err
		default:
			return statusBadChecksum, err
		}
	}
	if g, err := leader.GeometryOf(r); err != nil {
		return statusWrongGeometry, err
	} else if g != a.Geo {
		return statusWrongGeometry, fmt.Errorf("%w: the record says %v, the area is %v", leader.ErrGeometry, g, a.Geo)
	}
	switch {
	case s.ExtErr == nil:
		return statusOK, nil
	case errors.Is(s.ExtErr, leader.ErrExtChecksum):
		return statusBadExtCRC, s.ExtErr
	default:
		return statusBadExtVersion, s.ExtErr
	}
}

func newSectorView(a *delta.Area, id uint64, s *leader.Sector) sectorView {
	r := &s.Record
	v := sectorView{
		HostID:          id,
		Offset:          a.HostOffset(id),
		Lockspace:       r.SpaceNameString(),
		Resource:        r.ResourceNameString(),
		Timestamp:       r.Timestamp,
		OwnerID:         r.OwnerID,
		OwnerGeneration: r.OwnerGeneration,
		LVer:            r.LVer,
		IOTimeout:       r.IOTimeout,
		Checksum:        r.Checksum,
		Event: eventView{
			Generation: r.WriteID,
			Code:       r.WriteGeneration,
			Codes:      leader.CodeNames(r.WriteGeneration),
			Data:       r.WriteTimestamp,
		},
		Targets: s.Bitmap.Hosts(),
	}
	if v.Targets == nil {
		v.Targets = []uint64{}
	}
	status, err := sectorStatus(a, s)
	v.Status = status
	if err != nil {
		v.Error = err.Error()
	}
	if s.Ext != nil {
		x := &extView{Version: s.Ext.Version, Seq: s.Ext.Seq, Origin: s.Ext.Origin, Flags: s.Ext.Flags,
			WatchdogSec: s.Ext.Watchdog, Acks: []ackView{}}
		for _, ack := range s.Ext.Acks {
			x.Acks = append(x.Acks, ackView{HostID: ack.HostID, Gen16: ack.Gen16, Status: ack.Status.String(), Seq: ack.Seq})
		}
		v.Ext = x
	}
	return v
}

// used reports whether dump lists the sector by default.
func (v *sectorView) used() bool {
	ev := v.Event
	return v.Status != statusOK || v.OwnerID != 0 || v.OwnerGeneration != 0 || v.Timestamp != 0 ||
		ev.Generation != 0 || ev.Code != 0 || ev.Data != 0 || len(v.Targets) > 0 || v.Ext != nil
}

// dumpHeader is sanlock direct dump's header line, then ours.
var dumpHeader = fmt.Sprintf("%8s %36s %48s %10s %4s %4s %4s %-15s %3s",
	"offset", "lockspace", "resource", "timestamp", "own", "gen", "lver", "status", "io")

func (d *areaView) print(w io.Writer) {
	fmt.Fprintf(w, "lockspace %v\n", d.areaInfo)
	fmt.Fprintln(w, dumpHeader)
	for i := range d.Hosts {
		fmt.Fprintln(w, d.Hosts[i].line())
	}
	for i := range d.Doorbells {
		fmt.Fprintln(w, d.Doorbells[i].line())
	}
}

// line formats v with sanlock direct dump's columns, then ours.
func (v *sectorView) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%08d %36s %48s %010d %04d %04d %04d %-15s %3d",
		v.Offset, v.Lockspace, v.Resource, v.Timestamp, v.OwnerID, v.OwnerGeneration, v.LVer, v.Status, v.IOTimeout)
	if ev := v.Event; ev.Generation != 0 || ev.Code != 0 || ev.Data != 0 {
		fmt.Fprintf(&b, " event=%d/%#x/%d", ev.Generation, ev.Code, ev.Data)
		if len(ev.Codes) > 0 {
			fmt.Fprintf(&b, " codes=%s", strings.Join(ev.Codes, ","))
		}
	}
	if len(v.Targets) > 0 {
		fmt.Fprintf(&b, " targets=%s", joinIDs(v.Targets))
	}
	if x := v.Ext; x != nil {
		fmt.Fprintf(&b, " seq=%d flags=%#x acks=%s", x.Seq, x.Flags, x.ackList())
	}
	return b.String()
}

func (x *extView) ackList() string {
	if len(x.Acks) == 0 {
		return "-"
	}
	parts := make([]string, len(x.Acks))
	for i, a := range x.Acks {
		parts[i] = fmt.Sprintf("%d/%d/%s/%d", a.HostID, a.Gen16, a.Status, a.Seq)
	}
	return strings.Join(parts, ",")
}

func joinIDs(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprint(id)
	}
	return strings.Join(parts, ",")
}

// jsonOut writes v to stdout as indented JSON and returns the exit status.
func jsonOut(e *env, verb string, v any) int {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fail(e, verb, err)
	}
	return exitOK
}
