package daemon

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

func TestPermitted(t *testing.T) {
	const daemonUID, group = 1000, 50
	tests := []struct {
		name string
		peer Peer
		ok   bool
	}{
		// Allowed.
		{"root", Peer{UID: 0, GID: 7}, true},
		{"daemon's uid", Peer{UID: daemonUID, GID: 7}, true},
		{"primary group", Peer{UID: 2000, GID: group}, true},
		{"supplementary group", Peer{UID: 2000, GID: 7, Groups: []uint32{3, group}}, true},
		// Refused.
		{"stranger", Peer{UID: 2000, GID: 7, Groups: []uint32{3, 4}}, false},
		{"nobody", Peer{UID: 65534, GID: 65534}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := permitted(tt.peer, daemonUID, group)
			if tt.ok != (err == nil) {
				t.Fatalf("permitted(%+v) = %v, want ok=%v", tt.peer, err, tt.ok)
			}
			if err != nil && (!errors.Is(err, callback.ErrPermission) || !strings.Contains(err.Error(), "uid 2000") && !strings.Contains(err.Error(), "uid 65534")) {
				t.Errorf("error %q does not wrap callback.ErrPermission or name the uid", err)
			}
		})
	}
}

// TestPeerGroups: the supplementary groups come from the kernel
// (SO_PEERGROUPS) and are ours for a connection we made.
func TestPeerGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p, err := peerOf(nc)
	if err != nil {
		t.Fatal(err)
	}
	if p.PID != int32(os.Getpid()) || p.UID != uint32(os.Getuid()) || p.GID != uint32(os.Getgid()) {
		t.Errorf("peer %+v, want our pid %d uid %d gid %d", p, os.Getpid(), os.Getuid(), os.Getgid())
	}
	var want []uint32
	for _, g := range mustGroups(t) {
		want = append(want, uint32(g))
	}
	got := slices.Clone(p.Groups)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("groups %v, want %v (getgroups)", got, want)
	}
}

func mustGroups(t *testing.T) []int {
	gs, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
		err      bool
	}{
		{"line", "abc\nrest", 10, "abc\n", false},
		{"exactly max", "abcd\n", 5, "abcd\n", false},
		{"too long", "abcdef\n", 5, "", true},
		{"too long, no newline", strings.Repeat("x", 100), 50, "", true},
		{"eof mid line", "abc", 10, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readLine(bufio.NewReaderSize(strings.NewReader(tt.in), 16), tt.max)
			if (err != nil) != tt.err || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestSdNotify(t *testing.T) {
	// Unset: not an error, nothing sent.
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := sdNotify(notifyReady); sent || err != nil {
		t.Errorf("no NOTIFY_SOCKET: got (%v, %v), want (false, nil)", sent, err)
	}
	// A listening socket receives the state.
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if sent, err := sdNotify(notifyReady); !sent || err != nil {
		t.Fatalf("got (%v, %v), want (true, nil)", sent, err)
	}
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != notifyReady {
		t.Errorf("received %q, %v; want %q", buf[:n], err, notifyReady)
	}
	// A missing socket is an error.
	t.Setenv("NOTIFY_SOCKET", path+"-missing")
	if sent, err := sdNotify(notifyReady); sent || err == nil {
		t.Errorf("missing socket: got (%v, %v), want (false, error)", sent, err)
	}
}
