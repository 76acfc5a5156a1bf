package watchdog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// devNull opens /dev/null and returns its device number.
func devNull(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatalf("no /dev/null: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return rdevOf(fi)
}

func TestFindHoldersFindsThisProcess(t *testing.T) {
	rdev := devNull(t)
	holders := findHolders("/proc", map[uint64]bool{rdev: true})
	prefix := fmt.Sprintf("pid %d (", os.Getpid())
	if !slices.ContainsFunc(holders, func(h string) bool { return strings.HasPrefix(h, prefix) }) {
		t.Errorf("holders of /dev/null = %v, want one starting %q", holders, prefix)
	}
}

func TestBusyError(t *testing.T) {
	rdev := devNull(t)
	err := busyError("/dev/null", rdev, unix.EBUSY)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, unix.EBUSY) {
		t.Errorf("busyError = %v, want ErrBusy and EBUSY", err)
	}
	for _, want := range []string{
		"watchdog: /dev/null is already open by another program (wdmd, sbd, corosync",
		"held by pid ",
		fmt.Sprintf("pid %d (", os.Getpid()),
		"or use --watchdog none",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("busyError text %q lacks %q", err, want)
		}
	}
}

func TestWatchdogAliases(t *testing.T) {
	sys := t.TempDir()
	dir := filepath.Join(sys, "class/watchdog/watchdog0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dev"), []byte("248:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	legacy, first, second := unix.Mkdev(10, 130), unix.Mkdev(248, 0), unix.Mkdev(248, 1)
	tests := []struct {
		name string
		sys  string
		rdev uint64
		want []uint64
	}{
		{name: "legacy aliases watchdog0", sys: sys, rdev: legacy, want: []uint64{legacy, first}},
		{name: "watchdog0 aliases legacy", sys: sys, rdev: first, want: []uint64{legacy, first}},
		{name: "watchdog1 stands alone", sys: sys, rdev: second, want: []uint64{second}},
		{name: "no sysfs", sys: filepath.Join(sys, "missing"), rdev: legacy, want: []uint64{legacy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := watchdogAliases(tt.sys, tt.rdev)
			if len(got) != len(tt.want) {
				t.Errorf("aliases = %v, want %v", got, tt.want)
			}
			for _, r := range tt.want {
				if !got[r] {
					t.Errorf("aliases = %v, missing %d", got, r)
				}
			}
		})
	}
}
