package leader

import (
	"errors"
	"testing"
)

// TestMarker covers how a sector is told to be ours: the marker bound to
// the generation, a sanlock takeover that inherits it, and the sectors of
// earlier formats and of sanlock itself.
func TestMarker(t *testing.T) {
	s := sampleSector(512, 2)
	b := make([]byte, 512)
	if err := s.Encode(b); err != nil {
		t.Fatal(err)
	}
	if got, _ := DecodeSector(b); !got.Ours() || got.Ext == nil || got.ExtErr != nil {
		t.Fatalf("our sector: ours %v ext %v err %v", got.Ours(), got.Ext, got.ExtErr)
	}

	// A sanlock daemon acquires the host id: it keeps unused1, adds one to
	// the generation, sets the event fields and writes zeros from 200 on.
	r, _ := DecodeRecord(b)
	r.OwnerGeneration++
	r.WriteGeneration, r.WriteTimestamp = EventUser0, 7
	r.Seal()
	taken := make([]byte, 512)
	r.Put(taken)
	taken[OffBitmap] = 1
	got, _ := DecodeSector(taken)
	if got.Ours() || got.Ext != nil || got.ExtErr != nil || !got.Record.StaleMarker() || got.Record.Verify("LS") != nil {
		t.Fatalf("sanlock takeover: ours %v ext %v err %v stale %v", got.Ours(), got.Ext, got.ExtErr, got.Record.StaleMarker())
	}

	// Every sector of the sanlock reference images is sanlock's.
	for _, name := range []string{"ls512-event.bin", "ls512-fresh.bin", "ls512-released.bin", "ls4k-event.bin"} {
		img := readImage(t, name)
		ss := 512
		if len(img) == 8192 {
			ss = 4096
		}
		for off := 0; off+ss <= len(img); off += ss {
			got, _ := DecodeSector(img[off : off+ss])
			if got.Ours() || got.Ext != nil || got.ExtErr != nil || got.Record.StaleMarker() {
				t.Fatalf("%s+%d: read as ours", name, off)
			}
		}
	}

	// A version 1 sector (magic "smg" at 200, no marker) reads as sanlock's.
	v1 := make([]byte, 512)
	r, _ = DecodeRecord(b)
	r.Unused1 = 0
	r.Seal()
	r.Put(v1)
	copy(v1[200:], "smg\x01")
	if got, _ := DecodeSector(v1); got.Ours() || got.Ext != nil || got.ExtErr != nil {
		t.Fatalf("version 1 sector read as ours")
	}

	// Encoding an extension without the marker is a bug, refused.
	u := sampleSector(512, 0)
	u.Record.Unused1 = 0
	u.Record.Seal()
	if err := u.Encode(make([]byte, 512)); !errors.Is(err, ErrUnmarked) {
		t.Fatalf("unmarked encode: %v", err)
	}
	// Without an extension nothing is marked (release, init).
	n := Sector{Record: r}
	n.Seal()
	if n.Record.Marked() {
		t.Fatal("Seal marked a sector without an extension")
	}
}
