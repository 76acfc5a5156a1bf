package delta

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// TestAcquireCarryAcks: the acquire write keeps the ack table of the
// sector it takes over only when asked to, and only if that sector was
// ours (marked) and its extension intact.
func TestAcquireCarryAcks(t *testing.T) {
	acks := []leader.Ack{{HostID: 3, Gen16: 7, Status: leader.StatusDelivered, Seq: 41}, {HostID: 9, Gen16: 2, Status: leader.StatusNoListener, Seq: 5}}
	prev := func(damage bool) []byte {
		r := leader.Record{Magic: leader.Magic, Version: leader.Version, Flags: leader.FlagAlign1M, SectorSize: 512,
			MaxHosts: 1, OwnerID: 2, OwnerGeneration: 4, Timestamp: 0, IOTimeout: 1}
		copy(r.SpaceName[:], "LS")
		copy(r.ResourceName[:], "me")
		s := leader.Sector{Record: r, Ext: &leader.Extension{Version: leader.ExtVersion, Acks: acks}}
		s.Seal()
		b := make([]byte, 512)
		if err := s.Encode(b); err != nil {
			t.Fatal(err)
		}
		if damage {
			b[leader.OffExtAcks] ^= 0xff
		}
		return b
	}
	for _, tt := range []struct {
		name   string
		carry  bool
		damage bool
		want   int
	}{
		{"carried", true, false, 2},
		{"not asked", false, false, 0},
		{"damaged extension", true, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := &Acquirer{Name: "LS", HostID: 2, HostName: "me", Timeouts: NewTimeouts(time.Second, time.Minute),
				Timestamp: func(time.Time) uint64 { return 100 }, Ext: &leader.Extension{Version: leader.ExtVersion, Watchdog: 60},
				CarryAcks: tt.carry}
			now := time.Unix(1000, 0)
			if st := a.Start(now); st.Kind != StepRead {
				t.Fatalf("first step %v", st.Kind)
			}
			st := a.Next(now, prev(tt.damage), nil)
			if st.Kind != StepWrite {
				t.Fatalf("step %v (%v), want a write", st.Kind, st.Err)
			}
			got, err := leader.DecodeSector(st.Sector)
			if err != nil || got.Ext == nil {
				t.Fatalf("acquire write: %v %v", err, got.ExtErr)
			}
			if len(got.Ext.Acks) != tt.want || got.Ext.Watchdog != 60 || got.Record.OwnerGeneration != 5 {
				t.Fatalf("acquire wrote acks %+v W %d generation %d; want %d acks, W 60, generation 5", got.Ext.Acks, got.Ext.Watchdog, got.Record.OwnerGeneration, tt.want)
			}
			if tt.want > 0 && fmt.Sprint(got.Ext.Acks) != fmt.Sprint(acks) {
				t.Errorf("acks %+v, want %+v", got.Ext.Acks, acks)
			}
			if (a.Previous().Ext != nil) != !tt.damage {
				t.Errorf("Previous().Ext = %+v, damaged %v", a.Previous().Ext, tt.damage)
			}
		})
	}
}

// inheritMessenger is a fakeMessenger that is also an Inheritor.
type inheritMessenger struct {
	fakeMessenger
	inherited []leader.Sector
}

func (m *inheritMessenger) Inherit(prev leader.Sector) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inherited = append(m.inherited, prev)
}

// TestLockspaceInherit: a release keeps our ack table in the sector, and
// the next join of the host id carries it over in the acquire write and
// hands the previous sector to an Inheritor before Joined.
func TestLockspaceInherit(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	acks := []leader.Ack{{HostID: 2, Gen16: 1, Status: leader.StatusDelivered, Seq: 4}}
	m := &inheritMessenger{fakeMessenger: fakeMessenger{payload: Payload{Ext: &leader.Extension{Version: leader.ExtVersion, Acks: acks}}}}
	a := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m}, false)
	n.runFor(10 * time.Second)
	if err := a.ls.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.state = hostExited
	if sec := n.sector(1); sec.Ext == nil || fmt.Sprint(sec.Ext.Acks) != fmt.Sprint(acks) || sec.Record.Timestamp != 0 {
		t.Fatalf("released sector: ext %+v (%v), timestamp %d; want the acks kept", sec.Ext, sec.ExtErr, sec.Record.Timestamp)
	}
	m2 := &inheritMessenger{fakeMessenger: fakeMessenger{payload: Payload{Ext: &leader.Extension{Version: leader.ExtVersion}}}}
	a2 := n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, Messenger: m2}, false)
	m2.mu.Lock()
	if len(m2.inherited) != 1 || m2.inherited[0].Ext == nil || fmt.Sprint(m2.inherited[0].Ext.Acks) != fmt.Sprint(acks) || len(m2.joined) != 1 {
		t.Fatalf("Inherit calls %+v, Joined %v", m2.inherited, m2.joined)
	}
	m2.mu.Unlock()
	ws := a2.ownWrites(a2.joinStart, a2.joinEnd)
	if len(ws) != 1 {
		t.Fatalf("acquire writes:\n%s", fmtRecs(ws))
	}
	if sec := n.sector(1); sec.Ext == nil || fmt.Sprint(sec.Ext.Acks) != fmt.Sprint(acks) || sec.Record.OwnerGeneration != 2 {
		t.Fatalf("after the acquire: ext %+v generation %d; want the acks carried over", sec.Ext, sec.Record.OwnerGeneration)
	}
}

// TestLockspaceOtherW: a peer whose sector states another W is reported
// once (per value) in the log.
func TestLockspaceOtherW(t *testing.T) {
	n := newLSNet(t, 512, leader.MiB, 1*time.Second)
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	n.join(Config{HostID: 1, HostName: "alpha", IOTimeout: 1 * time.Second, WatchdogTimeout: 60 * time.Second, Logger: log}, false)
	n.join(Config{HostID: 2, HostName: "beta", IOTimeout: 1 * time.Second, WatchdogTimeout: 90 * time.Second}, false)
	n.runFor(20 * time.Second)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if c := strings.Count(out, "another watchdog timeout W"); c != 1 || !strings.Contains(out, "peer=2 peer_w=1m30s our_w=1m0s") {
		t.Fatalf("%d warnings in the log:\n%s", c, out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
