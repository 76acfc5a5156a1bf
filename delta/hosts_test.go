package delta

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// hostRec describes a record as a peer would write it.
type hostRec struct {
	owner, gen, ts uint64
	io             uint16
	name           string
	bad            string // "", "magic", "name", "checksum"
	ext            bool
	badExt         bool
	w              uint16 // W in the extension
}

func (h hostRec) sector() *leader.Sector {
	r := leader.Record{Magic: leader.Magic, Version: leader.Version, Flags: leader.FlagAlign1M, SectorSize: 512, MaxHosts: 1,
		OwnerID: h.owner, OwnerGeneration: h.gen, Timestamp: h.ts, IOTimeout: h.io}
	_ = leader.SetName(&r.SpaceName, "LS", leader.MaxSpaceName)
	_ = leader.SetName(&r.ResourceName, h.name, leader.MaxHostName)
	switch h.bad {
	case "magic":
		r.Magic = leader.PaxosMagic
	case "name":
		_ = leader.SetName(&r.SpaceName, "OTHER", leader.MaxSpaceName)
	}
	if h.ext || h.badExt {
		r.Mark()
	}
	r.Seal()
	if h.bad == "checksum" {
		r.Checksum++
	}
	s := &leader.Sector{Record: r}
	if h.ext {
		s.Ext = &leader.Extension{Version: leader.ExtVersion, Watchdog: h.w}
	}
	if h.badExt {
		s.ExtErr = leader.ErrExtChecksum
	}
	return s
}

// TestHostStates checks Hosts against sanlock's host state rules
// (sanlock-format.md §4.4) with simulated time. Each step observes a record
// (if rec is set) and then checks the state of host id at that time.
func TestHostStates(t *testing.T) {
	type step struct {
		at   time.Duration
		id   uint64   // host id; 0 means 2
		rec  *hostRec // observed at `at`, before the check
		want HostState
	}
	const eps = time.Nanosecond
	live := func(ts uint64, io uint16) *hostRec { return &hostRec{owner: 2, gen: 1, ts: ts, io: io, name: "peer"} }
	tests := []struct {
		name   string
		ownIO  time.Duration
		steps  []step
		deadAt time.Duration // DeadAt of host 2 at the end, if non-zero
	}{
		{name: "never read is FREE", ownIO: 1 * time.Second, steps: []step{{at: 0, want: StateFree}, {at: time.Hour, want: StateFree}}},
		{
			name: "first look is UNKNOWN until a change, then FAIL and DEAD from the first look", ownIO: 10 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 1), want: StateUnknown},
				{at: 4 * time.Second, rec: live(100, 1), want: StateUnknown},
				{at: 8 * time.Second, want: StateUnknown},
				{at: 8*time.Second + eps, want: StateFail},
				{at: 68 * time.Second, rec: live(100, 1), want: StateFail},
				{at: 68*time.Second + eps, want: StateDead},
			},
			deadAt: 68 * time.Second,
		},
		{
			name: "a change makes it LIVE; FAIL after 8·io_o, DEAD after 8·io_o+W", ownIO: 10 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 1), want: StateUnknown},
				{at: 2 * time.Second, rec: live(102, 1), want: StateLive},
				{at: 3 * time.Second, rec: live(102, 1), want: StateLive},
				{at: 10 * time.Second, want: StateLive},
				{at: 10*time.Second + eps, want: StateFail},
				{at: 70 * time.Second, want: StateFail},
				{at: 70*time.Second + eps, want: StateDead},
				{at: 80 * time.Second, rec: live(103, 1), want: StateLive}, // back from the dead
			},
			deadAt: 148 * time.Second,
		},
		{
			name: "io_timeout comes from the peer's record", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 10), want: StateUnknown},
				{at: 1 * time.Second, rec: live(101, 10), want: StateLive},
				{at: 81 * time.Second, want: StateLive},
				{at: 81*time.Second + eps, want: StateFail},
				{at: 141 * time.Second, want: StateFail},
				{at: 141*time.Second + eps, want: StateDead},
			},
			deadAt: 141 * time.Second,
		},
		{
			name: "io_timeout 0 in the record: own io_timeout", ownIO: 3 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 0), want: StateUnknown},
				{at: 1 * time.Second, rec: live(101, 0), want: StateLive},
				{at: 25 * time.Second, want: StateLive},
				{at: 25*time.Second + eps, want: StateFail},
				{at: 85*time.Second + eps, want: StateDead},
			},
			deadAt: 85 * time.Second,
		},
		{
			name: "timestamp 0 is FREE: never joined, then released", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, rec: &hostRec{}, want: StateFree},
				{at: 500 * time.Second, rec: &hostRec{}, want: StateFree},
				{at: 501 * time.Second, rec: live(7, 1), want: StateLive}, // the first change after a free first look
				{at: 502 * time.Second, rec: &hostRec{owner: 2, gen: 1, io: 1, name: "peer"}, want: StateFree},
				{at: 900 * time.Second, want: StateFree},
			},
		},
		{
			name: "our own host id is LIVE however old, FREE when released", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, id: 1, rec: &hostRec{owner: 1, gen: 3, ts: 9, io: 1, name: "me"}, want: StateLive},
				{at: time.Hour, id: 1, want: StateLive},
				{at: time.Hour, id: 1, rec: &hostRec{owner: 1, gen: 3, io: 1, name: "me"}, want: StateFree},
			},
		},
		{
			name: "a new generation with the same timestamp is a change", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 1), want: StateUnknown},
				{at: 1 * time.Second, rec: &hostRec{owner: 2, gen: 2, ts: 100, io: 1, name: "peer"}, want: StateLive},
			},
		},
		{
			name: "a new owner id with the same timestamp is a change", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 1), want: StateUnknown},
				{at: 1 * time.Second, rec: &hostRec{owner: 7, gen: 1, ts: 100, io: 1, name: "peer"}, want: StateLive},
			},
		},
		{
			name: "timestamp going backwards is still a change", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 1), want: StateUnknown},
				{at: 1 * time.Second, rec: live(3, 1), want: StateLive},
			},
		},
		{
			name: "a bad record's timestamp still counts", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 1), want: StateUnknown},
				{at: 1 * time.Second, rec: &hostRec{owner: 9, gen: 9, ts: 101, io: 1, name: "x", bad: "magic"}, want: StateLive},
				{at: 5 * time.Second, rec: &hostRec{owner: 9, gen: 9, ts: 102, io: 1, name: "x", bad: "name"}, want: StateLive},
				{at: 13 * time.Second, want: StateLive},
				{at: 13*time.Second + eps, want: StateFail},
			},
		},
		{
			name: "a bad record's owner fields are not a change", ownIO: 1 * time.Second,
			steps: []step{
				{at: 0, rec: live(100, 1), want: StateUnknown},
				{at: 1 * time.Second, rec: &hostRec{owner: 9, gen: 9, ts: 100, io: 1, name: "x", bad: "magic"}, want: StateUnknown},
				{at: 2 * time.Second, rec: &hostRec{owner: 3, gen: 4, ts: 100, io: 1, name: "y", bad: "magic"}, want: StateUnknown},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHosts(1, "LS", NewTimeouts(tt.ownIO, 0))
			for i, st := range tt.steps {
				id := st.id
				if id == 0 {
					id = 2
				}
				now := simEpoch.Add(st.at)
				if st.rec != nil {
					h.Observe(now, id, st.rec.sector())
				}
				if got := h.State(now, id); got != st.want {
					info := h.Info(id)
					t.Fatalf("step %d at %v: host %d is %v, want %v (first check %v, last live %v)", i, st.at, id, got, st.want,
						info.FirstCheck.Sub(simEpoch), info.LastLive.Sub(simEpoch))
				}
			}
			if tt.deadAt != 0 {
				if got := h.DeadAt(2).Sub(simEpoch); got != tt.deadAt {
					t.Errorf("DeadAt %v, want %v", got, tt.deadAt)
				}
			}
		})
	}
}

// TestHostWatchdog: a peer whose extension states a longer watchdog
// timeout W than ours is DEAD only 8·io + its W after its last renewal
// (declaring it dead at our W would be unsafe); a plain sanlock host gets
// our W, as sanlock assumes.
func TestHostWatchdog(t *testing.T) {
	h := NewHosts(1, "LS", NewTimeouts(time.Second, 60*time.Second))
	h.Observe(simEpoch, 2, hostRec{owner: 2, gen: 1, ts: 10, io: 1, name: "long", ext: true, w: 120}.sector())
	h.Observe(simEpoch, 3, hostRec{owner: 3, gen: 1, ts: 10, io: 1, name: "sanlock"}.sector())
	if got := h.Info(2).Watchdog; got != 120 {
		t.Fatalf("W of host 2: %d", got)
	}
	if got, want := h.DeadAt(2), simEpoch.Add(8*time.Second+120*time.Second); !got.Equal(want) {
		t.Fatalf("host 2 dead at %v, want %v", got, want)
	}
	if got, want := h.DeadAt(3), simEpoch.Add(8*time.Second+60*time.Second); !got.Equal(want) {
		t.Fatalf("host 3 dead at %v, want %v", got, want)
	}
	at := simEpoch.Add(100 * time.Second)
	if st := h.State(at, 2); st != StateFail {
		t.Fatalf("host 2 at +100 s: %v, want FAIL (its W is 120 s)", st)
	}
	if st := h.State(at, 3); st != StateDead {
		t.Fatalf("host 3 at +100 s: %v, want DEAD", st)
	}
}

// TestHostInfo checks what Hosts records about a peer.
func TestHostInfo(t *testing.T) {
	h := NewHosts(1, "LS", NewTimeouts(1*time.Second, 0))
	if got := h.Info(5); got.HostID != 5 || !got.FirstCheck.IsZero() || !h.DeadAt(5).IsZero() {
		t.Fatalf("unread host: %+v", got)
	}
	h.Observe(simEpoch, 2, hostRec{owner: 2, gen: 3, ts: 10, io: 4, name: "beta", ext: true}.sector())
	info := h.Info(2)
	if info.OwnerID != 2 || info.Generation != 3 || info.Timestamp != 10 || info.IOTimeout != 4 || info.Name != "beta" ||
		!info.Messenger || info.Bad != nil || !info.FirstCheck.Equal(simEpoch) || !info.LastLive.Equal(simEpoch) {
		t.Fatalf("info %+v", info)
	}

	// A bad record: owner fields kept from the last good one, timestamp
	// and io_timeout taken, Bad set.
	h.Observe(simEpoch.Add(time.Second), 2, hostRec{owner: 8, gen: 8, ts: 11, io: 2, name: "evil", bad: "magic"}.sector())
	info = h.Info(2)
	if info.OwnerID != 2 || info.Generation != 3 || info.Name != "beta" || info.Timestamp != 11 || info.IOTimeout != 2 {
		t.Fatalf("after a bad record: %+v", info)
	}
	if !errors.Is(info.Bad, leader.ErrMagic) || info.Messenger {
		t.Fatalf("Bad %v Messenger %v", info.Bad, info.Messenger)
	}
	if !info.LastLive.Equal(simEpoch.Add(time.Second)) {
		t.Fatalf("LastLive %v", info.LastLive.Sub(simEpoch))
	}
	// A bad checksum is reported too; a good record clears Bad.
	h.Observe(simEpoch.Add(2*time.Second), 2, hostRec{owner: 2, gen: 3, ts: 12, io: 4, name: "beta", bad: "checksum"}.sector())
	if info = h.Info(2); !errors.Is(info.Bad, leader.ErrChecksum) {
		t.Fatalf("Bad %v, want ErrChecksum", info.Bad)
	}
	h.Observe(simEpoch.Add(3*time.Second), 2, hostRec{owner: 2, gen: 4, ts: 13, io: 4, name: "beta2", badExt: true}.sector())
	if info = h.Info(2); info.Bad != nil || info.Generation != 4 || info.Name != "beta2" || info.BadExt != 1 {
		t.Fatalf("after a good record: %+v", info)
	}

	h.Observe(simEpoch, 7, hostRec{owner: 7, gen: 1, ts: 5, io: 1, name: "g"}.sector())
	h.Observe(simEpoch, 9, hostRec{owner: 9, gen: 1, io: 1, name: "released"}.sector())
	h.Observe(simEpoch, 11, hostRec{}.sector())
	if got := h.Highest(); got != 7 {
		t.Errorf("Highest = %d, want 7 (9 is released, 11 never used)", got)
	}
	ids := h.IDs()
	slices.Sort(ids)
	if fmt.Sprint(ids) != "[2 7 9 11]" {
		t.Errorf("IDs = %v", ids)
	}
}
