package hostmsg_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// These benchmarks measure the CPU the pure machine costs the daemon per
// poll (Observe of one read of the area) and per message (a whole send,
// deliver, ack round). Speed goals live here and in bench/, never in tests:
//
//	go test -run '^$' -bench . -benchmem ./hostmsg/

// benchSector returns the sector host id would write with payload p.
func benchSector(id, gen, ts uint64, p hostmsg.Payload) leader.Sector {
	r := leader.Record{Magic: leader.Magic, Version: leader.Version, Flags: leader.FlagAlign1M,
		SectorSize: 512, MaxHosts: 1, OwnerID: id, OwnerGeneration: gen, Timestamp: ts, IOTimeout: 10}
	copy(r.SpaceName[:], "BENCH")
	copy(r.ResourceName[:], fmt.Sprintf("host%d", id))
	r.WriteID, r.WriteGeneration, r.WriteTimestamp = p.WriteID, p.WriteGeneration, p.WriteTimestamp
	s := leader.Sector{Record: r, Bitmap: p.Bitmap, Ext: p.Ext}
	s.Seal()
	return s
}

func benchMachine(b *testing.B, id uint64) *hostmsg.Machine {
	m, err := hostmsg.New(hostmsg.Config{HostID: id, Generation: 1, SectorSize: 512, MaxHosts: 2000})
	if err != nil {
		b.Fatal(err)
	}
	m.SetListeners(1)
	return m
}

// idleRead returns a read of host ids 1..n where the first live hosts run
// sanlock-msg with nothing to say and the others are free (never joined).
func idleRead(n, live int) []hostmsg.Peer {
	peers := make([]hostmsg.Peer, n)
	for i := range peers {
		id := uint64(i + 1)
		peers[i] = hostmsg.Peer{HostID: id, State: hostmsg.PeerFree}
		if i < live {
			s := benchSector(id, 1, 1000, hostmsg.Payload{Ext: &leader.Extension{Version: leader.ExtVersion}})
			peers[i].Sector, peers[i].State = &s, hostmsg.PeerLive
		} else {
			peers[i].Sector = &leader.Sector{}
		}
	}
	return peers
}

// BenchmarkObserve is one poll of an idle lockspace as host 1 sees it:
// Observe of the decoded sectors, then Ready and Payload as the driver
// calls them. hosts=2000 is a full-area read (every renewal scans it);
// live is how many of those sectors belong to joined hosts.
func BenchmarkObserve(b *testing.B) {
	for _, c := range []struct{ hosts, live int }{{2, 2}, {16, 16}, {2000, 2}, {2000, 2000}} {
		b.Run(fmt.Sprintf("hosts=%d/live=%d", c.hosts, c.live), func(b *testing.B) {
			m := benchMachine(b, 1)
			peers := idleRead(c.hosts, c.live)
			now := time.Unix(1_000_000, 0)
			m.Observe(now, peers)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				now = now.Add(250 * time.Millisecond)
				m.Observe(now, peers)
				m.Ready()
				m.Payload(now)
			}
		})
	}
}

// BenchmarkDecodeObserve is the same poll including the decoding of the
// raw sectors (leader.DecodeSector), as the daemon does after each read:
// the whole CPU cost of a poll above the I/O itself.
func BenchmarkDecodeObserve(b *testing.B) {
	for _, c := range []struct{ hosts, live int }{{2, 2}, {16, 16}, {2000, 2}, {2000, 2000}} {
		b.Run(fmt.Sprintf("hosts=%d/live=%d", c.hosts, c.live), func(b *testing.B) {
			m := benchMachine(b, 1)
			raw := make([]byte, 512*c.hosts)
			for i, p := range idleRead(c.hosts, c.live) {
				if err := p.Sector.Encode(raw[i*512 : (i+1)*512]); err != nil {
					b.Fatal(err)
				}
			}
			secs := make([]leader.Sector, c.hosts)
			peers := make([]hostmsg.Peer, c.hosts)
			now := time.Unix(1_000_000, 0)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				now = now.Add(250 * time.Millisecond)
				for i := range secs {
					s, err := leader.DecodeSector(raw[i*512 : (i+1)*512])
					if err != nil {
						b.Fatal(err)
					}
					secs[i] = s
					st := hostmsg.PeerFree
					if i < c.live {
						st = hostmsg.PeerLive
					}
					peers[i] = hostmsg.Peer{HostID: uint64(i + 1), Sector: &secs[i], State: st}
				}
				m.Observe(now, peers)
				m.Ready()
				m.Payload(now)
			}
		})
	}
}

// BenchmarkMessageRound is one whole message between two machines:
// host 1 sends and writes its sector, host 2 observes it, delivers and
// writes its ack, host 1 observes the ack and finishes the send. With
// codec, every sector written is encoded and every read decoded, as on
// disk.
func BenchmarkMessageRound(b *testing.B) {
	for _, codec := range []bool{false, true} {
		b.Run(fmt.Sprintf("codec=%v", codec), func(b *testing.B) {
			a, r := benchMachine(b, 1), benchMachine(b, 2)
			now := time.Unix(1_000_000, 0)
			var tsA, tsB uint64 = 1000, 1000
			ext := func() *leader.Extension { return &leader.Extension{Version: leader.ExtVersion} }
			secA := benchSector(1, 1, tsA, hostmsg.Payload{Ext: ext()})
			secB := benchSector(2, 1, tsB, hostmsg.Payload{Ext: ext()})
			rawA, rawB := make([]byte, 512), make([]byte, 512)
			// write stores what a host writes; read returns the area.
			write := func(sec *leader.Sector, raw []byte, id uint64, ts *uint64, m *hostmsg.Machine) {
				p, _ := m.Payload(now)
				*ts++
				*sec = benchSector(id, 1, *ts, p)
				if codec {
					if err := sec.Encode(raw); err != nil {
						b.Fatal(err)
					}
				}
				m.Written(now, nil)
			}
			read := func() []hostmsg.Peer {
				if codec {
					var err error
					if secA, err = leader.DecodeSector(rawA); err != nil {
						b.Fatal(err)
					}
					if secB, err = leader.DecodeSector(rawB); err != nil {
						b.Fatal(err)
					}
				}
				return []hostmsg.Peer{{HostID: 1, Sector: &secA, State: hostmsg.PeerLive}, {HostID: 2, Sector: &secB, State: hostmsg.PeerLive}}
			}
			write(&secA, rawA, 1, &tsA, a)
			write(&secB, rawB, 2, &tsB, r)
			a.Observe(now, read())
			r.Observe(now, read())
			msg := hostmsg.Message{Targets: []uint64{2}, Code: leader.EventUser0}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				seq, err := a.Send(now, msg)
				if err != nil {
					b.Fatal(err)
				}
				write(&secA, rawA, 1, &tsA, a)
				now = now.Add(50 * time.Millisecond)
				r.Observe(now, read())
				rd := r.Ready()
				if len(rd.Deliveries) != 1 || rd.Deliveries[0].Seq != seq {
					b.Fatalf("seq %d: receiver got %+v", seq, rd.Deliveries)
				}
				if err := r.Ack(now, rd.Deliveries[0].ID(), leader.StatusDelivered); err != nil {
					b.Fatal(err)
				}
				write(&secB, rawB, 2, &tsB, r)
				now = now.Add(50 * time.Millisecond)
				a.Observe(now, read())
				if rd := a.Ready(); len(rd.Results) != 1 || rd.Results[0].Err() != nil {
					b.Fatalf("seq %d: sender got %+v", seq, rd.Results)
				}
			}
		})
	}
}
