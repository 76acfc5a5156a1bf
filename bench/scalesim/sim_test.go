package main

import (
	"math/rand"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// TestMix runs the scale simulation's message mix on a small area at both
// sector sizes: fan-in, a multicast and random pairs at the same time,
// every host joined. Every message must reach each of its targets once
// and be acked, and no write may land outside its host's sector or the
// spare sectors. Speed is not asserted (bench/README.md has the numbers).
func TestMix(t *testing.T) {
	for _, geo := range [][2]int{{512, leader.MiB}, {4096, leader.MiB}} {
		g, err := leader.NewGeometry(geo[0], geo[1])
		if err != nil {
			t.Fatal(err)
		}
		t.Run(geoName(g), func(t *testing.T) {
			const hosts = 60
			s, err := newSim(g, time.Second, hosts, 7)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.joinAll(time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := s.runFor(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			mc := mixConfig{fanSenders: 12, mcTargets: 25, pairPool: 20, pairRate: 2, window: 30 * time.Second, drain: 3 * time.Minute}
			rng := rand.New(rand.NewSource(7))
			gr, err := assign(hosts, &mc, rng)
			if err != nil {
				t.Fatal(err)
			}
			m := newMix(s, mc, gr, rng)
			if _, _, err := m.run(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []class{classFanIn, classMulticast, classPair} {
				if m.sentN[c] == 0 {
					t.Errorf("no %s message sent", c)
				}
			}
			for _, f := range m.failures {
				t.Error(f)
			}
			if m.dups != 0 {
				t.Errorf("%d duplicate deliveries", m.dups)
			}
			t.Logf("sent %v; one-way p50 %v (pairs)", m.sentN, percentile(m.oneWay[classPair], 50))
			checkWrites(t, s)
		})
	}
}

// checkWrites checks that every host wrote only its own sector and spare
// sectors, one sector at a time, and that every spare-sector write was a
// doorbell the lockspace counts.
func checkWrites(t *testing.T, s *sim) {
	t.Helper()
	for _, h := range s.hosts {
		if h.io.strayWrites != 0 {
			t.Errorf("host %d: %d writes outside its sector and the spare sectors", h.id, h.io.strayWrites)
		}
		if rings := h.ls.Status().Doorbell.RingsWritten; h.io.spareWrites != rings {
			t.Errorf("host %d: %d writes of spare sectors, %d doorbells written", h.id, h.io.spareWrites, rings)
		}
	}
}
