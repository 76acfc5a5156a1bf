package delta

import (
	"sort"
	"time"
)

// Health summarises our renewals.
type Health string

// Renewal health values.
const (
	HealthOK      Health = "ok"      // last renewal within its interval
	HealthLate    Health = "late"    // a renewal is overdue (retrying)
	HealthWarn    Health = "warn"    // no success for renewal_warn (6·io)
	HealthFailed  Health = "failed"  // lockspace failed; no more writes
	HealthStopped Health = "stopped" // closed or released
)

// Status is a snapshot of a lockspace membership.
type Status struct {
	Name        string
	HostID      uint64
	Generation  uint64
	HostName    string
	Path        string
	Offset      int64
	SectorSize  int
	AlignSize   int
	MaxHosts    int
	IOTimeout   time.Duration
	JoinedAt    time.Time
	LastRenewal time.Time // start of the last successful renewal
	Expiry      time.Time // LastRenewal + renewal_fail
	Health      Health
	Err         error
	Renewals    int64 // successful renewals since join
	RenewFails  int64 // failed renewal attempts
	Reads       int64 // reads of the used part or the whole area (renewals, scans)
	FullScans   int64 // reads of the whole area
	Writes      int64 // successful writes of our sector after the join
	// PollEvery is the doorbell poll interval (0: renewals only).
	PollEvery time.Duration
	ReadHigh  uint64 // highest host id the used part covers
	Doorbell  DoorbellStats
	IO        IOStats
}

// Status returns a snapshot.
func (ls *Lockspace) Status() Status {
	now := ls.clk.Now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := Status{
		Name: ls.cfg.Name, HostID: ls.cfg.HostID, Generation: ls.last.OwnerGeneration,
		HostName: ls.cfg.HostName, Path: ls.area.IO.Device().String(), Offset: ls.area.Offset,
		SectorSize: ls.area.Geo.SectorSize, AlignSize: ls.area.Geo.AlignSize, MaxHosts: ls.area.Geo.MaxHosts,
		IOTimeout: ls.t.IO, JoinedAt: ls.joinedAt, LastRenewal: ls.lastRenewal,
		Expiry: ls.lastRenewal.Add(ls.t.RenewalFail()), Err: ls.err,
		Renewals: ls.renewals, RenewFails: ls.renewFails, Reads: ls.polls, FullScans: ls.fullScans,
		Writes: ls.writes, PollEvery: ls.pollEvery, ReadHigh: ls.readHigh(), Doorbell: ls.bell, IO: ls.area.IO.Stats(),
	}
	since := now.Sub(ls.lastRenewal)
	switch {
	case ls.err != nil:
		s.Health = HealthFailed
	case ls.closed:
		s.Health = HealthStopped
	case since >= ls.t.RenewalWarn():
		s.Health = HealthWarn
	case since > ls.t.RenewalInterval()+time.Second:
		s.Health = HealthLate
	default:
		s.Health = HealthOK
	}
	return s
}

// HostStatus is one host id as this host sees it.
type HostStatus struct {
	HostInfo
	State HostState
	// DeadAt is when the host becomes DEAD if it does not renew again.
	DeadAt time.Time
}

// Hosts returns every host id that has been read with a non-zero owner or
// timestamp, and our own (even before the loop first read it back), sorted
// by host id.
func (ls *Lockspace) Hosts() []HostStatus {
	now := ls.clk.Now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []HostStatus
	self := false
	for _, id := range ls.hosts.IDs() {
		info := ls.hosts.Info(id)
		if info.OwnerID == 0 && info.Timestamp == 0 && id != ls.cfg.HostID {
			continue
		}
		self = self || id == ls.cfg.HostID
		out = append(out, HostStatus{HostInfo: info, State: ls.hosts.State(now, id), DeadAt: ls.hosts.DeadAt(id)})
	}
	if !self {
		// Joined, but the loop has not read the area back yet.
		r := ls.last
		out = append(out, HostStatus{State: StateLive, HostInfo: HostInfo{HostID: ls.cfg.HostID, OwnerID: r.OwnerID,
			Generation: r.OwnerGeneration, Timestamp: r.Timestamp, IOTimeout: r.IOTimeout, Name: r.ResourceNameString(),
			Messenger: true}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].HostID < out[j].HostID })
	return out
}

// Host returns host id's status.
func (ls *Lockspace) Host(id uint64) HostStatus {
	now := ls.clk.Now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return HostStatus{HostInfo: ls.hosts.Info(id), State: ls.hosts.State(now, id), DeadAt: ls.hosts.DeadAt(id)}
}
