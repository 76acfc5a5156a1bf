//go:build linux

package faultdisk

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// fuseConnections is where fusectl shows each FUSE connection.
const fuseConnections = "/sys/fs/fuse/connections"

// sweepStale detaches the faultdisk mounts whose serving process no longer
// runs (a test binary that crashed): their connections were aborted when
// the process died, so nothing hangs on them, but the dead mounts stay in
// the table until someone unmounts them. Failures are ignored: a mount we
// may not touch is not ours to clean.
func sweepStale() {
	for _, m := range faultdiskMounts() {
		if m.pid == os.Getpid() || !dying(uint32(m.pid)) {
			continue
		}
		if unix.Unmount(m.point, unix.MNT_DETACH) == nil {
			os.Remove(m.point)
		}
	}
}

type mount struct {
	point string
	pid   int
}

// faultdiskMounts lists the mounts of type fuse.faultdisk whose source is
// faultdisk-PID.
func faultdiskMounts() []mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 2 || sf[0] != "fuse."+subtype || !strings.HasPrefix(sf[1], fsNamePrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(sf[1], fsNamePrefix))
		if err != nil {
			continue
		}
		ms = append(ms, mount{point: unescapeMountinfo(pf[4]), pid: pid})
	}
	return ms
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// abortConn aborts FUSE connection conn through fusectl, mounting fusectl
// first if it is not mounted: every pending and later request of the
// connection fails at once.
func abortConn(conn uint32) error {
	path := filepath.Join(fuseConnections, fmt.Sprint(conn), "abort")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := unix.Mount("fusectl", fuseConnections, "fusectl", 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount fusectl on %s: %w", fuseConnections, err)
		}
	}
	if err := os.WriteFile(path, []byte("1"), 0); err != nil {
		return fmt.Errorf("abort FUSE connection %d: %w", conn, err)
	}
	return nil
}

// holders names the processes that have a file under dir open, for the
// error of a busy unmount: "pid 123 (sanlock daemon -D ...), pid 456 (...)".
func holders(dir string) string {
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := map[string]bool{}
	var hs []string
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(target, dir+"/") {
			continue
		}
		pid := strings.Split(fd, "/")[2]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		h := fmt.Sprintf("pid %s (%s", pid, strings.Join(strings.Fields(strings.ReplaceAll(string(cmd), "\x00", " ")), " "))
		st, _ := os.ReadFile("/proc/" + pid + "/status")
		for line := range strings.Lines(string(st)) {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "State" || k == "PPid") {
				h += "; " + strings.ToLower(k) + " " + strings.TrimSpace(v)
			}
		}
		hs = append(hs, h+")")
	}
	return strings.Join(hs, ", ")
}

// dying reports whether thread tid is gone, a zombie, or has SIGKILL
// pending: its FUSE request must be answered for it to finish dying.
func dying(tid uint32) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH)
	}
	const sigkill = 1 << (syscall.SIGKILL - 1)
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if strings.HasPrefix(v, "Z") || strings.HasPrefix(v, "X") {
				return true
			}
		case "SigPnd", "ShdPnd":
			if mask, err := strconv.ParseUint(v, 16, 64); err == nil && mask&sigkill != 0 {
				return true
			}
		}
	}
	return false
}
