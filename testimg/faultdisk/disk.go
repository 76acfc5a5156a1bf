//go:build linux

package faultdisk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// Names of the files in a Disk's mount.
const (
	ImageName = "disk.img"
	CtlName   = "ctl"
)

// maxEvents bounds the I/O log (Events): the oldest are dropped beyond it.
const maxEvents = 1 << 17

// keepData is the largest write whose data the I/O log keeps.
const keepData = 4096

// Disk is a FUSE-served image with fault injection. Its methods are safe
// for concurrent use.
type Disk struct {
	// MountPoint is the directory the file system is mounted on.
	MountPoint string
	// Path is the image file, MountPoint/disk.img.
	Path string
	// CtlPath is the control file, MountPoint/ctl.
	CtlPath string
	// BusyTimeout is how long Close keeps trying to unmount a busy mount
	// before it detaches it and aborts the connection (default 10 s).
	BusyTimeout time.Duration

	img   *memImage
	fault *delta.FaultDevice
	srv   *fuse.Server
	conn  uint32 // the FUSE connection's number under /sys/fs/fuse/connections
	start time.Time

	mu       sync.Mutex
	events   []Event
	counts   Counts
	injected []string // Control commands since the last Heal, for String
	ctlErr   error    // the last ctl file write's error
	closed   bool
}

// Event is one I/O request the disk served, as its log keeps it.
type Event struct {
	// Op is "read" or "write".
	Op  string
	Off int64
	Len int
	// Pid is the thread that made the request (for asynchronous I/O, the
	// one that submitted it).
	Pid uint32
	// Start is when the request reached the disk, End when it was
	// answered (or, for an abandoned request, when its I/O finished).
	Start, End time.Time
	// Err is the error answered, nil on success.
	Err error
	// Abandoned reports a request answered EINTR because its process was
	// being killed while it hung; its I/O finished later, at End, with
	// Err.
	Abandoned bool
	// Data is what a write of at most 4096 bytes asked to write (whatever
	// a fault did with it).
	Data []byte
}

// Counts are the disk's request counters.
type Counts struct {
	Reads, Writes         int64 // requests answered
	ReadErrs, WriteErrs   int64 // of which failed
	ReadBytes, WriteBytes int64 // bytes transferred by the successful ones
	Abandoned             int64 // answered EINTR to a dying process
	Hung                  int   // I/Os blocked in a hang right now
}

// Mount serves a zeroed image of size bytes under a new directory in
// t.TempDir() until the test ends (Close is registered with t.Cleanup).
// Without /dev/fuse, or without root and a fusermount binary, the test is
// skipped with the reason (failed under CI=true).
func Mount(t testing.TB, size int64) *Disk {
	t.Helper()
	if err := usable(); err != nil {
		testimg.Unavailable(t, "faultdisk: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "faultdisk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("faultdisk: %v", err)
	}
	d, err := New(dir, size)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENODEV) {
			testimg.Unavailable(t, "faultdisk: %v", err)
		}
		t.Fatalf("faultdisk: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("faultdisk: %v", err)
		}
	})
	return d
}

// Loop attaches the image to a loop device with the given logical sector
// size (testimg.Loop: root only) and returns the device. It also registers
// a Heal that runs before the device is detached: detaching a loop device
// waits for its I/O, which a hang would block forever.
func (d *Disk) Loop(t testing.TB, sectorSize int) string {
	t.Helper()
	dev := testimg.Loop(t, d.Path, sectorSize)
	t.Cleanup(d.Heal)
	return dev
}

// usable checks the prerequisites of a mount.
func usable() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("no usable /dev/fuse: %w", err)
	}
	f.Close()
	if os.Geteuid() == 0 {
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			return nil
		}
	}
	return errors.New("mounting needs root, or fusermount (Debian package fuse3)")
}

// New mounts a zeroed image of size bytes on the existing directory dir.
// The caller must Close it. Mount is the form for tests.
func New(dir string, size int64) (*Disk, error) {
	sweepStale()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	img := &memImage{data: make([]byte, size)}
	d := &Disk{
		MountPoint: dir, Path: filepath.Join(dir, ImageName), CtlPath: filepath.Join(dir, CtlName),
		img: img, fault: delta.NewFaultDevice(img), start: time.Now(),
	}
	root := &rootNode{d: d}
	sec := time.Second
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName: fmt.Sprintf("%s%d", fsNamePrefix, os.Getpid()),
			Name:   subtype,
			// As root, mount(2) directly: no fusermount needed (and no
			// fallback to it, which would fork under mountNoLeak's lock).
			DirectMountStrict: os.Geteuid() == 0,
			AllowOther:        os.Geteuid() == 0,
			// One request per lockspace read (sanlock reads 1 MiB).
			MaxWrite: 1 << 20,
			// io_submit queues, a real disk's way (see the package doc).
			ExtraCapabilities: fuse.CAP_ASYNC_DIO,
			// Hung asynchronous requests count against this; leave room.
			MaxBackground: 256,
			Logger:        discardLogger,
		},
		EntryTimeout: &sec, AttrTimeout: &sec,
	}
	srv, err := mountNoLeak(dir, root, opts)
	if err != nil {
		return nil, fmt.Errorf("mount on %s: %w", dir, err)
	}
	d.srv = srv
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("stat %s: %w", dir, err)
	}
	// An anonymous device: major 0, and the connection is named by the
	// minor.
	d.conn = unix.Minor(st.Dev)
	return d, nil
}

// mountNoLeak mounts root on dir and makes sure that no child process
// inherits the connection's /dev/fuse descriptor. go-fuse opens it without
// O_CLOEXEC when it mounts directly; a daemon that a parallel test starts
// from this process would then keep the connection alive (a crash of the
// test binary would no longer abort it). The fork lock is held from the
// open until CLOEXEC is set, as syscall.ForkLock's doc asks of code that
// cannot open with O_CLOEXEC.
func mountNoLeak(dir string, root fs.InodeEmbedder, opts *fs.Options) (*fuse.Server, error) {
	if !opts.DirectMountStrict {
		// fusermount passes the descriptor back and go-fuse sets
		// CLOEXEC; fusermount itself is forked, so the lock must not
		// be held.
		return fs.Mount(dir, root, opts)
	}
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	srv, err := fs.Mount(dir, root, opts)
	if err != nil {
		return nil, err
	}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err != nil || target != "/dev/fuse" {
			continue
		}
		if n, err := strconv.Atoi(filepath.Base(fd)); err == nil {
			syscall.CloseOnExec(n)
		}
	}
	return srv, nil
}

// Size returns the image size.
func (d *Disk) Size() int64 { return int64(len(d.img.data)) }

// Inject adds a fault, as delta.FaultDevice.Inject. Faults are matched in
// the order added; a hang lasts until Release or Heal.
func (d *Disk) Inject(f delta.Fault) { d.fault.Inject(f) }

// Release lets every hung I/O proceed; the faults stay (a hang fault hangs
// the next matching I/O again).
func (d *Disk) Release() { d.fault.Release() }

// Heal removes every fault, then releases every hung I/O: the disk is
// healthy again.
func (d *Disk) Heal() {
	d.fault.Clear()
	d.fault.Release()
	d.mu.Lock()
	d.injected = nil
	d.mu.Unlock()
}

// Hung returns how many I/Os are blocked in a hang right now.
func (d *Disk) Hung() int { return d.fault.Hung() }

// Counts returns the request counters.
func (d *Disk) Counts() Counts {
	d.mu.Lock()
	c := d.counts
	d.mu.Unlock()
	c.Hung = d.fault.Hung()
	return c
}

// Events returns the I/O log: every request answered, oldest first (at
// most the last 131072).
func (d *Disk) Events() []Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Event(nil), d.events...)
}

// Bytes returns a copy of n bytes of the image at off, read without going
// through the kernel or the faults.
func (d *Disk) Bytes(off int64, n int) []byte {
	d.img.mu.Lock()
	defer d.img.mu.Unlock()
	return append([]byte(nil), d.img.data[off:off+int64(n)]...)
}

// Close heals the disk and unmounts it. If it is still busy after
// BusyTimeout it is detached lazily and its FUSE connection is aborted, so
// that nothing can stay blocked on it, and Close returns an error naming
// the processes that still had it open. Close is idempotent.
func (d *Disk) Close() error {
	d.mu.Lock()
	if d.closed || d.srv == nil {
		d.closed = true
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.Heal()
	limit := d.BusyTimeout
	if limit <= 0 {
		limit = 10 * time.Second
	}
	err := d.unmount(limit)
	if err == nil {
		return nil
	}
	// Busy: a process still has the image open, or a request is stuck.
	if h := holders(d.MountPoint); h != "" {
		err = fmt.Errorf("%w (open by %s)", err, h)
	}
	derr := unix.Unmount(d.MountPoint, unix.MNT_DETACH)
	aerr := abortConn(d.conn)
	waited := make(chan struct{})
	go func() { d.srv.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("faultdisk: %s: unmount: %v; lazy unmount: %v; abort: %v; server still running", d.MountPoint, err, derr, aerr)
	}
	return fmt.Errorf("faultdisk: %s was busy (unmount: %v); detached lazily (%v) and connection %d aborted (%v)",
		d.MountPoint, err, derr, d.conn, aerr)
}

// unmount unmounts the disk and waits for the server to stop, trying for
// up to limit while the mount is busy: the kernel keeps a FUSE mount busy
// until the server has answered the RELEASE of its last open file, which
// comes asynchronously after the last process closed it (or exited).
func (d *Disk) unmount(limit time.Duration) error {
	if os.Geteuid() != 0 {
		// Mounted through fusermount, which go-fuse calls to unmount.
		return d.srv.Unmount()
	}
	deadline := time.Now().Add(limit)
	for {
		err := unix.Unmount(d.MountPoint, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("umount %s: %w", d.MountPoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waited := make(chan struct{})
	go func() { d.srv.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-time.After(time.Until(deadline) + time.Second):
		return errors.New("the server did not stop after the unmount")
	}
}

// io runs one request through the faults. While it waits, it watches the
// requesting thread: if that thread is being killed, the request is
// answered EINTR so that the process can exit, and the I/O goes on without
// it (see the package doc).
func (d *Disk) io(ctx context.Context, op string, p []byte, off int64) (int, error) {
	ev := Event{Op: op, Off: off, Len: len(p), Start: time.Now()}
	if c, ok := fuse.FromContext(ctx); ok {
		ev.Pid = c.Pid
	}
	if op == "write" && len(p) <= keepData {
		ev.Data = append([]byte(nil), p...)
	}
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		if op == "read" {
			r.n, r.err = d.fault.ReadAt(p, off)
		} else {
			r.n, r.err = d.fault.WriteAt(p, off)
		}
		ch <- r
	}()
	var tick <-chan time.Time
	interrupted := ctx.Done()
	for {
		select {
		case r := <-ch:
			ev.End, ev.Err = time.Now(), r.err
			d.record(ev, r.n)
			return r.n, r.err
		case <-interrupted:
			interrupted = nil // a signal: check now, then keep polling
		case <-tick:
		}
		if tick == nil {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			tick = t.C
		}
		if ev.Pid != 0 && dying(ev.Pid) {
			ev.Abandoned = true
			go func() {
				r := <-ch
				ev.End, ev.Err = time.Now(), r.err
				d.record(ev, r.n)
			}()
			return 0, syscall.EINTR
		}
	}
}

// record logs a finished request and counts it.
func (d *Disk) record(ev Event, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.events) >= maxEvents {
		d.events = d.events[len(d.events)-maxEvents/2:]
	}
	d.events = append(d.events, ev)
	c := &d.counts
	if ev.Abandoned {
		c.Abandoned++
	}
	switch {
	case ev.Op == "read":
		c.Reads++
		if ev.Err != nil {
			c.ReadErrs++
		} else {
			c.ReadBytes += int64(n)
		}
	default:
		c.Writes++
		if ev.Err != nil {
			c.WriteErrs++
		} else {
			c.WriteBytes += int64(n)
		}
	}
}

// errno maps an I/O error to what the FUSE request answers.
func errno(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, io.EOF) {
		return 0
	}
	return syscall.EIO
}

// memImage is the image's content: a delta.Device that accepts any offset
// and length (buffered readers such as hexdump read unaligned) and applies
// each write atomically.
type memImage struct {
	mu   sync.Mutex
	data []byte
}

var _ delta.Device = (*memImage)(nil)

func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off+int64(len(p)) > int64(len(m.data)) {
		return 0, syscall.ENOSPC
	}
	return copy(m.data[off:], p), nil
}

func (m *memImage) SectorSize() int      { return 0 }
func (m *memImage) Size() (int64, error) { return int64(len(m.data)), nil }
func (m *memImage) Close() error         { return nil }
func (m *memImage) String() string       { return "faultdisk" }
