package watchdog

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// busyError is the error for an EBUSY open of path, a device with number
// rdev. It names the processes that hold the device open, if /proc shows
// them (seeing other users' descriptors needs root).
func busyError(path string, rdev uint64, cause error) error {
	msg := fmt.Sprintf("watchdog: %s is already open by another program (wdmd, sbd, corosync, watchdog...)", path)
	if hs := findHolders("/proc", watchdogAliases("/sys", rdev)); len(hs) > 0 {
		msg += ": held by " + strings.Join(hs, ", ")
	}
	msg += "; stop it or use --watchdog none"
	return &detailError{msg: msg, sentinel: ErrBusy, cause: cause}
}

// watchdogAliases returns the device numbers that share one device with
// rdev. The kernel's legacy /dev/watchdog (misc 10:130) is the first
// watchdog, /dev/watchdog0, under another number; opening either makes the
// other busy.
func watchdogAliases(sys string, rdev uint64) map[uint64]bool {
	set := map[uint64]bool{rdev: true}
	b, err := os.ReadFile(filepath.Join(sys, "class/watchdog/watchdog0/dev"))
	if err != nil {
		return set
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return set
	}
	legacy, first := unix.Mkdev(10, 130), unix.Mkdev(major, minor)
	if rdev == legacy || rdev == first {
		set[legacy], set[first] = true, true
	}
	return set
}

// findHolders scans the open files of every process under proc and returns
// "pid N (comm)" for each process that has a character device numbered in
// rdevs open. It only stats descriptors that link into /dev, so a file on a
// hung network mount cannot block it.
func findHolders(proc string, rdevs map[uint64]bool) []string {
	procs, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	var holders []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(proc, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to look at
		}
		for _, fd := range fds {
			link := filepath.Join(fdDir, fd.Name())
			target, err := os.Readlink(link)
			if err != nil || !strings.HasPrefix(target, "/dev/") {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(link, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || !rdevs[uint64(st.Rdev)] {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join(proc, p.Name(), "comm"))
			holders = append(holders, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
			break
		}
	}
	return holders
}
