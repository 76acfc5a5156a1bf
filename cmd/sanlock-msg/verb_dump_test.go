package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// eventArea is ls512-event.bin as a whole 1 MiB area: host 1 (host1, gen 1,
// timestamp 289) carries event 5 / data 77 for host 2; host 2 (host2, gen
// 1, timestamp 287) has no event; hosts 3..2000 are fresh.
func eventArea(t *testing.T) []byte {
	return refArea(t, "ls512-event.bin", 512, leader.MiB, 2000)
}

// msgSector encodes a sector as a sanlock-msg host writes it: host 3,
// generation 4, a user0 message with seq 12 to hosts 1 and 2, and two acks.
func msgSector(t *testing.T, ss int) []byte {
	t.Helper()
	r := leader.Record{
		Magic: leader.Magic, Version: leader.Version, Flags: leader.FlagAlign1M, SectorSize: uint32(ss),
		MaxHosts: 1, OwnerID: 3, OwnerGeneration: 4, Timestamp: 100, IOTimeout: 1,
		WriteID: 1, WriteGeneration: leader.EventUser0, WriteTimestamp: 12,
	}
	if ss == 4096 {
		r.Flags = leader.FlagAlign8M
	}
	if err := leader.SetName(&r.SpaceName, "LS", leader.MaxSpaceName); err != nil {
		t.Fatal(err)
	}
	if err := leader.SetName(&r.ResourceName, "host3", leader.MaxHostName); err != nil {
		t.Fatal(err)
	}
	s := leader.Sector{Record: r, Ext: &leader.Extension{Seq: 12, Flags: leader.ExtFlagResetting, Acks: []leader.Ack{
		{HostID: 1, Gen16: 1, Status: leader.StatusDelivered, Seq: 7},
		{HostID: 2, Gen16: 1, Status: leader.StatusNoListener, Seq: 9},
	}}}
	s.Bitmap.Set(1)
	s.Bitmap.Set(2)
	s.Seal()
	b := make([]byte, ss)
	if err := s.Encode(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func dumpJSON(t *testing.T, args ...string) areaView {
	t.Helper()
	out, errOut, code := runCmd(t, append([]string{"dump", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("dump exit %d: %s", code, errOut)
	}
	var d areaView
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("dump --json output is not JSON: %v\n%s", err, out)
	}
	return d
}

// TestDumpReferenceImage checks dump against the values sanlock-format.md
// documents for the reference image.
func TestDumpReferenceImage(t *testing.T) {
	for _, off := range []int64{0, leader.MiB} {
		t.Run(fmt.Sprint("offset ", off), func(t *testing.T) {
			path := imageWith(t, 3*leader.MiB, off, eventArea(t))
			d := dumpJSON(t, "-s", fmt.Sprintf("LS:0:%s:%d", path, off))
			if d.Lockspace != "LS" || d.Offset != off || d.SectorSize != 512 || d.AlignSize != leader.MiB || d.MaxHosts != 2000 {
				t.Errorf("header = %+v, want LS at %d, 512/1M, 2000 hosts", d, off)
			}
			want := []sectorView{
				{HostID: 1, Offset: off, Status: "ok", Lockspace: "LS", Resource: "host1", Timestamp: 289, OwnerID: 1, OwnerGeneration: 1,
					IOTimeout: 1, Checksum: 0xdf71dda8, Event: eventView{Code: 5, Codes: []string{"reset", "reboot"}, Data: 77}, Targets: []uint64{2}},
				{HostID: 2, Offset: off + 512, Status: "ok", Lockspace: "LS", Resource: "host2", Timestamp: 287, OwnerID: 2, OwnerGeneration: 1,
					IOTimeout: 1, Checksum: 0x8b9bd6f4, Event: eventView{Codes: []string{}}, Targets: []uint64{}},
			}
			if !reflect.DeepEqual(d.Hosts, want) {
				t.Errorf("hosts =\n%+v\nwant\n%+v", d.Hosts, want)
			}
		})
	}
}

// TestDumpText checks the sanlock columns of the text output against what
// `sanlock direct dump` printed for the same image.
func TestDumpText(t *testing.T) {
	path := imageWith(t, leader.MiB, 0, eventArea(t))
	out, errOut, code := runCmd(t, "dump", "-s", "LS:0:"+path+":0")
	if code != 0 {
		t.Fatalf("dump exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("dump printed %d lines, want a geometry line, a header and 2 hosts:\n%s", len(lines), out)
	}
	if want := "512-byte sectors, align 1M, max_hosts 2000"; !strings.Contains(lines[0], want) {
		t.Errorf("geometry line %q, want it to contain %q", lines[0], want)
	}
	// Recorded from sanlock 3.8.5: sanlock direct dump ev.img:0.
	sanlock := []string{
		"  offset                            lockspace                                         resource  timestamp  own  gen lver",
		"00000000                                   LS                                            host1 0000000289 0001 0001",
		"00000512                                   LS                                            host2 0000000287 0002 0001",
	}
	for i, want := range sanlock {
		if got := lines[i+1]; !strings.HasPrefix(got, want) {
			t.Errorf("line %d:\n got %q\nwant prefix %q", i+1, got, want)
		}
	}
	for _, want := range []string{" ok ", "event=0/0x5/77", "codes=reset,reboot", "targets=2"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("host 1 line %q lacks %q", lines[2], want)
		}
	}
}

// TestDumpMarksBadSectors corrupts sectors in every way dump reports, and
// checks that each is listed with its status and that dump writes nothing.
func TestDumpMarksBadSectors(t *testing.T) {
	area := eventArea(t)
	sec := func(id int) []byte { return area[(id-1)*512 : id*512] }
	sec(2)[leader.OffChecksum] ^= 0xff       // host 2: bad checksum
	copy(sec(3)[leader.OffSpaceName:], "XY") // host 3: foreign name
	sec(4)[leader.OffMagic] = 0              // host 4: bad magic
	sec(5)[leader.OffVersion+2] = 9          // host 5: version 9.x
	copy(sec(6), msgSector(t, 512))          // host 6: a good sanlock-msg sector
	copy(sec(7), msgSector(t, 512))          // host 7: ... with a torn extension
	sec(7)[leader.OffExtAcks] ^= 1           //
	copy(sec(8), msgSector(t, 512))          // host 8: ... with an unknown extension version
	sec(8)[leader.OffExtVersion] = 9         //
	sec(9)[leader.OffSectorSize+1] = 0x10    // host 9: sector_size 4096 (checksum fixed below)
	r, _ := leader.DecodeRecord(sec(9))      //
	r.Seal()                                 //
	r.Put(sec(9))                            //
	clear(sec(2000))                         // host 2000: never written
	path := imageWith(t, leader.MiB, 0, area)
	before := fileSum(t, path)

	d := dumpJSON(t, "-s", "LS:0:"+path+":0")
	got := map[uint64]string{}
	for _, h := range d.Hosts {
		got[h.HostID] = h.Status
		if (h.Status == "ok") != (h.Error == "") {
			t.Errorf("host %d: status %q with error %q", h.HostID, h.Status, h.Error)
		}
	}
	want := map[uint64]string{
		1: "ok", 2: "bad-checksum", 3: "wrong-name", 4: "bad-magic", 5: "bad-version",
		6: "ok", 7: "bad-ext-crc", 8: "bad-ext-version", 9: "wrong-geometry", 2000: "bad-magic",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	if fileSum(t, path) != before {
		t.Error("dump modified the image")
	}

	out, _, _ := runCmd(t, "dump", "-s", "LS:0:"+path+":0")
	for _, w := range []string{"bad-checksum", "wrong-name", "bad-ext-crc", "seq=12 flags=0x1 acks=1/1/delivered/7,2/1/no-listener/9"} {
		if !strings.Contains(out, w) {
			t.Errorf("text dump lacks %q:\n%s", w, out)
		}
	}
}

func TestDumpExtension(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		t.Run(fmt.Sprint(ss), func(t *testing.T) {
			path := testimg.File(t, 8*leader.MiB)
			if _, errOut, code := runCmd(t, "init", "-s", "LS:0:"+path+":0", "-Z", fmt.Sprint(ss)); code != 0 {
				t.Fatalf("init: %s", errOut)
			}
			writeAt(t, path, int64(2*ss), msgSector(t, ss))
			d := dumpJSON(t, "-s", "LS:0:"+path+":0")
			if len(d.Hosts) != 1 {
				t.Fatalf("dump lists %d hosts, want host 3 only: %+v", len(d.Hosts), d.Hosts)
			}
			h := d.Hosts[0]
			wantExt := &extView{Version: leader.ExtVersion, Seq: 12, Flags: 1, Acks: []ackView{
				{HostID: 1, Gen16: 1, Status: "delivered", Seq: 7},
				{HostID: 2, Gen16: 1, Status: "no-listener", Seq: 9},
			}}
			if h.HostID != 3 || h.Offset != int64(2*ss) || h.Status != "ok" || !reflect.DeepEqual(h.Ext, wantExt) {
				t.Errorf("host = %+v ext %+v, want host 3 at %d, ok, ext %+v", h, h.Ext, 2*ss, wantExt)
			}
			if !slices.Equal(h.Targets, []uint64{1, 2}) || h.Event.Code != leader.EventUser0 || !slices.Equal(h.Event.Codes, []string{"user0"}) {
				t.Errorf("targets %v event %+v, want [1 2] user0", h.Targets, h.Event)
			}
		})
	}
}

func TestDumpAll(t *testing.T) {
	path := testimg.File(t, leader.MiB)
	if _, errOut, code := runCmd(t, "init", "-s", "LS:0:"+path+":0"); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	if d := dumpJSON(t, "-s", "LS:0:"+path+":0"); len(d.Hosts) != 0 {
		t.Errorf("fresh area: dump lists %d hosts, want none", len(d.Hosts))
	}
	d := dumpJSON(t, "--all", "-s", "LS:0:"+path+":0")
	if len(d.Hosts) != 2000 || d.Hosts[1999].HostID != 2000 || d.Hosts[1999].Offset != 1999*512 {
		t.Fatalf("--all lists %d hosts, want 2000 ending with host 2000 at %d", len(d.Hosts), 1999*512)
	}
	for _, h := range d.Hosts {
		if h.Status != "ok" || h.IOTimeout != 10 {
			t.Fatalf("fresh host %d: status %s io_timeout %d", h.HostID, h.Status, h.IOTimeout)
		}
	}
}

// TestDumpName covers the name rule: NAME must match host 1's sector, an
// empty NAME accepts any.
func TestDumpName(t *testing.T) {
	path := imageWith(t, leader.MiB, 0, eventArea(t))
	_, errOut, code := runCmd(t, "dump", "-s", "OTHER:0:"+path+":0")
	if code != 1 || !strings.Contains(errOut, `is "LS", not "OTHER"`) {
		t.Errorf("dump with a wrong name: exit %d, stderr %q; want 1 and a name error", code, errOut)
	}
	if d := dumpJSON(t, "-s", ":0:"+path+":0"); d.Lockspace != "LS" || len(d.Hosts) != 2 {
		t.Errorf("dump with an empty name: lockspace %q, %d hosts; want LS, 2", d.Lockspace, len(d.Hosts))
	}
}

// TestDumpDamagedHost1 checks that a damaged first sector stops the probe
// with a hint, and that explicit geometry dumps the area anyway.
func TestDumpDamagedHost1(t *testing.T) {
	area := eventArea(t)
	area[leader.OffChecksum] ^= 1
	path := imageWith(t, leader.MiB, 0, area)
	_, errOut, code := runCmd(t, "dump", "-s", "LS:0:"+path+":0")
	if code != 1 || !strings.Contains(errOut, "bad checksum") || !strings.Contains(errOut, "--sector-size and --align") {
		t.Errorf("exit %d, stderr %q; want 1, bad checksum and a hint", code, errOut)
	}
	d := dumpJSON(t, "-s", "LS:0:"+path+":0", "-Z", "512", "-A", "1M")
	if len(d.Hosts) != 2 || d.Hosts[0].Status != "bad-checksum" || d.Hosts[1].Status != "ok" {
		t.Errorf("explicit geometry: %+v, want host 1 bad-checksum, host 2 ok", d.Hosts)
	}
}

func TestDumpBadInput(t *testing.T) {
	good := imageWith(t, 2*leader.MiB, 0, eventArea(t))
	small := imageWith(t, leader.MiB/2, 0, eventArea(t)[:leader.MiB/2])
	empty := testimg.File(t, leader.MiB)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"unaligned offset", []string{"-s", "LS:0:" + good + ":100"}, 1, "not a multiple of 512"},
		{"offset past the end", []string{"-s", "LS:0:" + good + ":4M"}, 1, "past the end"},
		{"device too small", []string{"-s", "LS:0:" + small + ":0"}, 1, "device too small"},
		{"too small with geometry", []string{"-s", "LS:0:" + good + ":1536K", "-Z", "512"}, 1, "needs 2621440 bytes"},
		{"not a lockspace", []string{"-s", "LS:0:" + empty + ":0"}, 1, "bad magic"},
		{"bad -s syntax", []string{"-s", "LS:0:" + good}, 2, "want NAME:HOST_ID:PATH:OFFSET"},
		{"name too long", []string{"-s", strings.Repeat("n", 49) + ":0:" + good + ":0"}, 2, "at most 48"},
		{"missing path", []string{"-s", "LS:0:" + good + ".missing:0"}, 1, "no such file"},
		{"no -s", nil, 2, "is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCmd(t, append([]string{"dump"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if strings.Count(errOut, "\n") != 1 || out != "" {
				t.Errorf("stdout %q stderr %q: want no output and a one-line error", out, errOut)
			}
		})
	}
}

// TestDumpJSONFieldNames pins the JSON field names the manual documents.
func TestDumpJSONFieldNames(t *testing.T) {
	area := eventArea(t)
	copy(area[2*512:], msgSector(t, 512))
	copy(area[2000*512:], ringSector(t, 512, 0x77, [3]uint64{5, 1, 0b11}))
	path := imageWith(t, leader.MiB, 0, area)
	out, _, _ := runCmd(t, "dump", "--json", "-s", "LS:0:"+path+":0")
	var d map[string]any
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	hosts := d["hosts"].([]any)
	host := hosts[2].(map[string]any)
	ext := host["ext"].(map[string]any)
	ack := ext["acks"].([]any)[0].(map[string]any)
	bell := d["doorbells"].([]any)[0].(map[string]any)
	ring := bell["rings"].([]any)[0].(map[string]any)
	for _, tt := range []struct {
		obj  map[string]any
		want []string
	}{
		{d, []string{"align_size", "doorbells", "hosts", "lockspace", "max_hosts", "offset", "path", "sector_size"}},
		{bell, []string{"counter", "epoch", "index", "offset", "rings", "status"}},
		{ring, []string{"counter", "from", "from_gen16", "targets"}},
		{host, []string{"checksum", "event", "ext", "host_id", "io_timeout", "lockspace", "lver", "offset", "owner_generation", "owner_id", "resource", "status", "targets", "timestamp"}},
		{host["event"].(map[string]any), []string{"code", "codes", "data", "generation"}},
		{ext, []string{"acks", "flags", "origin_gen16", "seq", "version", "watchdog_sec"}},
		{ack, []string{"gen16", "host_id", "seq", "status"}},
	} {
		if got := keys(tt.obj); !slices.Equal(got, tt.want) {
			t.Errorf("keys %v, want %v", got, tt.want)
		}
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ringSector encodes a doorbell of epoch holding rings {from, gen16, mask},
// oldest first.
func ringSector(t *testing.T, ss int, epoch uint32, rings ...[3]uint64) []byte {
	t.Helper()
	var d leader.Doorbell
	for _, r := range rings {
		d.Add(r[0], uint16(r[1]), r[2], epoch, leader.DoorbellCapacity(ss))
	}
	b := make([]byte, ss)
	if err := d.Encode(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDumpDoorbells lists the spare sectors: a doorbell with rings (its
// masks as host ids: doorbell 1 of 48 holds hosts 2, 50, 98...), a torn one,
// one that is not a doorbell; empty ones only with --all; nothing written.
func TestDumpDoorbells(t *testing.T) {
	area := eventArea(t)
	spare := func(i int) []byte { return area[(2000+i)*512 : (2001+i)*512] }
	copy(spare(1), ringSector(t, 512, 0xabcd, [3]uint64{3, 1, 0b1}, [3]uint64{7, 2, 0b110}))
	copy(spare(5), ringSector(t, 512, 0x1234, [3]uint64{3, 1, 0b1}))
	spare(5)[40] ^= 1
	copy(spare(47), []byte{0x10, 0x20, 0x21, 0x12})
	path := imageWith(t, leader.MiB, 0, area)
	before := fileSum(t, path)

	d := dumpJSON(t, "-s", "LS:0:"+path+":0")
	if len(d.Doorbells) != 3 {
		t.Fatalf("doorbells %+v, want 3", d.Doorbells)
	}
	want := doorbellView{Index: 1, Offset: 2001 * 512, Status: "ok", Epoch: 0xabcd, Counter: 2, Rings: []ringView{
		{From: 7, FromGen: 2, Counter: 2, Targets: []uint64{50, 98}},
		{From: 3, FromGen: 1, Counter: 1, Targets: []uint64{2}},
	}}
	if !reflect.DeepEqual(d.Doorbells[0], want) {
		t.Errorf("doorbell 1 = %+v, want %+v", d.Doorbells[0], want)
	}
	if b := d.Doorbells[1]; b.Index != 5 || b.Status != "bad-doorbell" || !strings.Contains(b.Error, "crc") || len(b.Rings) != 0 {
		t.Errorf("torn doorbell %+v", b)
	}
	if b := d.Doorbells[2]; b.Index != 47 || b.Status != "not-doorbell" || b.Offset != 2047*512 {
		t.Errorf("foreign sector %+v", b)
	}
	out, _, _ := runCmd(t, "dump", "-s", "LS:0:"+path+":0")
	for _, w := range []string{
		"doorbell 1 offset 1024512 ok epoch 0x0000abcd counter 2 entries 2: 7/2#2->50,98 3/1#1->2",
		"doorbell 5 offset 1026560 bad-doorbell: leader: bad doorbell",
		"doorbell 47 offset 1048064 not-doorbell: leader: not a doorbell",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("text dump lacks %q:\n%s", w, out)
		}
	}
	if all := dumpJSON(t, "--all", "-s", "LS:0:"+path+":0"); len(all.Doorbells) != 48 || all.Doorbells[0].Status != "empty" {
		t.Errorf("--all: %d doorbells, the first %+v", len(all.Doorbells), all.Doorbells[0])
	}
	if fileSum(t, path) != before {
		t.Error("dump modified the image")
	}
}
