// Package testimg gives tests in any package of sanlock-msg the storage and
// the processes they need: sparse image files that accept O_DIRECT, loop
// block devices with 512- or 4096-byte logical sectors, the sanlock-msg
// binary, and real sanlock 3.x daemons started unprivileged, one run
// directory each.
//
// Every helper takes a testing.TB, calls t.Helper and registers its own
// cleanup (files removed, loop devices detached, daemons stopped), so a
// test never leaks what it made.
//
// Prerequisites that a laptop may lack (root, loop devices, the sanlock
// packages) make a test skip with the reason, except under CI=true, where
// a missing prerequisite is a test failure: CI cannot go green by skipping.
//
// Typical use:
//
//	path := testimg.File(t, 2<<20)
//	dev := testimg.Loop(t, path, 4096)         // root only
//	testimg.SanlockInit(t, "LS", dev, 0, 1)
//	s1 := testimg.StartSanlock(t, "host1")
//	out, err := s1.Client("add_lockspace", "-o", "1", "-s", "LS:1:"+dev+":0")
package testimg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ncw/directio"
	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run in CI (CI=true), where missing
// prerequisites fail tests instead of skipping them.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t with the reason, or fails it under CI=true: the
// rule for every missing prerequisite (root, loop devices, /dev/fuse, the
// sanlock packages). Helpers in other packages (testimg/faultdisk) use it
// too.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true: this prerequisite is mandatory)", msg)
	}
	t.Skip(msg)
}

// File creates a sparse file of size bytes in t.TempDir() and returns its
// path. Lockspace I/O uses O_DIRECT, which tmpfs refuses, so when the
// temporary directory does not accept O_DIRECT the file is made under
// /var/tmp instead (and removed by t.Cleanup). If neither accepts
// O_DIRECT, the test is skipped (failed under CI=true).
func File(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lockspace.img")
	err := sparseFile(path, size)
	if err == nil {
		return path
	}
	os.Remove(path)
	dir, err2 := os.MkdirTemp("/var/tmp", "testimg-")
	if err2 == nil {
		t.Cleanup(func() { os.RemoveAll(dir) })
		path = filepath.Join(dir, "lockspace.img")
		if err2 = sparseFile(path, size); err2 == nil {
			return path
		}
	}
	Unavailable(t, "testimg: no directory accepts O_DIRECT: %v; %v", err, err2)
	return ""
}

// sparseFile creates path with size bytes and checks that it opens with
// O_DIRECT.
func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := directio.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s with O_DIRECT: %w", path, err)
	}
	return d.Close()
}

// Loop attaches path to a free loop device with
// `losetup -f --show --sector-size N` and returns the device path; it is
// detached in t.Cleanup. It needs root and loop devices: without them the
// test is skipped with the reason (failed under CI=true). The device's
// logical sector size is checked with BLKSSZGET.
func Loop(t testing.TB, path string, sectorSize int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "testimg: loop devices need root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		Unavailable(t, "testimg: no loop device support: %v", err)
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		Unavailable(t, "testimg: losetup not installed: %v", err)
	}
	out, err := exec.Command("losetup", "-f", "--show", "--sector-size", fmt.Sprint(sectorSize), path).CombinedOutput()
	if err != nil {
		Unavailable(t, "testimg: losetup --sector-size %d %s: %v: %s", sectorSize, path, err, strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("testimg: losetup -d %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
		}
	})
	got, err := blockSectorSize(dev)
	if err != nil {
		t.Fatalf("testimg: %v", err)
	}
	if got != sectorSize {
		t.Fatalf("testimg: %s has %d-byte logical sectors, want %d", dev, got, sectorSize)
	}
	return dev
}

func blockSectorSize(dev string) (int, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return 0, fmt.Errorf("%s: BLKSSZGET: %w", dev, err)
	}
	return ss, nil
}

// ReadArea reads n bytes at off of path (a file or block device) with
// O_DIRECT, so that it sees what is on disk whatever the page cache holds.
// off and n must be multiples of the device's sector size.
func ReadArea(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := directio.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("testimg: %v", err)
	}
	defer f.Close()
	buf := directio.AlignedBlock(n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatalf("testimg: read %d bytes at %d of %s: %v", n, off, path, err)
	}
	return buf
}

// FirstDiff returns the first index at which a and b differ, or -1 if they
// are equal. When one is a prefix of the other, it returns the shorter
// length. Tests comparing images use it to report where they diverge.
func FirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// processAlive reports whether pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
