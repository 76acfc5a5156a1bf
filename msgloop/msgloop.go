// Package msgloop joins the message protocol (hostmsg, a pure state
// machine) to the lockspace loop (delta): the conversions between their
// types, and Messenger, a delta.Messenger that drives a hostmsg.Machine
// from one goroutine.
//
// The daemon uses the conversions in its own, locked, messenger. Messenger
// is for drivers that call Lockspace.Step from a single goroutine, such as
// deterministic simulations of many hosts on one fake clock:
//
//	clk := clock.NewFake(start)
//	dev := delta.NewMemDevice(size, 512)    // after delta.Init
//	for id := 1; id <= n; id++ {
//		m := &msgloop.Messenger{OnReady: ...}
//		ls, _ := delta.Start(ctx, delta.NewIO(dev, clk), delta.Config{
//			HostID: id, Clock: clk, Messenger: m, ...})
//		// next[id] = clk.Now()
//	}
//	for {
//		// advance clk to the earliest next[id]; for each host due:
//		next[id], err = ls.Step(ctx)
//		// m.Machine().Send(...) between steps, then Step that host now
//	}
package msgloop

import (
	"time"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Peers converts a read of host sectors to the machine's input. The peers
// point into v, which is only valid during Observe.
func Peers(v *delta.View) []hostmsg.Peer {
	peers := make([]hostmsg.Peer, len(v.Sectors))
	for i := range v.Sectors {
		peers[i] = hostmsg.Peer{HostID: v.IDs[i], Sector: &v.Sectors[i],
			State: hostmsg.PeerState(v.States[i]), Bad: v.Bad[i] != nil}
	}
	return peers
}

// Observe feeds a read to m: ObserveArea for a read of the whole used
// area, Observe otherwise.
func Observe(m *hostmsg.Machine, now time.Time, v *delta.View) {
	if v.Area {
		m.ObserveArea(now, Peers(v))
		return
	}
	m.Observe(now, Peers(v))
}

// Doorbell feeds a poll of our doorbell to m, and the poll interval.
func Doorbell(m *hostmsg.Machine, now time.Time, every time.Duration, db *leader.Doorbell, err error) {
	m.SetPollInterval(every)
	m.ObserveDoorbell(now, db, err)
}

// Plan converts the machine's plan for the loop.
func Plan(p hostmsg.Plan) delta.Plan {
	return delta.Plan{Read: p.Read, Scan: p.Scan, Ring: p.Ring, Next: p.Next, Fast: p.Fast}
}

// Payload converts the machine's payload for the loop.
func Payload(p hostmsg.Payload) delta.Payload {
	return delta.Payload{WriteID: p.WriteID, WriteGeneration: p.WriteGeneration, WriteTimestamp: p.WriteTimestamp,
		Bitmap: p.Bitmap, Ext: p.Ext}
}

// Config returns c completed for a membership: our identity and what the
// geometry fixes (sector size, max_hosts, doorbells).
func Config(c hostmsg.Config, hostID, generation uint64, geo leader.Geometry) hostmsg.Config {
	c.HostID, c.Generation = hostID, generation
	c.SectorSize, c.MaxHosts, c.Doorbells = geo.SectorSize, geo.MaxHosts, geo.Spare()
	return c
}

// Messenger is a delta.Messenger over a hostmsg.Machine, for a driver
// that calls the loop and the machine from one goroutine (it has no lock).
// The machine is made at Joined from Config (identity and geometry filled
// in).
type Messenger struct {
	// Config is the machine's configuration, less what Joined fills in.
	Config hostmsg.Config
	// Listeners is the listener count set on the machine at Joined.
	Listeners int
	// OnReady, if set, receives what the machine produced after every
	// Observe, Tick and Written (deliveries, results, a reset). Deliveries
	// that await an ack are acked "delivered" once OnReady returns, as the
	// daemon does once a listener's queue took them.
	OnReady func(now time.Time, rd hostmsg.Ready)

	m *hostmsg.Machine
}

var _ delta.Messenger = (*Messenger)(nil)

// Machine returns the machine (nil before Joined).
func (s *Messenger) Machine() *hostmsg.Machine { return s.m }

// Joined makes the machine.
func (s *Messenger) Joined(hostID, generation uint64, geo leader.Geometry) {
	m, err := hostmsg.New(Config(s.Config, hostID, generation, geo))
	if err != nil {
		// Only a delta bug can get here (bad host id or generation).
		panic("msgloop: " + err.Error())
	}
	m.SetListeners(s.Listeners)
	s.m = m
}

func (s *Messenger) ready(now time.Time) {
	if !s.m.HasReady() {
		return
	}
	rd := s.m.Ready()
	if s.OnReady != nil {
		s.OnReady(now, rd)
	}
	for _, d := range rd.Deliveries {
		if d.AwaitsAck {
			if err := s.m.Ack(now, d.ID(), leader.StatusDelivered); err != nil {
				panic("msgloop: " + err.Error()) // the machine just handed it out
			}
		}
	}
}

// Observe implements delta.Messenger.
func (s *Messenger) Observe(now time.Time, v *delta.View) {
	Observe(s.m, now, v)
	s.ready(now)
}

// Doorbell implements delta.Messenger.
func (s *Messenger) Doorbell(now time.Time, every time.Duration, db *leader.Doorbell, err error) {
	Doorbell(s.m, now, every, db, err)
}

// Plan implements delta.Messenger.
func (s *Messenger) Plan(now time.Time) delta.Plan { return Plan(s.m.Plan(now)) }

// Rang implements delta.Messenger.
func (s *Messenger) Rang(now time.Time, targets []uint64, err error) { s.m.Rang(now, targets, err) }

// Payload implements delta.Messenger.
func (s *Messenger) Payload(now time.Time) (delta.Payload, bool) {
	p, urgent := s.m.Payload(now)
	return Payload(p), urgent
}

// Written implements delta.Messenger.
func (s *Messenger) Written(now time.Time, err error) {
	s.m.Written(now, err)
	s.ready(now)
}

// Tick implements delta.Messenger.
func (s *Messenger) Tick(now time.Time) {
	s.m.Tick(now)
	s.ready(now)
}
