package delta

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

func refImage(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "sanlock-3.8", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func memIO(size int64, ss int) (*MemDevice, *IO) {
	d := NewMemDevice(size, ss)
	return d, NewIO(d, clock.Real{})
}

func mustGeo(t testing.TB, ss, align int) leader.Geometry {
	t.Helper()
	g, err := leader.NewGeometry(ss, align)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestInitMatchesSanlock compares Init's output with images written by
// sanlock direct init (sanlock-format.md §1.2).
func TestInitMatchesSanlock(t *testing.T) {
	tests := []struct {
		image, name string
		ss, align   int
		io          time.Duration
	}{
		{"ls512-fresh.bin", "LS", 512, leader.MiB, 10 * time.Second},
		{"ls4k-fresh.bin", "LS4K", 4096, 8 * leader.MiB, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			for _, off := range []int64{0, int64(tt.align)} {
				dev, o := memIO(int64(tt.align)*2, tt.ss)
				g := mustGeo(t, tt.ss, tt.align)
				if err := Init(context.Background(), o, InitOptions{Name: tt.name, Offset: off, Geometry: g, IOTimeout: tt.io}); err != nil {
					t.Fatal(err)
				}
				ref := refImage(t, tt.image)
				if got := dev.Bytes(off, len(ref)); !bytes.Equal(got, ref) {
					t.Fatalf("offset %d: first %d bytes differ from sanlock's image", off, len(ref))
				}
				// Every record up to max_hosts equals the last one in the
				// image; the rest of the area is zero.
				area := dev.Bytes(off, tt.align)
				last := ref[len(ref)-tt.ss:]
				for i := len(ref) / tt.ss; i < g.MaxHosts; i++ {
					if !bytes.Equal(area[i*tt.ss:(i+1)*tt.ss], last) {
						t.Fatalf("record %d differs", i+1)
					}
				}
				if !bytes.Equal(area[g.MaxHosts*tt.ss:], make([]byte, tt.align-g.MaxHosts*tt.ss)) {
					t.Fatal("tail of area not zero")
				}
				// Bytes before the offset are untouched.
				if off > 0 && !bytes.Equal(dev.Bytes(0, int(off)), make([]byte, off)) {
					t.Fatal("wrote before the offset")
				}
				a, err := Probe(context.Background(), o, off, tt.name, time.Second)
				if err != nil || a.Geo != g || a.Name != tt.name {
					t.Fatalf("Probe = %+v, %v", a, err)
				}
			}
		})
	}
}

func TestInitErrors(t *testing.T) {
	ctx := context.Background()
	g512 := mustGeo(t, 512, leader.MiB)
	tests := []struct {
		name string
		size int64
		ss   int
		opt  InitOptions
		want error
	}{
		{"misaligned", 2 * leader.MiB, 0, InitOptions{Name: "LS", Offset: 100, Geometry: g512}, ErrMisaligned},
		{"past end", leader.MiB, 0, InitOptions{Name: "LS", Offset: 2 * leader.MiB, Geometry: g512}, ErrDeviceTooSmall},
		{"too small", leader.MiB - 512, 0, InitOptions{Name: "LS", Geometry: g512}, ErrDeviceTooSmall},
		{"area past end", leader.MiB * 3 / 2, 0, InitOptions{Name: "LS", Offset: leader.MiB, Geometry: g512}, ErrDeviceTooSmall},
		{"4k device, 512 area", leader.MiB, 4096, InitOptions{Name: "LS", Geometry: g512}, ErrMisaligned},
		{"name too long", leader.MiB, 0, InitOptions{Name: string(bytes.Repeat([]byte("x"), 49)), Geometry: g512}, leader.ErrNameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, o := memIO(tt.size, tt.ss)
			if err := Init(ctx, o, tt.opt); !errors.Is(err, tt.want) {
				t.Fatalf("Init = %v, want %v", err, tt.want)
			}
			if _, w := dev.Stats(); w != 0 {
				t.Fatalf("%d bytes written on error", w)
			}
		})
	}
	t.Run("io_timeout", func(t *testing.T) {
		_, o := memIO(leader.MiB, 0)
		for _, io := range []time.Duration{-time.Second, 500 * time.Millisecond, 256 * time.Second} {
			if err := Init(ctx, o, InitOptions{Name: "LS", Geometry: g512, IOTimeout: io}); err == nil {
				t.Errorf("io_timeout %v accepted", io)
			}
		}
	})
	t.Run("refuses existing", func(t *testing.T) {
		dev, o := memIO(leader.MiB, 0)
		if err := Init(ctx, o, InitOptions{Name: "A", Geometry: g512}); err != nil {
			t.Fatal(err)
		}
		before := dev.Bytes(0, leader.MiB)
		if err := Init(ctx, o, InitOptions{Name: "B", Geometry: g512}); !errors.Is(err, ErrExists) {
			t.Fatalf("second Init = %v", err)
		}
		if !bytes.Equal(before, dev.Bytes(0, leader.MiB)) {
			t.Fatal("refused Init wrote")
		}
		if err := Init(ctx, o, InitOptions{Name: "B", Geometry: g512, Force: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := Probe(ctx, o, 0, "B", time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProbeErrors(t *testing.T) {
	ctx := context.Background()
	g := mustGeo(t, 512, leader.MiB)
	newLS := func() (*MemDevice, *IO) {
		dev, o := memIO(leader.MiB, 0)
		if err := Init(ctx, o, InitOptions{Name: "LS", Geometry: g}); err != nil {
			t.Fatal(err)
		}
		return dev, o
	}
	tests := []struct {
		name   string
		mutate func(d *MemDevice)
		ls     string
		off    int64
		want   error
	}{
		{"ok", func(*MemDevice) {}, "LS", 0, nil},
		{"foreign name", func(*MemDevice) {}, "OTHER", 0, leader.ErrName},
		{"bad magic", func(d *MemDevice) { d.Poke(0, []byte{0}) }, "LS", 0, leader.ErrMagic},
		{"bad checksum", func(d *MemDevice) { d.Poke(leader.OffTimestamp, []byte{1}) }, "LS", 0, leader.ErrChecksum},
		{"misaligned", func(*MemDevice) {}, "LS", 100, ErrMisaligned},
		{"past end", func(*MemDevice) {}, "LS", 2 * leader.MiB, ErrDeviceTooSmall},
		{"not a lockspace", func(d *MemDevice) { d.Poke(0, make([]byte, 512)) }, "LS", 0, leader.ErrMagic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, o := newLS()
			tt.mutate(dev)
			_, err := Probe(ctx, o, tt.off, tt.ls, time.Second)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Probe = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
		err  bool
	}{
		{"LS:1:/dev/sdb:0", Spec{"LS", 1, "/dev/sdb", 0}, false},
		{"LS:0:/tmp/a:b:1M", Spec{"LS", 0, "/tmp/a:b", 1 << 20}, false},
		{"LS:2:/x:1048576", Spec{"LS", 2, "/x", 1 << 20}, false},
		{"LS:1:/x", Spec{}, true},
		{":1:/x:0", Spec{}, true},
		{"LS:a:/x:0", Spec{}, true},
		{"LS:1::0", Spec{}, true},
		{"LS:1:/x:-5", Spec{}, true},
		{"LS:1:/x:zz", Spec{}, true},
		{string(bytes.Repeat([]byte("n"), 49)) + ":1:/x:0", Spec{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, %v", tt.in, got, err)
		}
	}
}
