package interop_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// ourDump is the part of `sanlock-msg dump --json` these tests compare.
type ourDump struct {
	Lockspace  string `json:"lockspace"`
	SectorSize int    `json:"sector_size"`
	AlignSize  int    `json:"align_size"`
	MaxHosts   int    `json:"max_hosts"`
	Hosts      []struct {
		HostID          uint64 `json:"host_id"`
		Offset          int64  `json:"offset"`
		Status          string `json:"status"`
		Lockspace       string `json:"lockspace"`
		Resource        string `json:"resource"`
		Timestamp       uint64 `json:"timestamp"`
		OwnerID         uint64 `json:"owner_id"`
		OwnerGeneration uint64 `json:"owner_generation"`
		IOTimeout       uint16 `json:"io_timeout"`
		Event           struct {
			Generation uint64   `json:"generation"`
			Code       uint64   `json:"code"`
			Codes      []string `json:"codes"`
			Data       uint64   `json:"data"`
		} `json:"event"`
		Targets []uint64        `json:"targets"`
		Ext     json.RawMessage `json:"ext"`
	} `json:"hosts"`
}

// TestDumpMatchesSanlockOnLiveImage lets two real sanlock daemons join a
// lockspace made by sanlock-msg init, renew it, and put an event in it
// (host 1 -> host 2, event 5, data 77), then compares `sanlock-msg dump`
// with `sanlock direct dump` on a snapshot of the area, and checks the
// event fields sanlock's dump does not show.
func TestDumpMatchesSanlockOnLiveImage(t *testing.T) {
	testimg.RequireSanlock(t)
	for _, tt := range []struct {
		name  string
		ss    int
		align int64
		off   int64
	}{
		{"512 file", 512, mib, mib},
		{"4096 loop", 4096, 8 * mib, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			size := tt.off + tt.align
			path := testimg.File(t, size)
			if tt.ss == 4096 {
				path = testimg.Loop(t, path, 4096)
			}
			ls := fmt.Sprintf("LIVE%d", tt.ss)
			slm(t, "init", "-o", "1", "-s", spec(ls, 0, path, tt.off))

			hosts := []*testimg.Sanlock{
				testimg.StartSanlock(t, fmt.Sprintf("h1-%d", tt.ss)),
				testimg.StartSanlock(t, fmt.Sprintf("h2-%d", tt.ss)),
			}
			var wg sync.WaitGroup
			errs := make([]error, len(hosts))
			outs := make([]string, len(hosts))
			for i, h := range hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					outs[i], errs[i] = h.Client("add_lockspace", "-o", "1", "-s", spec(ls, i+1, path, tt.off))
				}()
			}
			wg.Wait()
			for i := range hosts {
				if errs[i] != nil {
					t.Fatalf("host %d add_lockspace: %v: %s", i+1, errs[i], outs[i])
				}
			}
			if out, err := hosts[0].Client("set_event", "-s", ls, "-i", "2", "-e", "5", "-d", "77"); err != nil {
				t.Fatalf("set_event: %v: %s", err, out)
			}

			snap := snapshotWithEvent(t, path, tt.off, tt.ss, int(tt.align))
			snapPath := writeFile(t, snap)
			if tt.ss == 4096 {
				snapPath = testimg.Loop(t, snapPath, 4096)
			}

			var ours ourDump
			if err := json.Unmarshal([]byte(slm(t, "dump", "--json", "-s", spec(ls, 0, snapPath, tt.off))), &ours); err != nil {
				t.Fatal(err)
			}
			out, err := testimg.Direct("dump", fmt.Sprintf("%s:%d", snapPath, tt.off))
			if err != nil {
				t.Fatalf("sanlock direct dump: %v: %s", err, out)
			}
			theirs := parseSanlockDump(t, out)

			if ours.Lockspace != ls || ours.SectorSize != tt.ss || ours.AlignSize != int(tt.align) || ours.MaxHosts != 2000 {
				t.Errorf("dump header: %s %d/%d %d hosts, want %s %d/%d 2000", ours.Lockspace, ours.SectorSize, ours.AlignSize, ours.MaxHosts, ls, tt.ss, tt.align)
			}
			var got []sanlockRow
			for _, h := range ours.Hosts {
				got = append(got, sanlockRow{h.Offset, h.Lockspace, h.Resource, h.Timestamp, h.OwnerID, h.OwnerGeneration})
			}
			if !reflect.DeepEqual(got, theirs) {
				t.Fatalf("sanlock-msg dump rows\n%+v\nsanlock direct dump rows\n%+v", got, theirs)
			}
			if len(ours.Hosts) != 2 {
				t.Fatalf("dump lists %d hosts, want the 2 that joined", len(ours.Hosts))
			}
			for i, h := range ours.Hosts {
				id := uint64(i + 1)
				if h.HostID != id || h.OwnerID != id || h.Resource != hosts[i].HostName || h.OwnerGeneration != 1 ||
					h.Timestamp == 0 || h.Status != "ok" || h.IOTimeout != 1 || string(h.Ext) != "null" {
					t.Errorf("host %d: %+v, want owner %d %q gen 1, live, ok, io_timeout 1, no extension", id, h, id, hosts[i].HostName)
				}
			}
			h1, h2 := ours.Hosts[0], ours.Hosts[1]
			if h1.Event.Generation != 0 || h1.Event.Code != 5 || h1.Event.Data != 77 ||
				!slices.Equal(h1.Event.Codes, []string{"reset", "reboot"}) || !slices.Equal(h1.Targets, []uint64{2}) {
				t.Errorf("host 1 event %+v targets %v, want 0/5/77 (reset, reboot) to [2]", h1.Event, h1.Targets)
			}
			if h2.Event.Code != 0 || len(h2.Targets) != 0 {
				t.Errorf("host 2 event %+v targets %v, want none", h2.Event, h2.Targets)
			}

			var rd struct {
				Message *struct {
					Targets []uint64 `json:"targets"`
					Code    uint64   `json:"code"`
					Data    uint64   `json:"data"`
				} `json:"message"`
			}
			if err := json.Unmarshal([]byte(slm(t, "read", "--json", "-s", spec(ls, 1, snapPath, tt.off))), &rd); err != nil {
				t.Fatal(err)
			}
			if m := rd.Message; m == nil || m.Code != 5 || m.Data != 77 || !slices.Equal(m.Targets, []uint64{2}) {
				t.Errorf("read host 1: message %+v, want code 5 data 77 to [2]", m)
			}
		})
	}
}

// snapshotWithEvent reads the area of the live lockspace until host 1's
// sector carries host 2's bit and event 5/77 and host 2 has renewed, and
// returns that snapshot as an image with the area at off. Sanlock sets the
// bit for set_bitmap_seconds (6 s at io_timeout 1), in 2 or 3 renewals.
func snapshotWithEvent(t *testing.T, path string, off int64, ss, align int) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		area := testimg.ReadArea(t, path, off, align)
		s1, err1 := leader.DecodeSector(area[:ss])
		s2, err2 := leader.DecodeSector(area[ss : 2*ss])
		if err1 == nil && err2 == nil && s1.Bitmap.Test(2) && s1.Record.WriteGeneration == 5 &&
			s1.Record.WriteTimestamp == 77 && s2.Record.Timestamp != 0 {
			img := make([]byte, off+int64(align))
			copy(img[off:], area)
			return img
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s host 1's sector has no event for host 2: bitmap %v event %d/%d/%d, host 2 timestamp %d",
				s1.Bitmap.Hosts(), s1.Record.WriteID, s1.Record.WriteGeneration, s1.Record.WriteTimestamp, s2.Record.Timestamp)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
