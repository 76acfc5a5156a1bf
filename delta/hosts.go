package delta

import (
	"fmt"
	"slices"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// HostState is the state of a host id as seen by another host, with
// sanlock's values (sanlk_host.flags & 0xF; sanlock-format.md §4.4).
type HostState int

// Host states.
const (
	StateUnknown HostState = 1 // not enough observations yet
	StateFree    HostState = 2 // timestamp 0: never joined, or released
	StateLive    HostState = 3 // renewed within 8·io of its io_timeout
	StateFail    HostState = 4 // no renewal for 8·io: failing, not yet reset
	StateDead    HostState = 5 // no renewal for 8·io + W: reset by its watchdog
)

// String returns sanlock's name for the state.
func (s HostState) String() string {
	switch s {
	case StateUnknown:
		return "UNKNOWN"
	case StateFree:
		return "FREE"
	case StateLive:
		return "LIVE"
	case StateFail:
		return "FAIL"
	case StateDead:
		return "DEAD"
	}
	return fmt.Sprintf("STATE(%d)", int(s))
}

// HostInfo is what a host knows about one host id of its lockspace.
type HostInfo struct {
	HostID     uint64
	OwnerID    uint64
	Generation uint64
	Timestamp  uint64
	IOTimeout  uint16
	Name       string // resource name: the owner's host name
	// FirstCheck is the local time of the first look at this host id;
	// LastLive the local time the (owner, generation, timestamp) triple
	// last changed. Both zero if never read.
	FirstCheck, LastLive time.Time
	// LastRead is the local time its sector was last read.
	LastRead time.Time
	// Messenger reports that the last sector read carried the sanlock-msg
	// marker: the owner runs sanlock-msg, not plain sanlock.
	Messenger bool
	// Watchdog is the watchdog fire timeout W, in seconds, that the
	// owner's extension states (0: a plain sanlock host, or not said):
	// its host_dead uses it instead of our own W.
	Watchdog uint16
	// Bad reports that the last sector read failed the leader checks
	// (magic, version, name or checksum); its liveness is still tracked,
	// as sanlock does, but its messages are ignored.
	Bad error
	// BadExt counts sectors read whose extension failed its CRC.
	BadExt int
}

// Hosts tracks every host id of a lockspace from the sectors read and
// computes their states with sanlock's rules. It is not safe for concurrent
// use; the lockspace loop owns it.
type Hosts struct {
	own     uint64
	name    string
	t       Timeouts
	hosts   map[uint64]*HostInfo
	highest uint64 // Highest, kept up to date by Observe
}

// NewHosts returns a table for the host with id own in lockspace name;
// t supplies the watchdog timeout and the io_timeout used for hosts whose
// record has none.
func NewHosts(own uint64, name string, t Timeouts) *Hosts {
	return &Hosts{own: own, name: name, t: t, hosts: make(map[uint64]*HostInfo)}
}

// Observe records sector s of host id seen at local time now.
func (h *Hosts) Observe(now time.Time, id uint64, s *leader.Sector) {
	hi := h.hosts[id]
	if hi == nil {
		hi = &HostInfo{HostID: id, FirstCheck: now}
		h.hosts[id] = hi
	}
	hi.LastRead = now
	r := &s.Record
	hi.Bad = r.Verify(h.name)
	if s.ExtErr != nil {
		hi.BadExt++
	}
	hi.Messenger = s.Ours()
	if s.Ext != nil {
		hi.Watchdog = s.Ext.Watchdog
	} else if !hi.Messenger {
		hi.Watchdog = 0
	}
	changed := r.Timestamp != hi.Timestamp
	if hi.Bad == nil {
		changed = changed || r.OwnerID != hi.OwnerID || r.OwnerGeneration != hi.Generation
	}
	if !hi.LastLive.IsZero() && !changed {
		return
	}
	if hi.Bad == nil {
		hi.OwnerID, hi.Generation, hi.Name = r.OwnerID, r.OwnerGeneration, r.ResourceNameString()
	}
	hi.Timestamp, hi.IOTimeout = r.Timestamp, r.IOTimeout
	if hi.Timestamp != 0 {
		h.highest = max(h.highest, id)
	} else if id == h.highest {
		h.highest = h.scanHighest()
	}
	if hi.LastLive.IsZero() {
		// First look: last_live = first_check, so the host stays UNKNOWN
		// until a change is seen.
		hi.LastLive = hi.FirstCheck
		return
	}
	hi.LastLive = now
}

// Info returns what is known about host id (zero HostInfo with only HostID
// set if it was never read).
func (h *Hosts) Info(id uint64) HostInfo {
	if hi := h.hosts[id]; hi != nil {
		return *hi
	}
	return HostInfo{HostID: id}
}

// State computes host id's state at now (sanlock-format.md §4.4).
func (h *Hosts) State(now time.Time, id uint64) HostState {
	hi := h.hosts[id]
	if hi == nil || hi.Timestamp == 0 {
		return StateFree
	}
	if id == h.own {
		return StateLive
	}
	t := h.peer(hi)
	since := now.Sub(hi.LastLive)
	switch {
	case since <= t.HostFail() && hi.FirstCheck.Equal(hi.LastLive):
		return StateUnknown
	case since <= t.HostFail():
		return StateLive
	case since > t.HostDead():
		return StateDead
	default:
		return StateFail
	}
}

// DeadAt returns when host id becomes DEAD if it does not change again.
func (h *Hosts) DeadAt(id uint64) time.Time {
	hi := h.hosts[id]
	if hi == nil {
		return time.Time{}
	}
	return hi.LastLive.Add(h.peer(hi).HostDead())
}

// peer returns the timeouts toward host hi: its io_timeout, and its W if
// its extension states one.
func (h *Hosts) peer(hi *HostInfo) Timeouts {
	t := h.t.Other(hi.IOTimeout)
	if hi.Watchdog > 0 {
		t.Watchdog = time.Duration(hi.Watchdog) * time.Second
	}
	return t
}

// Highest returns the highest host id whose last read showed a non-zero
// timestamp (a joined host), or 0.
func (h *Hosts) Highest() uint64 { return h.highest }

func (h *Hosts) scanHighest() uint64 {
	var hi uint64
	for id, x := range h.hosts {
		if x.Timestamp != 0 && id > hi {
			hi = id
		}
	}
	return hi
}

// Fast returns, in order, the joined hosts other than us whose host_fail
// (8·io_timeout in their record) is shorter than twice every: a host that
// reads the area only every renewal interval every would see them FAIL
// between two reads while they renew (sanlock does, on a lockspace with
// mixed io_timeouts).
func (h *Hosts) Fast(every time.Duration) []uint64 {
	var ids []uint64
	for id, x := range h.hosts {
		if id != h.own && x.Timestamp != 0 && h.peer(x).HostFail() < 2*every {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// IDs returns every host id read so far, in no particular order.
func (h *Hosts) IDs() []uint64 {
	ids := make([]uint64, 0, len(h.hosts))
	for id := range h.hosts {
		ids = append(ids, id)
	}
	return ids
}
