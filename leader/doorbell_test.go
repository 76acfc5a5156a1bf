package leader

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestDoorbellGeometry(t *testing.T) {
	for _, g := range geometries {
		d := g.Spare()
		want := map[int]int{512: 48}[g.SectorSize]
		if g.SectorSize == 4096 {
			want = map[int]int{1 * MiB: 6, 2 * MiB: 12, 4 * MiB: 24, 8 * MiB: 48}[g.AlignSize]
		}
		if d != want {
			t.Fatalf("%v: %d spare sectors, want %d", g, d, want)
		}
		maxSlot := 0
		seen := map[[2]int]bool{}
		for h := uint64(1); h <= uint64(g.MaxHosts); h++ {
			i, k := g.DoorbellIndex(h), g.DoorbellSlot(h)
			if i < 0 || i >= d || k >= DoorbellMaskBits {
				t.Fatalf("%v host %d: doorbell %d slot %d", g, h, i, k)
			}
			if seen[[2]int{i, k}] {
				t.Fatalf("%v host %d: doorbell %d slot %d taken twice", g, h, i, k)
			}
			seen[[2]int{i, k}] = true
			if g.DoorbellHost(i, k) != h {
				t.Fatalf("%v: DoorbellHost(%d, %d) = %d, want %d", g, i, k, g.DoorbellHost(i, k), h)
			}
			maxSlot = max(maxSlot, k)
			off := g.DoorbellOffset(i)
			if off < int64(g.MaxHosts*g.SectorSize) || off+int64(g.SectorSize) > int64(g.AlignSize) {
				t.Fatalf("%v host %d: doorbell at %d overlaps a host record or leaves the area", g, h, off)
			}
		}
		if maxSlot != 41 {
			t.Fatalf("%v: %d hosts per doorbell, want 42", g, maxSlot+1)
		}
	}
}

func TestDoorbellRoundTrip(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		capa := DoorbellCapacity(ss)
		var d Doorbell
		for i := 0; i < capa+5; i++ {
			d.Add(uint64(i%2000+1), uint16(i), 1<<uint(i%48), 0xabcd, capa)
		}
		if len(d.Rings) != capa || d.Counter != uint64(capa+5) || d.Rings[0].Counter != d.Counter {
			t.Fatalf("ss %d: %d rings, counter %d", ss, len(d.Rings), d.Counter)
		}
		b := make([]byte, ss)
		if err := d.Encode(b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[:4], []byte{0, 0, 0, 0}) {
			t.Fatal("bytes 0..3 not zero: sanlock's dump would list the doorbell")
		}
		got, err := DecodeDoorbell(b)
		if err != nil || !reflect.DeepEqual(got, d) {
			t.Fatalf("ss %d: round trip %v\n got %+v\nwant %+v", ss, err, got, d)
		}
		// Every byte is covered: a flip is an error, never another ring.
		for i := 0; i < ss; i++ {
			c := bytes.Clone(b)
			c[i] ^= 0x10
			if _, err := DecodeDoorbell(c); err == nil {
				t.Fatalf("ss %d: flip at %d not caught", ss, i)
			} else if i < 4 && !errors.Is(err, ErrNotDoorbell) {
				t.Fatalf("ss %d: flip at %d: %v", ss, i, err)
			}
		}
		// A torn write: half new, half old.
		old := d
		old.Add(7, 1, 1, 0xabcd, capa)
		ob := make([]byte, ss)
		_ = old.Encode(ob)
		torn := append(bytes.Clone(b[:ss/2]), ob[ss/2:]...)
		if _, err := DecodeDoorbell(torn); !errors.Is(err, ErrDoorbell) {
			t.Fatalf("torn doorbell: %v", err)
		}
		// Zeros (init) are an empty doorbell.
		if got, err := DecodeDoorbell(make([]byte, ss)); err != nil || got.Epoch != 0 || len(got.Rings) != 0 {
			t.Fatalf("zeroed doorbell: %+v %v", got, err)
		}
	}
}

func TestDoorbellSince(t *testing.T) {
	var d Doorbell
	d.Add(1, 1, 0b0011, 9, 4) // counter 1: slots 0, 1
	d.Add(2, 1, 0b0100, 9, 4) // 2: slot 2
	d.Add(1, 1, 0b0001, 9, 4) // 3: slot 0 (the ringer's older entry covers more: kept)
	d.Add(3, 1, 0b0001, 9, 4) // 4: slot 0
	rings, gap := d.Since(1, 0, 4)
	if gap || len(rings) != 2 || rings[0].From != 3 || rings[1].From != 1 {
		t.Fatalf("since 1 slot 0: %+v gap %v", rings, gap)
	}
	if rings, gap := d.Since(4, 0, 4); len(rings) != 0 || gap {
		t.Fatalf("since 4: %+v %v", rings, gap)
	}
	d.Add(4, 1, 0b1000, 9, 4) // 5: pushes counter 1 out
	d.Add(5, 1, 0b1000, 9, 4) // 6: pushes counter 2 out
	if _, gap := d.Since(0, 0, 4); !gap {
		t.Fatal("entries pushed out, no gap reported")
	}
	if _, gap := d.Since(2, 0, 4); gap {
		t.Fatal("nothing lost since 2, gap reported")
	}
	if _, gap := d.Since(1, 0, 4); !gap {
		t.Fatal("counter 2 pushed out since 1, no gap reported")
	}
	// A ringer that rings again replaces its entry: the counter moves
	// further than the entries, but nothing was lost.
	var f Doorbell
	for range 10 {
		f.Add(7, 1, 0b1, 9, 4)
	}
	f.Add(8, 1, 0b1, 9, 4)
	if rings, gap := f.Since(0, 0, 4); gap || len(rings) != 2 {
		t.Fatalf("repeated rings of one ringer: %+v gap %v", rings, gap)
	}
	// A ringer's new entry that covers its older one replaces it.
	var e Doorbell
	e.Add(1, 1, 0b01, 9, 8)
	e.Add(1, 1, 0b11, 9, 8)
	if len(e.Rings) != 1 || e.Rings[0].Mask != 0b11 {
		t.Fatalf("covering ring: %+v", e.Rings)
	}
}

func FuzzDecodeDoorbell(f *testing.F) {
	var d Doorbell
	d.Add(3, 2, 5, 77, DoorbellCapacity(512))
	b := make([]byte, 512)
	_ = d.Encode(b)
	f.Add(b)
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDoorbell(b)
		if err != nil || d.Epoch == 0 {
			return
		}
		out := make([]byte, len(b))
		if err := d.Encode(out); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatal("decode/encode changed the sector")
		}
	})
}
