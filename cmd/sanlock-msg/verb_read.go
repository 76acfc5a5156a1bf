package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

const readAbout = `
Shows one host's sector of the lockspace at OFFSET of PATH, read straight
from disk (read-only; no daemon needed): its owner, generation, timestamp
and host name, the message it currently carries (target hosts from the
bitmap, target generation, code, seq from the sanlock-msg extension, data)
and its ack table (source host, low 16 bits of the source generation,
status, seq). HOST_ID must be in 1..max_hosts of the lockspace. NAME must
match the lockspace, or be empty to accept any (see dump).`

// readView is the JSON form of read's output.
type readView struct {
	areaInfo
	Host    sectorView   `json:"host"`
	Message *messageView `json:"message"`
}

// messageView is the message a sector carries: its event fields and bitmap,
// with the seq from the extension.
type messageView struct {
	Targets          []uint64 `json:"targets"`
	TargetGeneration uint64   `json:"target_generation"`
	Code             uint64   `json:"code"`
	Codes            []string `json:"codes"`
	Seq              uint64   `json:"seq"`
	Data             uint64   `json:"data"`
}

// runRead implements `sanlock-msg read`.
func runRead(ctx context.Context, e *env, args []string) int {
	c := newCommand("read", "-s NAME:HOST_ID:PATH:OFFSET [--json] [-Z 512|4096 -A 1M|2M|4M|8M]", readAbout)
	spec := c.specFlag("host sector to show, NAME:HOST_ID:PATH:OFFSET")
	asJSON := c.fs.Bool("json", false, "print one JSON object (see the manual for its fields)")
	geo := c.geometryFlags(" (only to read an area whose host 1 sector is damaged)")
	if done, st := c.parse(e, args); done {
		return st
	}
	sp, ok := c.hostSpec(e, *spec, true)
	if !ok {
		return exitUsage
	}
	area, closeDev, err := openArea(ctx, sp, geo)
	if err != nil {
		return fail(e, "read", err)
	}
	defer closeDev()
	if sp.HostID > uint64(area.Geo.MaxHosts) {
		return c.usageError(e, hostIDRange("-s", sp.HostID, area.Geo.MaxHosts, area.Name))
	}
	buf, err := area.ReadHosts(ctx, sp.HostID, sp.HostID, directReadTimeout)
	if err != nil {
		return fail(e, "read", fmt.Errorf("read host %d: %w", sp.HostID, err))
	}
	s, err := leader.DecodeSector(buf)
	if err != nil {
		return fail(e, "read", err)
	}
	v := &readView{areaInfo: newAreaInfo(sp.Path, area), Host: newSectorView(area, sp.HostID, &s)}
	v.Message = v.Host.message()
	if *asJSON {
		return jsonOut(e, "read", v)
	}
	v.print(e.stdout)
	return exitOK
}

// message returns the message the sector carries, or nil if its event
// fields, bitmap and extension seq are all empty.
func (v *sectorView) message() *messageView {
	var seq uint64
	if v.Ext != nil {
		seq = v.Ext.Seq
	}
	ev := v.Event
	if ev.Code == 0 && ev.Generation == 0 && ev.Data == 0 && len(v.Targets) == 0 && seq == 0 {
		return nil
	}
	return &messageView{
		Targets: v.Targets, TargetGeneration: ev.Generation,
		Code: ev.Code, Codes: ev.Codes, Seq: seq, Data: ev.Data,
	}
}

func (v *readView) print(w io.Writer) {
	h := &v.Host
	row := func(k, f string, args ...any) { fmt.Fprintf(w, "%-12s "+f+"\n", append([]any{k}, args...)...) }
	row("lockspace", "%v", v.areaInfo)
	row("host_id", "%d (sector at offset %d)", h.HostID, h.Offset)
	if h.Error != "" {
		row("status", "%s: %s", h.Status, h.Error)
	} else {
		row("status", "%s", h.Status)
	}
	row("owner", "host_id %d, generation %d, host name %q", h.OwnerID, h.OwnerGeneration, h.Resource)
	if h.Timestamp == 0 {
		row("timestamp", "0 (free or released)")
	} else {
		row("timestamp", "%d", h.Timestamp)
	}
	row("io_timeout", "%d", h.IOTimeout)
	if m := v.Message; m == nil {
		row("message", "none")
	} else {
		to := "none (no bit set)"
		if len(m.Targets) > 0 {
			to = joinIDs(m.Targets)
		}
		gen := fmt.Sprint(m.TargetGeneration)
		if m.TargetGeneration == 0 {
			gen = "0 (any)"
		}
		codes := "none"
		if len(m.Codes) > 0 {
			codes = strings.Join(m.Codes, ",")
		}
		row("message", "to %s", to)
		row("", "target generation %s", gen)
		row("", "code %#x (%s)", m.Code, codes)
		row("", "seq %d, data %d", m.Seq, m.Data)
	}
	if h.Ext == nil {
		row("extension", "none (a sanlock-native or free sector)")
		return
	}
	row("extension", "version %d, flags %#x", h.Ext.Version, h.Ext.Flags)
	if len(h.Ext.Acks) == 0 {
		row("acks", "none")
		return
	}
	for i, a := range h.Ext.Acks {
		k := ""
		if i == 0 {
			k = "acks"
		}
		row(k, "from host %d gen16 %d seq %d: %s", a.HostID, a.Gen16, a.Seq, a.Status)
	}
}
