package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

func readJSON(t *testing.T, spec string) readView {
	t.Helper()
	out, errOut, code := runCmd(t, "read", "--json", "-s", spec)
	if code != 0 {
		t.Fatalf("read exit %d: %s", code, errOut)
	}
	var v readView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("read --json output is not JSON: %v\n%s", err, out)
	}
	return v
}

func TestRead(t *testing.T) {
	area := eventArea(t)
	copy(area[2*512:], msgSector(t, 512))
	path := imageWith(t, 2*leader.MiB, leader.MiB, area)
	spec := func(id int) string { return fmt.Sprintf("LS:%d:%s:1M", id, path) }

	tests := []struct {
		name      string
		id        int
		owner     uint64
		resource  string
		timestamp uint64
		message   *messageView
		ext       *extView
	}{
		{"sanlock host with an event", 1, 1, "host1", 289,
			&messageView{Targets: []uint64{2}, Code: 5, Codes: []string{"reset", "reboot"}, Data: 77}, nil},
		{"sanlock host without", 2, 2, "host2", 287, nil, nil},
		{"sanlock-msg host", 3, 3, "host3", 100,
			&messageView{Targets: []uint64{1, 2}, TargetGeneration: 1, Code: leader.EventUser0, Codes: []string{"user0"}, Seq: 12, Data: 12},
			&extView{Version: leader.ExtVersion, Seq: 12, Flags: 1, Acks: []ackView{
				{HostID: 1, Gen16: 1, Status: "delivered", Seq: 7}, {HostID: 2, Gen16: 1, Status: "no-listener", Seq: 9}}}},
		{"free host", 2000, 0, "", 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := readJSON(t, spec(tt.id))
			h := v.Host
			if v.Lockspace != "LS" || v.Offset != leader.MiB || h.HostID != uint64(tt.id) || h.Offset != leader.MiB+int64(tt.id-1)*512 {
				t.Errorf("read %d: lockspace %q offset %d host %d at %d", tt.id, v.Lockspace, v.Offset, h.HostID, h.Offset)
			}
			if h.Status != "ok" || h.OwnerID != tt.owner || h.Resource != tt.resource || h.Timestamp != tt.timestamp {
				t.Errorf("host = %+v, want ok, owner %d %q, timestamp %d", h, tt.owner, tt.resource, tt.timestamp)
			}
			if !reflect.DeepEqual(v.Message, tt.message) {
				t.Errorf("message = %+v, want %+v", v.Message, tt.message)
			}
			if !reflect.DeepEqual(h.Ext, tt.ext) {
				t.Errorf("ext = %+v, want %+v", h.Ext, tt.ext)
			}
		})
	}

	out, errOut, code := runCmd(t, "read", "-s", spec(3))
	if code != 0 {
		t.Fatalf("read exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"host name \"host3\"", "to 1,2", "target generation 1", "code 0x10000 (user0)", "seq 12, data 12",
		"from host 1 gen16 1 seq 7: delivered", "from host 2 gen16 1 seq 9: no-listener",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("read output lacks %q:\n%s", want, out)
		}
	}
}

func TestReadBadSector(t *testing.T) {
	area := eventArea(t)
	area[512+leader.OffChecksum] ^= 1
	path := imageWith(t, leader.MiB, 0, area)
	v := readJSON(t, "LS:2:"+path+":0")
	if v.Host.Status != "bad-checksum" || !strings.Contains(v.Host.Error, "bad checksum") {
		t.Errorf("status %q error %q, want bad-checksum", v.Host.Status, v.Host.Error)
	}
}

func TestReadBadInput(t *testing.T) {
	path := imageWith(t, leader.MiB, 0, eventArea(t))
	path4k := testimg.File(t, 2*leader.MiB)
	if _, errOut, code := runCmd(t, "init", "-s", "LS:0:"+path4k+":0", "-Z", "4096", "-A", "1M"); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	tests := []struct {
		name     string
		spec     string
		wantCode int
		wantErr  string
	}{
		{"host_id 0", "LS:0:" + path + ":0", 2, "-s: host id 0 out of range 1..2000"},
		{"host_id past max_hosts", "LS:2001:" + path + ":0", 2, "-s: host id 2001 out of range 1..2000"},
		{"host_id past 250 on 4096/1M", "LS:251:" + path4k + ":0", 2, "-s: host id 251 out of range 1..250 (max_hosts of lockspace LS)"},
		{"a directory", "LS:1:" + filepath.Dir(path) + ":0", 1, "is a directory: not a block device or a regular file"},
		{"a character device", "LS:1:/dev/null:0", 1, "/dev/null is a character device"},
		{"wrong name", "OTHER:1:" + path + ":0", 1, `not "OTHER"`},
		{"unaligned offset", "LS:1:" + path + ":10", 1, "not a multiple of 512"},
		{"offset past the end", "LS:1:" + path + ":2M", 1, "past the end"},
		{"bad syntax", "LS:1:" + path, 2, "want NAME:HOST_ID:PATH:OFFSET"},
		{"missing path", "LS:1:/nonexistent/x:0", 1, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCmd(t, "read", "-s", tt.spec)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if strings.Count(errOut, "\n") != 1 || out != "" {
				t.Errorf("stdout %q stderr %q: want no output and a one-line error", out, errOut)
			}
		})
	}
}
