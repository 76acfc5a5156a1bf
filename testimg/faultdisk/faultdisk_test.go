//go:build linux

package faultdisk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/testimg/faultdisk"
)

// childEnv makes the test binary a child that serves a disk on the
// directory it names and blocks (TestStaleMountSwept kills it).
const childEnv = "FAULTDISK_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		d, err := faultdisk.New(dir, 1<<20)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		d.Inject(delta.Fault{Kind: delta.FaultHang})
		fmt.Println("serving")
		select {}
	}
	os.Exit(m.Run())
}

// open opens the image as the daemon does: O_DIRECT|O_SYNC, through IO
// with a timeout per call.
func open(t *testing.T, path string) *delta.IO {
	t.Helper()
	f, err := delta.OpenFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return delta.NewIO(f, clock.Real{})
}

func sector(b byte) []byte {
	p := make([]byte, 512)
	for i := range p {
		p[i] = b
	}
	return p
}

// TestMount: the image opens with O_DIRECT, has its size, and what is
// written through the kernel is what the disk holds and reads back.
func TestMount(t *testing.T) {
	d := faultdisk.Mount(t, 2<<20)
	st, err := os.Stat(d.Path)
	if err != nil || st.Size() != 2<<20 {
		t.Fatalf("stat %s: %v, size %d; want 2 MiB", d.Path, err, st.Size())
	}
	o := open(t, d.Path)
	ctx := context.Background()
	if err := o.Write(ctx, 1024, sector(0xAB), time.Second); err != nil {
		t.Fatal(err)
	}
	if got := d.Bytes(1024, 512); !bytes.Equal(got, sector(0xAB)) {
		t.Errorf("the disk holds %x..., want ab...", got[:4])
	}
	got, err := o.Read(ctx, 512, 1536, time.Second)
	if err != nil || !bytes.Equal(got[512:1024], sector(0xAB)) || got[0] != 0 || got[1535] != 0 {
		t.Errorf("read back: %v", err)
	}
	// Buffered, unaligned I/O works too (tools such as hexdump).
	b, err := os.ReadFile(d.Path)
	if err != nil || len(b) != 2<<20 || b[1024+7] != 0xAB {
		t.Errorf("buffered read of the image: %v, %d bytes", err, len(b))
	}
	c := d.Counts()
	if c.Writes < 1 || c.Reads < 2 || c.WriteBytes < 512 || c.ReadErrs+c.WriteErrs != 0 {
		t.Errorf("counts %+v", c)
	}
	ev := d.Events()
	if len(ev) == 0 || ev[0].Op != "write" || ev[0].Off != 1024 || ev[0].Len != 512 || ev[0].Err != nil ||
		!bytes.Equal(ev[0].Data, sector(0xAB)) || ev[0].Pid == 0 {
		t.Errorf("first event %+v, want the write", ev[0])
	}
}

// TestFaults: each fault as a process doing O_DIRECT I/O sees it.
func TestFaults(t *testing.T) {
	d := faultdisk.Mount(t, 1<<20)
	o := open(t, d.Path)
	ctx := context.Background()

	t.Run("eio", func(t *testing.T) {
		d.Inject(delta.Fault{Kind: delta.FaultEIO, Op: "read", Off: 0, End: 512, Count: 1})
		if _, err := o.Read(ctx, 0, 512, time.Second); !errors.Is(err, syscall.EIO) {
			t.Errorf("read: %v, want EIO", err)
		}
		if _, err := o.Read(ctx, 0, 512, time.Second); err != nil {
			t.Errorf("read after the count: %v", err)
		}
		d.Inject(delta.Fault{Kind: delta.FaultEIO, Op: "write"})
		if err := o.Write(ctx, 512, sector(1), time.Second); !errors.Is(err, syscall.EIO) {
			t.Errorf("write: %v, want EIO", err)
		}
		if _, err := o.Read(ctx, 512, 512, time.Second); err != nil {
			t.Errorf("a read under a write fault: %v", err)
		}
		d.Heal()
		if err := o.Write(ctx, 512, sector(1), time.Second); err != nil {
			t.Errorf("write after heal: %v", err)
		}
	})

	t.Run("hang", func(t *testing.T) {
		d.Inject(delta.Fault{Kind: delta.FaultHang, Op: "write", Off: 4096, End: 8192})
		if err := o.Write(ctx, 0, sector(2), time.Second); err != nil {
			t.Fatalf("a write outside the hung range: %v", err)
		}
		start := time.Now()
		err := o.Write(ctx, 4096, sector(2), 300*time.Millisecond)
		if !errors.Is(err, delta.ErrIOTimeout) || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("hung write: %v after %v, want a timeout", err, time.Since(start))
		}
		if d.Hung() != 1 || d.Counts().Hung != 1 {
			t.Errorf("Hung() = %d, want 1", d.Hung())
		}
		if got := d.Bytes(4096, 1)[0]; got != 0 {
			t.Errorf("a hung write landed: %x", got)
		}
		d.Heal()
		waitFor(t, "the late write to land", func() bool { return d.Bytes(4096, 1)[0] == 2 && d.Hung() == 0 })
	})

	t.Run("delay", func(t *testing.T) {
		d.Inject(delta.Fault{Kind: delta.FaultDelay, Delay: 200 * time.Millisecond, Count: 2})
		start := time.Now()
		if _, err := o.Read(ctx, 0, 512, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := o.Write(ctx, 0, sector(3), time.Second); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 400*time.Millisecond {
			t.Errorf("two delayed I/Os took %v, want >= 400ms", took)
		}
	})

	t.Run("tear", func(t *testing.T) {
		d.Inject(delta.Fault{Kind: delta.FaultTorn, Op: "write", Bytes: 176, Count: 1})
		if err := o.Write(ctx, 8192, sector(4), time.Second); !errors.Is(err, syscall.EIO) {
			t.Fatalf("torn write: %v, want EIO", err)
		}
		got := d.Bytes(8192, 512)
		if got[175] != 4 || got[176] != 0 {
			t.Errorf("torn write left %x %x at 175, 176; want 04 00", got[175], got[176])
		}
	})

	t.Run("tear with hold", func(t *testing.T) {
		d.Inject(delta.Fault{Kind: delta.FaultTorn, Op: "write", Bytes: 160, Delay: 500 * time.Millisecond, Count: 1})
		done := make(chan error, 1)
		go func() { done <- o.Write(ctx, 16384, sector(5), 2*time.Second) }()
		o2 := open(t, d.Path) // another reader, as a peer host
		waitFor(t, "a reader to see the torn sector", func() bool {
			b, err := o2.Read(ctx, 16384, 512, time.Second)
			return err == nil && b[159] == 5 && b[160] == 0
		})
		if err := <-done; err != nil {
			t.Fatalf("the write completes after its hold: %v", err)
		}
		if b, err := o2.Read(ctx, 16384, 512, time.Second); err != nil || !bytes.Equal(b, sector(5)) {
			t.Errorf("after the hold: %v, sector not whole", err)
		}
	})

	t.Run("short and corrupt", func(t *testing.T) {
		d.Inject(delta.Fault{Kind: delta.FaultCorrupt, Op: "read", Bytes: 3, Count: 1})
		b, err := o.Read(ctx, 16384, 512, time.Second)
		if err != nil || b[3] != 5^0xA5 {
			t.Errorf("corrupt read: %v, byte 3 %x", err, b[3])
		}
		// A short read shows in pread's count (os.File.ReadAt would
		// read the rest).
		d.Inject(delta.Fault{Kind: delta.FaultShort, Op: "read", Bytes: 100, Count: 1})
		f, err := os.Open(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n, err := unix.Pread(int(f.Fd()), make([]byte, 512), 0); n != 100 || err != nil {
			t.Errorf("short read: %d bytes, %v; want 100", n, err)
		}
	})
}

// TestNoFdLeak: a process started after the mount does not inherit the
// connection's /dev/fuse descriptor (it would keep the connection alive).
func TestNoFdLeak(t *testing.T) {
	faultdisk.Mount(t, 1<<20)
	out, err := exec.Command("ls", "-l", "/proc/self/fd/").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Errorf("a child process has /dev/fuse open:\n%s", out)
	}
}

// TestParallelWrites: while one host's write hangs, other hosts' writes to
// other sectors of the image complete (the kernel would otherwise hold the
// file's lock across the hung write).
func TestParallelWrites(t *testing.T) {
	d := faultdisk.Mount(t, 1<<20)
	d.Inject(delta.Fault{Kind: delta.FaultHang, Op: "write", Off: 0, End: 512})
	t.Cleanup(d.Heal)
	hung := open(t, d.Path)
	go hung.Write(context.Background(), 0, sector(9), time.Minute)
	waitFor(t, "the write of sector 0 to hang", func() bool { return d.Hung() == 1 })
	for i := int64(1); i <= 3; i++ {
		o := open(t, d.Path) // another host
		if err := o.Write(context.Background(), i*512, sector(byte(i)), 2*time.Second); err != nil {
			t.Errorf("write of sector %d while sector 0's hangs: %v", i, err)
		}
	}
	d.Heal()
	waitFor(t, "the hung write to land", func() bool { return d.Bytes(0, 1)[0] == 9 })
}

// TestKillHung: a process whose read hangs can be killed; its I/O
// finishes when the hang is released, and the log marks it abandoned.
func TestKillHung(t *testing.T) {
	d := faultdisk.Mount(t, 1<<20)
	d.Inject(delta.Fault{Kind: delta.FaultHang, Op: "read"})
	t.Cleanup(d.Heal)
	cmd := exec.Command("dd", "if="+d.Path, "of=/dev/null", "bs=512", "count=1", "iflag=direct")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dd's read to hang", func() bool { return d.Hung() == 1 })
	cmd.Process.Kill() // our child, by pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("dd with a hung read did not die of SIGKILL within 5 s")
	}
	if d.Hung() != 1 {
		t.Errorf("Hung() = %d after the kill; the I/O itself must stay queued", d.Hung())
	}
	d.Heal()
	waitFor(t, "the abandoned read to finish", func() bool { return d.Counts().Abandoned == 1 })
	ev := d.Events()
	if last := ev[len(ev)-1]; !last.Abandoned || last.Op != "read" || last.Err != nil {
		t.Errorf("last event %+v, want the abandoned read, finished", last)
	}
}

// TestCtlFile: the control file takes commands from a shell and shows
// the disk's state; a bad command fails the write with EINVAL.
func TestCtlFile(t *testing.T) {
	d := faultdisk.Mount(t, 1<<20)
	o := open(t, d.Path)
	if err := os.WriteFile(d.CtlPath, []byte("eio write at 512+512 count 1\n"), 0); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(context.Background(), 512, sector(1), time.Second); !errors.Is(err, syscall.EIO) {
		t.Errorf("write after `eio write at 512+512`: %v, want EIO", err)
	}
	st, err := os.ReadFile(d.CtlPath)
	if err != nil || !strings.Contains(string(st), "eio write at 512+512 count 1") || !strings.Contains(string(st), "writes 1 (1 failed") {
		t.Errorf("ctl shows %v:\n%s", err, st)
	}
	err = os.WriteFile(d.CtlPath, []byte("hang sideways\n"), 0)
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("a bad command: %v, want EINVAL", err)
	}
	if st, _ := os.ReadFile(d.CtlPath); !strings.Contains(string(st), `last command failed: faultdisk: "hang sideways": unexpected "sideways"`) {
		t.Errorf("ctl does not show the failed command:\n%s", st)
	}
	if err := os.WriteFile(d.CtlPath, []byte("heal\n"), 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.ReadFile(d.CtlPath); !strings.Contains(string(st), "since the last heal: none") {
		t.Errorf("ctl after heal:\n%s", st)
	}
}

func TestParseFault(t *testing.T) {
	tests := []struct {
		cmd     string
		want    delta.Fault
		wantErr string
	}{
		{cmd: "hang", want: delta.Fault{Kind: delta.FaultHang}},
		{cmd: "hang write at 512+512", want: delta.Fault{Kind: delta.FaultHang, Op: "write", Off: 512, End: 1024}},
		{cmd: "eio read count 3", want: delta.Fault{Kind: delta.FaultEIO, Op: "read", Count: 3}},
		{cmd: "delay 300ms at 0x200+0x200", want: delta.Fault{Kind: delta.FaultDelay, Delay: 300 * time.Millisecond, Off: 512, End: 1024}},
		{cmd: "tear 176 hold 1s at 512+512 count 1", want: delta.Fault{Kind: delta.FaultTorn, Op: "write", Bytes: 176, Delay: time.Second, Off: 512, End: 1024, Count: 1}},
		{cmd: "short 100 read", want: delta.Fault{Kind: delta.FaultShort, Op: "read", Bytes: 100}},
		{cmd: "corrupt 7", want: delta.Fault{Kind: delta.FaultCorrupt, Bytes: 7}},
		{cmd: "heal"},
		{cmd: "  "},
		{cmd: "heal now", wantErr: "takes no arguments"},
		{cmd: "explode", wantErr: `unknown command "explode"`},
		{cmd: "delay", wantErr: "delay needs a value"},
		{cmd: "delay -1s", wantErr: "want a positive duration"},
		{cmd: "tear x", wantErr: "want a number"},
		{cmd: "tear 100 read", wantErr: "writes only"},
		{cmd: "hang count 2", wantErr: "count does not apply"},
		{cmd: "eio count 0", wantErr: "count 0"},
		{cmd: "eio hold 1s", wantErr: "hold applies to tear only"},
		{cmd: "eio at 512", wantErr: "want OFF+LEN"},
		{cmd: "eio at 512+0", wantErr: "want OFF+LEN"},
	}
	for _, tt := range tests {
		got, err := faultdisk.ParseFault(tt.cmd)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseFault(%q) error %v, want one containing %q", tt.cmd, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", tt.cmd, got, err, tt.want)
		}
	}
}

// TestLoop: a loop device with 4096-byte sectors over the image passes
// faults through as a block device.
func TestLoop(t *testing.T) {
	d := faultdisk.Mount(t, 4<<20)
	dev := d.Loop(t, 4096)
	f, err := delta.OpenFile(dev, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.SectorSize() != 4096 {
		t.Fatalf("%s: %d-byte sectors, want 4096", dev, f.SectorSize())
	}
	o := delta.NewIO(f, clock.Real{})
	ctx := context.Background()
	d.Inject(delta.Fault{Kind: delta.FaultEIO, Op: "write", Count: 1})
	buf := bytes.Repeat([]byte{7}, 4096)
	if err := o.Write(ctx, 8192, buf, time.Second); !errors.Is(err, syscall.EIO) {
		t.Errorf("write through the loop device: %v, want EIO", err)
	}
	if err := o.Write(ctx, 8192, buf, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := d.Bytes(8192, 4096); !bytes.Equal(got, buf) {
		t.Error("the loop device's write is not on the disk")
	}
}

// TestCloseBusy: a process that keeps the image open does not make Close
// hang: after BusyTimeout the mount is detached and the connection
// aborted, the error names the process, and its next read fails.
func TestCloseBusy(t *testing.T) {
	d := faultdisk.Mount(t, 1<<20)
	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	// A child holds the image open (as its stdin) and reads it on demand.
	holder := exec.Command("sh", "-c", "read x <&3; dd bs=512 count=1 2>&1 >/dev/null; echo rc=$?")
	holder.Stdin = f
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.ExtraFiles = []*os.File{pr}
	var out bytes.Buffer
	holder.Stdout = &out
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	f.Close()
	pr.Close()

	d.BusyTimeout = 300 * time.Millisecond
	start := time.Now()
	err = d.Close()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("open by pid %d (sh -c read", holder.Process.Pid)) {
		t.Errorf("Close of a busy disk: %v; want an error naming pid %d (sh -c ...)", err, holder.Process.Pid)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close of a busy disk took %v", took)
	}
	if mounted(d.MountPoint) {
		t.Errorf("%s still mounted after Close", d.MountPoint)
	}
	fmt.Fprintln(pw, "go")
	pw.Close()
	holder.Wait()
	if !strings.Contains(out.String(), "rc=1") {
		t.Errorf("the holder's read after the abort: %q, want a failure", out.String())
	}
}

// TestStaleMountSwept: a serving process that dies with a read hung on
// its disk frees the reader at once (the kernel aborts the connection),
// and leaves a dead mount that the next Mount detaches.
func TestStaleMountSwept(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		testimg.Unavailable(t, "faultdisk: needs root and /dev/fuse")
	}
	dir := filepath.Join(t.TempDir(), "child")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	line := make([]byte, 8)
	if _, err := out.Read(line); err != nil || !strings.HasPrefix(string(line), "serving") {
		t.Fatalf("child: %q, %v", line, err)
	}
	// A reader hangs on the child's disk (it hangs every I/O).
	reader := exec.Command("dd", "if="+filepath.Join(dir, faultdisk.ImageName), "of=/dev/null", "bs=512", "count=1", "iflag=direct")
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan error, 1)
	go func() { readerDone <- reader.Wait() }()
	select {
	case err := <-readerDone:
		t.Fatalf("the reader did not hang: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	child.Process.Kill() // the "crash"
	child.Wait()
	select {
	case err := <-readerDone:
		if err == nil {
			t.Error("the reader of a crashed disk succeeded")
		}
	case <-time.After(5 * time.Second):
		reader.Process.Kill()
		t.Fatal("the reader still hangs 5 s after the server died")
	}
	if !mounted(dir) {
		t.Fatal("the crashed server's mount is gone already; the test proves nothing")
	}
	faultdisk.Mount(t, 1<<20) // sweeps
	if mounted(dir) {
		t.Errorf("the dead mount on %s is still there after the next Mount", dir)
	}
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(b), " "+dir+" ")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
