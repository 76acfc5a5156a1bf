package delta

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// simEpoch is simulated time zero.
var simEpoch = time.Unix(1_000_000, 0)

// desim is a minimal discrete-event simulator: events run in time order,
// ties in the order they were scheduled. Nothing sleeps.
type desim struct {
	now   time.Duration
	seq   int
	q     evHeap
	trace *strings.Builder // nil: no trace
}

type simEv struct {
	at  time.Duration
	seq int
	f   func()
}

type evHeap []simEv

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(simEv)) }
func (h *evHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (s *desim) at(t time.Duration, f func()) {
	s.seq++
	heap.Push(&s.q, simEv{at: t, seq: s.seq, f: f})
}

func (s *desim) time() time.Time { return simEpoch.Add(s.now) }

// run executes events up to and including horizon.
func (s *desim) run(horizon time.Duration) {
	for s.q.Len() > 0 && s.q[0].at <= horizon {
		e := heap.Pop(&s.q).(simEv)
		s.now = e.at
		e.f()
	}
}

func (s *desim) logf(format string, args ...any) {
	if s.trace != nil {
		fmt.Fprintf(s.trace, "%10v  ", s.now)
		fmt.Fprintf(s.trace, format, args...)
		s.trace.WriteByte('\n')
	}
}

// acqActor executes one Acquirer's Steps against a MemDevice in a desim.
type acqActor struct {
	name string
	a    *Acquirer
	dev  *MemDevice
	off  int64
	ss   int
	// delay returns when an I/O takes effect on the device and when it
	// completes, relative to its start (nil: both instantaneous).
	delay func() (effect, done time.Duration)
	// ioErr, if set, returns the error of the actor's n-th I/O (0-based,
	// of kind StepRead or StepWrite); nil lets it succeed.
	ioErr func(n int, kind StepKind) error

	steps      []StepKind
	ios        int
	writeStart time.Duration
	writeAt    time.Duration // when the acquire write took effect
	end        Step          // StepDone or StepFail
	endAt      time.Duration
	onEnd      func(*acqActor)
}

func (s *desim) startAcquirer(x *acqActor, at time.Duration) {
	s.at(at, func() { s.drive(x, x.a.Start(s.time())) })
}

func (s *desim) drive(x *acqActor, st Step) {
	x.steps = append(x.steps, st.Kind)
	switch st.Kind {
	case StepRead, StepWrite:
		var eff, done time.Duration
		if x.delay != nil {
			eff, done = x.delay()
		}
		var err error
		if x.ioErr != nil {
			err = x.ioErr(x.ios, st.Kind)
		}
		x.ios++
		var data []byte
		if st.Kind == StepRead {
			s.at(s.now+eff, func() {
				if err == nil {
					data = x.dev.Bytes(x.off, x.ss)
				}
				s.logf("%s read effect", x.name)
			})
		} else {
			x.writeStart = s.now
			sec := st.Sector
			s.at(s.now+eff, func() {
				if err == nil {
					x.writeAt = s.now
					x.dev.Poke(x.off, sec)
				}
				r, _ := leader.DecodeRecord(sec)
				s.logf("%s write effect gen %d ts %d", x.name, r.OwnerGeneration, r.Timestamp)
			})
		}
		s.at(s.now+done, func() { s.drive(x, x.a.Next(s.time(), data, err)) })
	case StepWait:
		until := st.Until.Sub(simEpoch)
		if until < s.now {
			panic(fmt.Sprintf("%s: wait until %v, now %v", x.name, until, s.now))
		}
		s.logf("%s wait until %v: %s", x.name, until, st.Why)
		s.at(until, func() { s.drive(x, x.a.Next(s.time(), nil, nil)) })
	case StepDone, StepFail:
		x.end, x.endAt = st, s.now
		s.logf("%s end kind %d gen %d err %v", x.name, st.Kind, st.Record.OwnerGeneration, st.Err)
		if x.onEnd != nil {
			x.onEnd(x)
		}
	default:
		panic(fmt.Sprintf("step kind %d", st.Kind))
	}
}

const acqLS = "LS"

// newAcqDevice returns a fresh 512/1M lockspace written by Init with record
// io_timeout initIO.
func newAcqDevice(t testing.TB, initIO time.Duration) *MemDevice {
	t.Helper()
	dev := NewMemDevice(leader.MiB, 512)
	g := mustGeo(t, 512, leader.MiB)
	if err := Init(context.Background(), NewIO(dev, clock.Real{}), InitOptions{Name: acqLS, Geometry: g, IOTimeout: initIO}); err != nil {
		t.Fatal(err)
	}
	return dev
}

// initSectors caches host 1's sector as Init writes it, by io_timeout.
var initSectors struct {
	sync.Mutex
	m map[time.Duration][]byte
}

// initSector returns host 1's sector as Init writes it with io_timeout io.
func initSector(t testing.TB, io time.Duration) []byte {
	initSectors.Lock()
	defer initSectors.Unlock()
	if initSectors.m == nil {
		initSectors.m = map[time.Duration][]byte{}
	}
	if b, ok := initSectors.m[io]; ok {
		return b
	}
	b := newAcqDevice(t, io).Bytes(0, 512)
	initSectors.m[io] = b
	return b
}

// editSector rewrites host id's whole sector on dev: f edits the decoded
// sector; the record is resealed unless f returns false.
func editSector(dev *MemDevice, id uint64, f func(s *leader.Sector) (seal bool)) {
	editSectorSize(dev, 512, id, f)
}

// editSectorSize is editSector for a lockspace at offset 0 with sector
// size ss.
func editSectorSize(dev *MemDevice, ss int, id uint64, f func(s *leader.Sector) (seal bool)) {
	off := int64(id-1) * int64(ss)
	s, _ := leader.DecodeSector(dev.Bytes(off, ss))
	if f(&s) {
		s.Seal()
	}
	buf := make([]byte, ss)
	if err := s.Encode(buf); err != nil {
		panic(err)
	}
	dev.Poke(off, buf)
}

func holdSector(dev *MemDevice, id uint64, name string, gen, ts uint64, io uint16) {
	editSector(dev, id, func(s *leader.Sector) bool {
		s.Record.OwnerID, s.Record.OwnerGeneration, s.Record.Timestamp, s.Record.IOTimeout = id, gen, ts, io
		if err := leader.SetName(&s.Record.ResourceName, name, leader.MaxHostName); err != nil {
			panic(err)
		}
		return true
	})
}

func secondsSince(base uint64) func(time.Time) uint64 {
	return func(t time.Time) uint64 { return base + uint64(t.Sub(simEpoch)/time.Second) }
}

// TestAcquireScenarios runs the acquire step machine against a MemDevice
// with instantaneous I/O and checks each of sanlock's paths (§4.1).
func TestAcquireScenarios(t *testing.T) {
	const id = 3
	type env struct {
		t   *testing.T
		sim *desim
		dev *MemDevice
	}
	tests := []struct {
		name     string
		initIO   time.Duration // io_timeout written by Init
		io       time.Duration // ours
		hostName string
		prep     func(dev *MemDevice)
		during   map[time.Duration]func(dev *MemDevice) // interventions at simulated times
		ioErr    func(n int, kind StepKind) error

		wantSteps []StepKind
		wantEndAt time.Duration
		wantGen   uint64 // on Done
		wantErr   error  // on Fail (errors.Is)
		check     func(t *testing.T, x *acqActor, dev *MemDevice, before []byte)
	}{
		{
			name: "free sector waits the short delay of the record's io_timeout", initIO: 10 * time.Second, io: 1 * time.Second, hostName: "me",
			wantSteps: []StepKind{StepRead, StepWrite, StepWait, StepRead, StepDone}, wantEndAt: 20 * time.Second, wantGen: 1,
			check: func(t *testing.T, x *acqActor, dev *MemDevice, _ []byte) {
				r := x.end.Record
				if r.OwnerID != id || r.ResourceNameString() != "me" || r.IOTimeout != 1 || r.Timestamp != 500 {
					t.Errorf("record owner %d name %q io %d ts %d, want %d me 1 500", r.OwnerID, r.ResourceNameString(), r.IOTimeout, r.Timestamp, id)
				}
				if err := r.Verify(acqLS); err != nil {
					t.Error(err)
				}
				if got := dev.Bytes(int64(id-1)*512, 200); !bytes.Equal(got, r.Bytes()) {
					t.Error("record on disk differs from the one returned")
				}
			},
		},
		{
			name: "fast reacquire skips the wait", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep:      func(d *MemDevice) { holdSector(d, id, "me", 4, 77, 1) },
			wantSteps: []StepKind{StepRead, StepWrite, StepWait, StepRead, StepDone}, wantEndAt: 2 * time.Second, wantGen: 5,
		},
		{
			name: "fast reacquire with an equal timestamp bumps it", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep:      func(d *MemDevice) { holdSector(d, id, "me", 4, 500, 1) },
			wantSteps: []StepKind{StepRead, StepWrite, StepWait, StepRead, StepDone}, wantEndAt: 2 * time.Second, wantGen: 5,
			check: func(t *testing.T, x *acqActor, _ *MemDevice, _ []byte) {
				if x.end.Record.Timestamp != 501 {
					t.Errorf("timestamp %d, want 501 (must differ from the previous one)", x.end.Record.Timestamp)
				}
			},
		},
		{
			name: "released sector is taken at once, generation continues", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep:      func(d *MemDevice) { holdSector(d, id, "old", 7, 0, 1) },
			wantSteps: []StepKind{StepRead, StepWrite, StepWait, StepRead, StepDone}, wantEndAt: 2 * time.Second, wantGen: 8,
		},
		{
			name: "live holder io 1: busy after 68 s", initIO: 1 * time.Second, io: 10 * time.Second, hostName: "me",
			prep: func(d *MemDevice) { holdSector(d, id, "other", 4, 1000, 1) },
			during: map[time.Duration]func(*MemDevice){
				30 * time.Second: func(d *MemDevice) { holdSector(d, id, "other", 4, 1030, 1) },
			},
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepFail}, wantEndAt: 68 * time.Second, wantErr: ErrHostIDBusy,
			check: func(t *testing.T, x *acqActor, _ *MemDevice, _ []byte) {
				var be *BusyError
				if !errors.As(x.end.Err, &be) {
					t.Fatalf("error %v is not a *BusyError", x.end.Err)
				}
				if be.HostID != id || be.Owner != "other" || be.Generation != 4 || be.Timestamp != 1030 || be.Waited != 68*time.Second {
					t.Errorf("BusyError %+v", be)
				}
				if !strings.Contains(be.Error(), `"other", generation 4`) {
					t.Errorf("message %q does not name the holder", be.Error())
				}
			},
		},
		{
			name: "live holder io 10: busy after 140 s", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) { holdSector(d, id, "other", 4, 1000, 10) },
			during: map[time.Duration]func(*MemDevice){
				139 * time.Second: func(d *MemDevice) { holdSector(d, id, "other", 4, 1139, 10) },
			},
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepFail}, wantEndAt: 140 * time.Second, wantErr: ErrHostIDBusy,
		},
		{
			name: "holder with io_timeout 0: own io_timeout used", initIO: 1 * time.Second, io: 2 * time.Second, hostName: "me",
			prep:      func(d *MemDevice) { holdSector(d, id, "other", 4, 1000, 0) },
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepWrite, StepWait, StepRead, StepDone},
			wantEndAt: (16+60)*time.Second + 4*time.Second, wantGen: 5,
		},
		{
			name: "dead holder is taken after the wait, generation from disk", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep:      func(d *MemDevice) { holdSector(d, id, "other", 41, 1000, 1) },
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepWrite, StepWait, StepRead, StepDone},
			wantEndAt: 70 * time.Second, wantGen: 42,
			check: func(t *testing.T, x *acqActor, _ *MemDevice, _ []byte) {
				if x.writeStart != 68*time.Second {
					t.Errorf("wrote at %v, want 68s", x.writeStart)
				}
			},
		},
		{
			name: "holder released during the wait", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) { holdSector(d, id, "other", 4, 1000, 1) },
			during: map[time.Duration]func(*MemDevice){
				10 * time.Second: func(d *MemDevice) { holdSector(d, id, "other", 4, 0, 1) },
			},
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepWrite, StepWait, StepRead, StepDone},
			wantEndAt: 70 * time.Second, wantGen: 5,
		},
		{
			name: "holder replaced by a third host during the wait", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) { holdSector(d, id, "other", 4, 1000, 1) },
			during: map[time.Duration]func(*MemDevice){
				10 * time.Second: func(d *MemDevice) { holdSector(d, id, "third", 5, 1000, 1) },
			},
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepFail}, wantEndAt: 68 * time.Second, wantErr: ErrHostIDBusy,
		},
		{
			name: "only the event fields changed during the wait: busy (whole record compared)", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) { holdSector(d, id, "other", 4, 1000, 1) },
			during: map[time.Duration]func(*MemDevice){
				10 * time.Second: func(d *MemDevice) {
					editSector(d, id, func(s *leader.Sector) bool { s.Record.WriteGeneration = 5; return true })
				},
			},
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepFail}, wantEndAt: 68 * time.Second, wantErr: ErrHostIDBusy,
		},
		{
			name: "verify read catches a concurrent acquirer", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			during: map[time.Duration]func(*MemDevice){
				1 * time.Second: func(d *MemDevice) { holdSector(d, id, "rival", 1, 9000, 1) },
			},
			wantSteps: []StepKind{StepRead, StepWrite, StepWait, StepRead, StepFail}, wantEndAt: 2 * time.Second, wantErr: ErrHostIDBusy,
			check: func(t *testing.T, x *acqActor, _ *MemDevice, _ []byte) {
				var be *BusyError
				if !errors.As(x.end.Err, &be) || be.Owner != "rival" || be.Generation != 1 {
					t.Errorf("err %v, want a *BusyError naming rival generation 1", x.end.Err)
				}
			},
		},
		{
			name: "bad magic", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep:      func(d *MemDevice) { d.Poke(int64(id-1)*512, []byte{0xde, 0xad}) },
			wantSteps: []StepKind{StepRead, StepFail}, wantErr: leader.ErrMagic,
		},
		{
			name: "bad version", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) {
				editSector(d, id, func(s *leader.Sector) bool { s.Record.Version = 0x00040001; return true })
			},
			wantSteps: []StepKind{StepRead, StepFail}, wantErr: leader.ErrVersion,
		},
		{
			name: "wrong lockspace name", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) {
				editSector(d, id, func(s *leader.Sector) bool { _ = leader.SetName(&s.Record.SpaceName, "LS2", 48); return true })
			},
			wantSteps: []StepKind{StepRead, StepFail}, wantErr: leader.ErrName,
		},
		{
			name: "bad checksum", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) {
				editSector(d, id, func(s *leader.Sector) bool { s.Record.Timestamp = 5; return false })
			},
			wantSteps: []StepKind{StepRead, StepFail}, wantErr: leader.ErrChecksum,
		},
		{
			name: "sector corrupted during the wait", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			prep: func(d *MemDevice) { holdSector(d, id, "other", 4, 1000, 1) },
			during: map[time.Duration]func(*MemDevice){
				10 * time.Second: func(d *MemDevice) {
					editSector(d, id, func(s *leader.Sector) bool { s.Record.Timestamp = 5; return false })
				},
			},
			wantSteps: []StepKind{StepRead, StepWait, StepRead, StepFail}, wantEndAt: 68 * time.Second, wantErr: leader.ErrChecksum,
		},
		{
			name: "read error", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			ioErr: func(n int, _ StepKind) error {
				if n == 0 {
					return syscall.EIO
				}
				return nil
			},
			wantSteps: []StepKind{StepRead, StepFail}, wantErr: syscall.EIO,
		},
		{
			name: "write error", initIO: 1 * time.Second, io: 1 * time.Second, hostName: "me",
			ioErr: func(_ int, k StepKind) error {
				if k == StepWrite {
					return ErrIOTimeout
				}
				return nil
			},
			wantSteps: []StepKind{StepRead, StepWrite, StepFail}, wantErr: ErrIOTimeout,
		},
		{
			name: "host name too long", initIO: 1 * time.Second, io: 1 * time.Second, hostName: strings.Repeat("h", leader.MaxHostName+1),
			wantSteps: []StepKind{StepRead, StepFail}, wantErr: leader.ErrNameTooLong,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newAcqDevice(t, tt.initIO)
			if tt.prep != nil {
				tt.prep(dev)
			}
			before := dev.Bytes(int64(id-1)*512, 512)
			sim := &desim{}
			for at, f := range tt.during {
				sim.at(at, func() { f(dev) })
			}
			x := &acqActor{name: "me", dev: dev, off: int64(id-1) * 512, ss: 512, ioErr: tt.ioErr,
				a: &Acquirer{Name: acqLS, HostID: id, HostName: tt.hostName, Timeouts: NewTimeouts(tt.io, 0),
					Timestamp: secondsSince(500)}}
			sim.startAcquirer(x, 0)
			sim.run(time.Hour)
			if fmt.Sprint(x.steps) != fmt.Sprint(tt.wantSteps) {
				t.Fatalf("steps %v, want %v", x.steps, tt.wantSteps)
			}
			if x.endAt != tt.wantEndAt {
				t.Errorf("ended at %v, want %v", x.endAt, tt.wantEndAt)
			}
			switch x.end.Kind {
			case StepDone:
				if x.end.Record.OwnerGeneration != tt.wantGen {
					t.Errorf("generation %d, want %d", x.end.Record.OwnerGeneration, tt.wantGen)
				}
			case StepFail:
				if !errors.Is(x.end.Err, tt.wantErr) {
					t.Errorf("err %v, want %v", x.end.Err, tt.wantErr)
				}
				if !slices.Contains(x.steps, StepWrite) && tt.during == nil && !bytes.Equal(dev.Bytes(int64(id-1)*512, 512), before) {
					t.Error("an acquire that failed before writing changed the sector")
				}
			}
			if tt.check != nil {
				tt.check(t, x, dev, before)
			}
		})
	}
}

// TestAcquireWriteKeepsPreviousEvent checks the acquire write is built from
// the record read (sanlock-format.md §4.1 step 5): the previous owner's
// event fields and the tail of its host name stay, the bitmap and bytes
// 200.. are cleared, our extension (if any) is added.
func TestAcquireWriteKeepsPreviousEvent(t *testing.T) {
	const id = 2
	for _, ext := range []*leader.Extension{nil, {Version: leader.ExtVersion, Seq: 9}} {
		dev := newAcqDevice(t, 1*time.Second)
		editSector(dev, id, func(s *leader.Sector) bool {
			r := &s.Record
			r.OwnerID, r.OwnerGeneration, r.Timestamp, r.IOTimeout = id, 1, 0, 1
			_ = leader.SetName(&r.ResourceName, "a-rather-long-previous-host-name", leader.MaxHostName)
			r.WriteID, r.WriteGeneration, r.WriteTimestamp = 0, 5, 77
			s.Bitmap.Set(1)
			s.Bitmap.Set(2000)
			return true
		})
		dev.Poke(int64(id-1)*512+220, []byte("junk left in the unused bytes"))

		x := &acqActor{name: "me", dev: dev, off: int64(id-1) * 512, ss: 512,
			a: &Acquirer{Name: acqLS, HostID: id, HostName: "h2", Timeouts: NewTimeouts(1*time.Second, 0), Timestamp: secondsSince(10), Ext: ext}}
		sim := &desim{}
		sim.startAcquirer(x, 0)
		sim.run(time.Hour)
		if x.end.Kind != StepDone {
			t.Fatalf("acquire ended with %v", x.end.Err)
		}
		raw := dev.Bytes(int64(id-1)*512, 512)
		sec, _ := leader.DecodeSector(raw)
		r := sec.Record
		if g, c, d := sec.Event(); g != 0 || c != 5 || d != 77 {
			t.Errorf("event fields %d/%d/%d, want the previous owner's 0/5/77", g, c, d)
		}
		if r.OwnerGeneration != 2 || r.ResourceNameString() != "h2" {
			t.Errorf("owner gen %d name %q", r.OwnerGeneration, r.ResourceNameString())
		}
		if want := "h2\x00ather-long-previous-host-name"; string(r.ResourceName[:len(want)]) != want {
			t.Errorf("resource_name bytes %q: the bytes after the NUL must be left as they were", r.ResourceName[:])
		}
		if !sec.Bitmap.Empty() {
			t.Errorf("bitmap not cleared: %v", sec.Bitmap.Hosts())
		}
		if ext == nil {
			if !bytes.Equal(raw[200:], make([]byte, 312)) {
				t.Error("bytes 200..511 not zero")
			}
		} else if sec.Ext == nil || sec.Ext.Seq != 9 || sec.ExtErr != nil {
			t.Errorf("extension %+v (%v), want seq 9", sec.Ext, sec.ExtErr)
		}
	}
}

// TestAcquire4K runs a free-sector acquire on a 4096-byte sector lockspace.
func TestAcquire4K(t *testing.T) {
	dev := NewMemDevice(8*leader.MiB, 4096)
	g := mustGeo(t, 4096, 8*leader.MiB)
	if err := Init(context.Background(), NewIO(dev, clock.Real{}), InitOptions{Name: acqLS, Geometry: g, IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	const id = 1999
	x := &acqActor{name: "me", dev: dev, off: g.HostOffset(id), ss: 4096,
		a: &Acquirer{Name: acqLS, HostID: id, HostName: "big", Timeouts: NewTimeouts(time.Second, 0), Timestamp: secondsSince(1),
			Ext: &leader.Extension{Version: leader.ExtVersion}}}
	sim := &desim{}
	sim.startAcquirer(x, 0)
	sim.run(time.Hour)
	if x.end.Kind != StepDone || x.end.Record.OwnerGeneration != 1 {
		t.Fatalf("end %+v", x.end)
	}
	sec, _ := leader.DecodeSector(dev.Bytes(g.HostOffset(id), 4096))
	if sec.Record.ResourceNameString() != "big" || sec.Ext == nil {
		t.Fatalf("sector %+v", sec)
	}
}

// raceHolder is an acquirer that finished: it renews the lease with
// sanlock's renewal rules (read, compare with the last write, write a new
// timestamp, every RenewalInterval) until it crashes.
type raceHolder struct {
	name      string
	doneAt    time.Duration
	crashAt   time.Duration // < 0: never
	last      leader.Record
	lastStart time.Duration // start of the last renewal whose write was issued
	lost      error
	ts        func(time.Time) uint64
}

// authorityEnd is when the holder's authority surely ended: a crashed
// holder stops within renewal_fail of the start of its last renewal and
// its watchdog resets it by host_dead after that.
func (h *raceHolder) authorityEnd(t Timeouts) time.Duration {
	if h.crashAt < 0 {
		return 1<<63 - 1
	}
	return h.lastStart + t.HostDead()
}

type raceRun struct {
	seed    uint64
	io      time.Duration
	t       Timeouts
	initial string // "free", "dead", "live"
	sim     *desim
	dev     *MemDevice
	acqs    []*acqActor
	holders []*raceHolder
	horizon time.Duration
}

func (r *raceRun) renew(h *raceHolder, delay func() (time.Duration, time.Duration), start time.Duration) {
	sim := r.sim
	sim.at(start, func() {
		if h.crashAt >= 0 && sim.now >= h.crashAt {
			sim.logf("%s crashed", h.name)
			return
		}
		s0 := sim.now
		eff, done := delay()
		var data []byte
		sim.at(s0+eff, func() { data = r.dev.Bytes(0, 512) })
		sim.at(s0+done, func() {
			if h.crashAt >= 0 && sim.now >= h.crashAt {
				return
			}
			got, _ := leader.DecodeRecord(data)
			if !bytes.Equal(got.Bytes(), h.last.Bytes()) {
				h.lost = fmt.Errorf("%s at %v: sector now owner %q gen %d ts %d, we wrote gen %d ts %d",
					h.name, sim.now, got.ResourceNameString(), got.OwnerGeneration, got.Timestamp, h.last.OwnerGeneration, h.last.Timestamp)
				sim.logf("%v", h.lost)
				return
			}
			rec := h.last
			rec.Timestamp = max(h.ts(simEpoch.Add(s0)), h.last.Timestamp+1)
			rec.Seal()
			sec := make([]byte, 512)
			rec.Put(sec)
			h.lastStart = s0
			eff, done := delay()
			sim.at(sim.now+eff, func() {
				r.dev.Poke(0, sec)
				sim.logf("%s renewal effect ts %d", h.name, rec.Timestamp)
			})
			sim.at(sim.now+done, func() {
				h.last = rec
				r.renew(h, delay, max(sim.now, s0+r.t.RenewalInterval()))
			})
		})
	})
}

// newRace builds one seeded race: 2..5 acquirers of host id 1 with distinct
// host names, random start times and random I/O delays below io_timeout,
// over a sector that is free, held by a dead host or held by a live,
// renewing host. Holders may crash.
func newRace(t testing.TB, seed uint64, trace bool) *raceRun {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	io := []time.Duration{1 * time.Second, 2 * time.Second, 10 * time.Second}[rng.IntN(3)]
	r := &raceRun{seed: seed, io: io, t: NewTimeouts(io, 0), sim: &desim{}}
	if trace {
		r.sim.trace = &strings.Builder{}
	}
	// Only host 1's sector matters: copy it from a fresh Init.
	r.dev = NewMemDevice(512, 512)
	r.dev.Poke(0, initSector(t, io))
	recIO := uint16(io / time.Second)
	if rng.IntN(4) == 0 {
		recIO = 0 // sanlock then uses its own io_timeout
	}
	ms := func(d time.Duration) time.Duration {
		return time.Duration(rng.Int64N(int64(d/time.Millisecond)+1)) * time.Millisecond
	}
	// Each I/O takes effect at a point within its duration, and completes
	// strictly within io_timeout (a completion at io_timeout is a timeout).
	delay := func() (time.Duration, time.Duration) {
		var done time.Duration
		switch rng.IntN(4) {
		case 0:
			done = 0
		case 1:
			done = io - time.Millisecond
		default:
			done = ms(io - time.Millisecond)
		}
		switch rng.IntN(3) {
		case 0:
			return 0, done
		case 1:
			return done, done
		}
		return ms(done), done
	}
	crashProb := []float64{0, 0.5, 1}[rng.IntN(3)]
	crashTime := func(from time.Duration) time.Duration {
		if rng.Float64() >= crashProb {
			return -1
		}
		return from + ms(r.t.AcquireWait()+r.t.ShortDelay())
	}
	r.initial = []string{"free", "dead", "live"}[rng.IntN(3)]
	switch r.initial {
	case "dead":
		holdSector(r.dev, 1, "dead-host", 6, 4242, recIO)
	case "live":
		holdSector(r.dev, 1, "live-host", 6, 4242, recIO)
		rec, _ := leader.DecodeRecord(r.dev.Bytes(0, 512))
		h := &raceHolder{name: "live-host", doneAt: -time.Hour, crashAt: crashTime(0), last: rec, lastStart: 0,
			ts: secondsSince(4242)}
		r.holders = append(r.holders, h)
		r.renew(h, delay, ms(r.t.RenewalInterval()))
	}
	spread := []time.Duration{0, 500 * time.Millisecond, r.t.ShortDelay(), 20 * time.Second, r.t.AcquireWait()}[rng.IntN(5)]
	n := 2 + rng.IntN(4)
	for i := range n {
		x := &acqActor{name: fmt.Sprintf("acq-%d", i), dev: r.dev, off: 0, ss: 512, delay: delay,
			a: &Acquirer{Name: acqLS, HostID: 1, HostName: fmt.Sprintf("acq-%d", i), Timeouts: r.t,
				Timestamp: secondsSince(uint64(1 + rng.IntN(1_000_000)))}}
		x.onEnd = func(x *acqActor) {
			if x.end.Kind != StepDone {
				return
			}
			h := &raceHolder{name: x.name, doneAt: r.sim.now, crashAt: crashTime(r.sim.now), last: x.end.Record,
				lastStart: x.writeStart, ts: x.a.Timestamp}
			r.holders = append(r.holders, h)
			r.renew(h, delay, x.writeStart+r.t.RenewalInterval())
		}
		r.acqs = append(r.acqs, x)
		r.sim.startAcquirer(x, ms(spread))
	}
	// Every acquirer is finished well before this: start + AcquireWait +
	// ShortDelay + 4 I/Os.
	r.horizon = spread + 2*r.t.AcquireWait() + 10*io
	return r
}

// check returns what is wrong with a finished race.
func (r *raceRun) check() error {
	for _, x := range r.acqs {
		switch x.end.Kind {
		case StepDone:
		case StepFail:
			var be *BusyError
			if !errors.As(x.end.Err, &be) || !errors.Is(x.end.Err, ErrHostIDBusy) {
				return fmt.Errorf("%s failed with %v, want a *BusyError", x.name, x.end.Err)
			}
		default:
			return fmt.Errorf("%s did not finish by %v (steps %v)", x.name, r.horizon, x.steps)
		}
	}
	// The delta lease guarantee with I/O bounded by io_timeout: a host id
	// is never held by two hosts at once. A holder's authority runs from
	// its verify read to, if it crashed, host_dead after the start of its
	// last renewal (by then its watchdog has reset it). Those intervals
	// must be disjoint, generations must grow with them, and a renewing
	// holder never finds its sector taken.
	hs := r.holders
	for _, h := range hs {
		if h.lost != nil {
			return fmt.Errorf("holder lost its lease while renewing: %v", h.lost)
		}
	}
	for i := 1; i < len(hs); i++ {
		prev, cur := hs[i-1], hs[i]
		if end := prev.authorityEnd(r.t); cur.doneAt <= end {
			return fmt.Errorf("%s holds the lease from %v while %s may still hold it until %v", cur.name, cur.doneAt, prev.name, end)
		}
		if cur.last.OwnerGeneration <= prev.last.OwnerGeneration {
			return fmt.Errorf("%s holds generation %d after %s held %d", cur.name, cur.last.OwnerGeneration, prev.name, prev.last.OwnerGeneration)
		}
	}
	// Liveness: on a free or dead sector the last acquire write always
	// survives its verify read, so somebody gets the lease.
	if r.initial != "live" && len(hs) == 0 {
		return fmt.Errorf("nobody acquired a %s sector", r.initial)
	}
	return nil
}

// TestAcquireRace races 2..5 acquirers for one host id over thousands of
// seeds, with random start times and I/O delays (each below io_timeout),
// and checks the delta lease guarantee (see raceRun.check).
func TestAcquireRace(t *testing.T) {
	seeds := 3000
	if testing.Short() {
		seeds = 300
	}
	stats := map[string]int{}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		r := newRace(t, seed, false)
		r.sim.run(r.horizon)
		if err := r.check(); err != nil {
			rr := newRace(t, seed, true)
			rr.sim.run(rr.horizon)
			t.Fatalf("seed %d (io %v, sector %s, %d acquirers): %v\ntrace:\n%s", seed, r.io, r.initial, len(r.acqs), err, rr.sim.trace)
		}
		stats[r.initial]++
		stats[fmt.Sprintf("holders=%d", len(r.holders))]++
	}
	t.Logf("races: %v", stats)
}
