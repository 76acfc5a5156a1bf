package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// TestInitMatchesSanlockImages compares init's output on a regular file
// with the areas sanlock 3.8.5 wrote (testdata/sanlock-3.8).
func TestInitMatchesSanlockImages(t *testing.T) {
	tests := []struct {
		name  string
		image string
		ls    string
		args  []string
		ss    int
		align int
		hosts int
	}{
		{"512 default io", "ls512-fresh.bin", "LS", nil, 512, leader.MiB, 2000},
		{"512 explicit", "ls512-fresh.bin", "LS", []string{"-o", "10", "-Z", "512", "-A", "1M"}, 512, leader.MiB, 2000},
		{"4096/8M io 1", "ls4k-fresh.bin", "LS4K", []string{"-o", "1", "--sector-size", "4096"}, 4096, 8 * leader.MiB, 2000},
	}
	for _, tt := range tests {
		for _, off := range []int64{0, int64(tt.align)} {
			t.Run(fmt.Sprintf("%s/offset %d", tt.name, off), func(t *testing.T) {
				size := off + int64(tt.align) + leader.MiB
				path := testimg.File(t, size)
				args := append([]string{"init", "-s", fmt.Sprintf("%s:0:%s:%d", tt.ls, path, off)}, tt.args...)
				out, errOut, code := runCmd(t, args...)
				if code != 0 {
					t.Fatalf("init exit %d: %s", code, errOut)
				}
				if !strings.Contains(out, "initialised lockspace "+tt.ls) {
					t.Errorf("init output %q does not confirm", out)
				}
				want := make([]byte, size)
				copy(want[off:], refArea(t, tt.image, tt.ss, tt.align, tt.hosts))
				got := testimg.ReadArea(t, path, 0, int(size))
				if i := testimg.FirstDiff(got, want); i >= 0 {
					t.Fatalf("image differs from sanlock's at byte %d (area byte %d): got %#x, want %#x", i, int64(i)-off, got[i], want[i])
				}
			})
		}
	}
}

func TestInitGeometryAndIOTimeout(t *testing.T) {
	tests := []struct {
		args  []string
		ss    int
		flag  uint32
		hosts int
		io    uint16
	}{
		{nil, 512, leader.FlagAlign1M, 2000, 10},
		{[]string{"-o", "1"}, 512, leader.FlagAlign1M, 2000, 1},
		{[]string{"--io-timeout", "255", "-Z", "4096", "-A", "1M"}, 4096, leader.FlagAlign1M, 250, 255},
		{[]string{"-Z", "4096", "-A", "2M"}, 4096, leader.FlagAlign2M, 500, 10},
		{[]string{"-Z", "4096", "--align", "4M"}, 4096, leader.FlagAlign4M, 1000, 10},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			path := testimg.File(t, 8*leader.MiB)
			args := append([]string{"init", "-s", "X:7:" + path + ":0"}, tt.args...)
			if _, errOut, code := runCmd(t, args...); code != 0 {
				t.Fatalf("init exit %d: %s", code, errOut)
			}
			buf := testimg.ReadArea(t, path, 0, 8*leader.MiB)
			for _, id := range []int{1, tt.hosts} {
				r, _ := leader.DecodeRecord(buf[(id-1)*tt.ss:])
				if err := r.Verify("X"); err != nil {
					t.Fatalf("host %d: %v", id, err)
				}
				if r.SectorSize != uint32(tt.ss) || r.Flags != tt.flag || r.IOTimeout != tt.io {
					t.Errorf("host %d: sector_size %d flags %#x io_timeout %d, want %d %#x %d",
						id, r.SectorSize, r.Flags, r.IOTimeout, tt.ss, tt.flag, tt.io)
				}
			}
			if after := buf[tt.hosts*tt.ss:]; !bytes.Equal(after, make([]byte, len(after))) {
				t.Errorf("bytes after host %d's sector are not zero", tt.hosts)
			}
		})
	}
}

func TestInitRefusesExisting(t *testing.T) {
	path := testimg.File(t, 2*leader.MiB)
	spec := "LS:0:" + path + ":0"
	if _, errOut, code := runCmd(t, "init", "-s", spec); code != 0 {
		t.Fatalf("first init: exit %d: %s", code, errOut)
	}
	before := fileSum(t, path)
	_, errOut, code := runCmd(t, "init", "-s", "OTHER:0:"+path+":0", "-o", "1")
	if code != 1 || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "--force") {
		t.Fatalf("second init: exit %d, stderr %q; want 1 and an 'already exists ... --force' error", code, errOut)
	}
	if fileSum(t, path) != before {
		t.Fatal("a refused init changed the image")
	}
	if _, errOut, code := runCmd(t, "init", "--force", "-s", "OTHER:0:"+path+":0"); code != 0 {
		t.Fatalf("init --force: exit %d: %s", code, errOut)
	}
	r, _ := leader.DecodeRecord(testimg.ReadArea(t, path, 0, 512))
	if err := r.Verify("OTHER"); err != nil {
		t.Errorf("after --force: %v", err)
	}
}

// TestInitBadInput checks that every bad command line fails with a one-line
// error, the right exit status, and writes nothing.
func TestInitBadInput(t *testing.T) {
	long := strings.Repeat("n", 49)
	tests := []struct {
		name     string
		args     func(path string) []string
		wantCode int
		wantErr  string
	}{
		{"unaligned offset", func(p string) []string { return []string{"-s", "LS:0:" + p + ":100"} }, 1, "not a multiple of the 512-byte sector size"},
		{"unaligned for 4096", func(p string) []string { return []string{"-s", "LS:0:" + p + ":512", "-Z", "4096", "-A", "1M"} }, 1, "not a multiple of the 4096-byte"},
		{"offset past the end", func(p string) []string { return []string{"-s", "LS:0:" + p + ":4M"} }, 1, "past the end"},
		{"area does not fit", func(p string) []string { return []string{"-s", "LS:0:" + p + ":2M"} }, 1, "needs 3145728 bytes"},
		{"too small for 8M", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "-Z", "4096"} }, 1, "device too small"},
		{"bad -s syntax", func(p string) []string { return []string{"-s", "LS:" + p} }, 2, "want NAME:HOST_ID:PATH:OFFSET"},
		{"bad host id", func(p string) []string { return []string{"-s", "LS:x:" + p + ":0"} }, 2, "not a number"},
		{"bad offset", func(p string) []string { return []string{"-s", "LS:0:" + p + ":zz"} }, 2, "not a byte count"},
		{"name too long", func(p string) []string { return []string{"-s", long + ":0:" + p + ":0"} }, 2, "at most 48"},
		{"empty name", func(p string) []string { return []string{"-s", ":0:" + p + ":0"} }, 2, "empty name"},
		{"no -s", func(p string) []string { return nil }, 2, "-s NAME:HOST_ID:PATH:OFFSET is required"},
		{"io_timeout 0", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "-o", "0"} }, 2, "1..255"},
		{"io_timeout 256", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "-o", "256"} }, 2, "1..255"},
		{"bad sector size", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "-Z", "1024"} }, 2, "want 512 or 4096"},
		{"bad align", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "-A", "3M"} }, 2, "want 1M, 2M, 4M or 8M"},
		{"align without 4k", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "-A", "2M"} }, 1, "needs 4096-byte sectors"},
		{"512 with 8M", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "-Z", "512", "-A", "8M"} }, 1, "invalid sector/align"},
		{"missing path", func(p string) []string { return []string{"-s", "LS:0:" + p + ".missing:0"} }, 1, "no such file"},
		{"directory", func(p string) []string { return []string{"-s", "LS:0:/:0"} }, 1, "/"},
		{"extra argument", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "extra"} }, 2, "unexpected argument"},
		{"unknown flag", func(p string) []string { return []string{"-s", "LS:0:" + p + ":0", "--bogus"} }, 2, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := testimg.File(t, 2*leader.MiB+512*1024)
			before := fileSum(t, path)
			out, errOut, code := runCmd(t, append([]string{"init"}, tt.args(path)...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errOut, tt.wantErr)
			}
			if n := strings.Count(errOut, "\n"); n != 1 || !strings.HasPrefix(errOut, "sanlock-msg init: ") {
				t.Errorf("stderr %q: want one line starting 'sanlock-msg init: '", errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if fileSum(t, path) != before {
				t.Error("a failed init wrote to the image")
			}
		})
	}
}
