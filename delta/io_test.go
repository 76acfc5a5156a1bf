package delta

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
)

// waitFor polls cond without sleeping on the fake clock; the goroutine
// under test runs on real time, so yield until it gets there.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func TestIOTimeoutRetiresBuffer(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	mem := NewMemDevice(1<<20, 512)
	fd := NewFaultDevice(mem)
	o := NewIO(fd, clk)
	fd.Inject(Fault{Kind: FaultHang, Op: "write", Count: 1})

	errc := make(chan error)
	go func() { errc <- o.Write(context.Background(), 0, make([]byte, 512), time.Second) }()
	waitFor(t, "write to hang", func() bool { return fd.Hung() == 1 && clk.Pending() == 1 })
	clk.Advance(time.Second)
	err := <-errc
	if !errors.Is(err, ErrIOTimeout) {
		t.Fatalf("hung write = %v, want ErrIOTimeout", err)
	}
	var ioe *IOError
	if !errors.As(err, &ioe) || ioe.Op != "write" || ioe.Offset != 0 {
		t.Fatalf("want *IOError for the write, got %v", err)
	}
	if o.StuckWrites() != 1 || o.Stats().Timeouts != 1 {
		t.Fatalf("stuck writes %d", o.StuckWrites())
	}
	// Reads still work while the write is stuck.
	if _, err := o.Read(context.Background(), 0, 512, time.Second); err != nil {
		t.Fatal(err)
	}
	fd.Release()
	waitFor(t, "late write to finish", func() bool { return o.StuckWrites() == 0 })
}

func TestIODeviceHung(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	fd := NewFaultDevice(NewMemDevice(1<<20, 512))
	o := NewIO(fd, clk)
	fd.Inject(Fault{Kind: FaultHang, Op: "read"})
	for i := 0; i < DefaultMaxStuck; i++ {
		errc := make(chan error)
		go func() {
			_, err := o.Read(context.Background(), 0, 512, time.Second)
			errc <- err
		}()
		waitFor(t, "read to hang", func() bool { return fd.Hung() == i+1 && clk.Pending() == 1 })
		clk.Advance(time.Second)
		if err := <-errc; !errors.Is(err, ErrIOTimeout) {
			t.Fatal(err)
		}
	}
	if _, err := o.Read(context.Background(), 0, 512, time.Second); !errors.Is(err, ErrDeviceHung) {
		t.Fatalf("read with %d stuck = %v, want ErrDeviceHung", DefaultMaxStuck, err)
	}
	fd.Clear()
	fd.Release()
	waitFor(t, "stuck reads to drain", func() bool { return o.Stats().Stuck == 0 })
	if _, err := o.Read(context.Background(), 0, 512, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestFaultKinds(t *testing.T) {
	ctx := context.Background()
	mem := NewMemDevice(1<<20, 512)
	fd := NewFaultDevice(mem)
	o := NewIO(fd, clock.Real{})
	full := make([]byte, 512)
	for i := range full {
		full[i] = 0xEE
	}

	fd.Inject(Fault{Kind: FaultEIO, Op: "read", Count: 1})
	if _, err := o.Read(ctx, 0, 512, time.Second); !errors.Is(err, syscall.EIO) {
		t.Fatalf("EIO read: %v", err)
	}
	fd.Inject(Fault{Kind: FaultTorn, Op: "write", Bytes: 100, Count: 1})
	if err := o.Write(ctx, 0, full, time.Second); !errors.Is(err, syscall.EIO) {
		t.Fatalf("torn write: %v", err)
	}
	got := mem.Bytes(0, 512)
	if got[99] != 0xEE || got[100] != 0 {
		t.Fatalf("torn write stored %x %x", got[99], got[100])
	}
	// A torn write with a Delay shows the tear to readers, then
	// completes.
	fd.Inject(Fault{Kind: FaultTorn, Op: "write", Off: 1024, Bytes: 200, Delay: 200 * time.Millisecond, Count: 1})
	done := make(chan error, 1)
	go func() { done <- o.Write(ctx, 1024, full, time.Second) }()
	for deadline := time.Now().Add(5 * time.Second); mem.Bytes(1024, 512)[199] != 0xEE; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("torn write with a delay: the prefix did not land")
		}
	}
	if got := mem.Bytes(1024, 512); got[200] != 0 {
		t.Fatalf("torn write with a delay: byte 200 is %x before the delay ended", got[200])
	}
	if err := <-done; err != nil {
		t.Fatalf("torn write with a delay: %v", err)
	}
	if got := mem.Bytes(1024, 512); got[511] != 0xEE {
		t.Fatalf("torn write with a delay did not complete: byte 511 is %x", got[511])
	}
	fd.Inject(Fault{Kind: FaultCorrupt, Op: "read", Bytes: 5, Count: 1})
	b, err := o.Read(ctx, 0, 512, time.Second)
	if err != nil || b[5] != 0xEE^0xA5 {
		t.Fatalf("corrupt read: %v %x", err, b[5])
	}
	fd.Inject(Fault{Kind: FaultShort, Op: "write", Bytes: 10, Count: 1, Off: 512})
	if err := o.Write(ctx, 512, full, time.Second); err == nil {
		t.Fatal("short write succeeded")
	}
	// A fault limited to another range does not fire.
	fd.Inject(Fault{Kind: FaultEIO, Off: 4096, End: 8192})
	if err := o.Write(ctx, 0, full, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(ctx, 4096, full, time.Second); !errors.Is(err, syscall.EIO) {
		t.Fatalf("range fault: %v", err)
	}
}

// TestIOStuckWritesIn checks that a stuck write is counted where it is: a
// hung doorbell write must not look like a stuck write of our own sector.
func TestIOStuckWritesIn(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	fd := NewFaultDevice(NewMemDevice(1<<20, 512))
	o := NewIO(fd, clk)
	spare := int64(2000 * 512)
	fd.Inject(Fault{Kind: FaultHang, Op: "write", Off: spare, End: spare + 512, Count: 1})
	errc := make(chan error)
	go func() { errc <- o.Write(context.Background(), spare, make([]byte, 512), time.Second) }()
	waitFor(t, "write to hang", func() bool { return fd.Hung() == 1 && clk.Pending() == 1 })
	clk.Advance(time.Second)
	if err := <-errc; !errors.Is(err, ErrIOTimeout) {
		t.Fatalf("hung write = %v, want ErrIOTimeout", err)
	}
	for _, tc := range []struct {
		off  int64
		n    int
		want int
	}{{0, 512, 0}, {spare - 512, 512, 0}, {spare, 512, 1}, {spare + 512, 512, 0}, {0, 1 << 20, 1}, {spare + 100, 1, 1}} {
		if got := o.StuckWritesIn(tc.off, tc.n); got != tc.want {
			t.Errorf("StuckWritesIn(%d, %d) = %d, want %d", tc.off, tc.n, got, tc.want)
		}
		if got := o.StuckIn(tc.off, tc.n); got != tc.want {
			t.Errorf("StuckIn(%d, %d) = %d, want %d", tc.off, tc.n, got, tc.want)
		}
	}
	if o.StuckWrites() != 1 || o.Stats().StuckWrites != 1 || o.Stats().Stuck != 1 {
		t.Fatalf("stuck writes %d, stats %+v", o.StuckWrites(), o.Stats())
	}
	fd.Release()
	waitFor(t, "late write to finish", func() bool { return o.StuckWritesIn(spare, 512) == 0 })
}
