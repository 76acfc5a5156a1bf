package hostmsg

import (
	"slices"
	"testing"
	"time"
)

// TestRandomRunsDoorbells is TestRandomRuns with doorbells: hosts poll
// their doorbell and read what their Plan asks for between renewals,
// share doorbells (1 to 4 of them), and, in faulty runs, lose and tear
// ring writes and find their doorbells corrupt, zeroed or foreign. The
// promises are the same: exactly once, in order, a result for every send,
// and every send to a live sanlock-msg host succeeds without faults. In
// fault-free runs the doorbells must also do their job: half the messages
// reach their target within 300 ms of reaching the disk, where renewals
// alone (every 2.5 s here) would take 1.25 s on average.
func TestRandomRunsDoorbells(t *testing.T) {
	seeds := 150 // each doorbell run steps more often than TestRandomRuns'
	if testing.Short() {
		seeds = 30
	}
	msgs, rings, gaps := 0, int64(0), int64(0)
	var lat []time.Duration
	for seed := int64(1); seed <= int64(seeds); seed++ {
		var sm *sim
		faultFree := false
		msgs += randomRunWith(t, seed, func(s *sim, faulty bool) {
			s.enableDoorbells(1 + s.rng.Intn(4))
			if faulty {
				s.bells.lost = s.rng.Float64() * 0.3
				s.bells.torn = s.rng.Float64() * 0.1
			}
			sm, faultFree = s, !faulty
		})
		if t.Failed() {
			return
		}
		for _, h := range sm.hosts {
			if h.m != nil {
				st := h.m.RingStats()
				rings += st.RingsSent
				gaps += st.Gaps
			}
		}
		if faultFree {
			lat = append(lat, sm.latencies()...)
		}
	}
	if rings == 0 || len(lat) == 0 {
		t.Fatalf("%d targets rung, %d latencies", rings, len(lat))
	}
	slices.Sort(lat)
	p50, p90 := lat[len(lat)/2], lat[len(lat)*9/10]
	t.Logf("%d seeds, %d messages, %d targets rung, %d doorbell gaps; fault-free latency p50 %v p90 %v max %v (%d)",
		seeds, msgs, rings, gaps, p50, p90, lat[len(lat)-1], len(lat))
	if p50 > 300*time.Millisecond {
		t.Errorf("fault-free latency p50 %v, want ≤ 300ms: the doorbells are not doing their job", p50)
	}
}

// latencies returns, for every message delivered by a sanlock-msg host to
// a sanlock-msg host, the time from its first write to its delivery.
func (s *sim) latencies() []time.Duration {
	var out []time.Duration
	for _, h := range s.hosts {
		for g, rs := range h.results {
			for _, r := range rs {
				if r.SentAt.IsZero() {
					continue
				}
				for _, tr := range r.Targets {
					to := s.hosts[tr.HostID]
					if to == nil || to.native {
						continue
					}
					for _, ds := range to.delivered {
						for _, d := range ds {
							if d.From == h.id && d.FromGen == g && d.Seq == r.Seq {
								out = append(out, d.At.Sub(r.SentAt))
							}
						}
					}
				}
			}
		}
	}
	return out
}
