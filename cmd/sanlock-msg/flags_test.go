package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// runCmd runs the CLI in-process and returns its output and exit status.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	return out.String(), errb.String(), code
}

// refImage reads a reference image made by sanlock 3.8.5.
func refImage(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "sanlock-3.8", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// refArea rebuilds a whole area from a reference image, which keeps only
// the first sectors: as the images' README says, the sectors after the
// image are copies of its last sector up to sector maxHosts, then zeros up
// to the align size.
func refArea(t *testing.T, name string, ss, align, maxHosts int) []byte {
	t.Helper()
	img := refImage(t, name)
	area := make([]byte, align)
	copy(area, img)
	last := img[len(img)-ss:]
	for i := len(img) / ss; i < maxHosts; i++ {
		copy(area[i*ss:], last)
	}
	return area
}

// imageWith makes a file of size bytes holding data at off.
func imageWith(t *testing.T, size, off int64, data []byte) string {
	t.Helper()
	path := testimg.File(t, size)
	writeAt(t, path, off, data)
	return path
}

// writeAt writes data at off of the file at path.
func writeAt(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestGeometryFlagsResolve(t *testing.T) {
	tests := []struct {
		name    string
		ss      int
		align   string
		devSS   int
		want    leader.Geometry
		wantErr string
	}{
		{"file default", 0, "", 0, leader.Geometry{SectorSize: 512, AlignSize: leader.MiB, MaxHosts: 2000}, ""},
		{"4k device default", 0, "", 4096, leader.Geometry{SectorSize: 4096, AlignSize: 8 * leader.MiB, MaxHosts: 2000}, ""},
		{"512 device default", 0, "", 512, leader.Geometry{SectorSize: 512, AlignSize: leader.MiB, MaxHosts: 2000}, ""},
		{"sector size alone", 4096, "", 0, leader.Geometry{SectorSize: 4096, AlignSize: 8 * leader.MiB, MaxHosts: 2000}, ""},
		{"align alone on 4k device", 0, "1M", 4096, leader.Geometry{SectorSize: 4096, AlignSize: leader.MiB, MaxHosts: 250}, ""},
		{"both", 4096, "2M", 0, leader.Geometry{SectorSize: 4096, AlignSize: 2 * leader.MiB, MaxHosts: 500}, ""},
		{"both 4M", 4096, "4M", 4096, leader.Geometry{SectorSize: 4096, AlignSize: 4 * leader.MiB, MaxHosts: 1000}, ""},
		{"explicit 512/1M", 512, "1M", 0, leader.Geometry{SectorSize: 512, AlignSize: leader.MiB, MaxHosts: 2000}, ""},
		{"align alone on file", 0, "2M", 0, leader.Geometry{}, "add --sector-size 4096"},
		{"align alone on 512 device", 0, "8M", 512, leader.Geometry{}, "the device has 512-byte sectors"},
		{"512 with 2M", 512, "2M", 0, leader.Geometry{}, "invalid sector/align combination"},
		{"mismatch with device", 512, "", 4096, leader.Geometry{}, "does not match the device's 4096-byte"},
		{"bad sector size", 1024, "", 0, leader.Geometry{}, "want 512 or 4096"},
		{"bad align", 4096, "3M", 0, leader.Geometry{}, "bad align size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &geometryFlags{sectorSize: tt.ss, align: tt.align}
			got, err := g.resolve(tt.devSS)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("resolve() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSpecEmptyName(t *testing.T) {
	c := newCommand("x", "", "")
	var errb bytes.Buffer
	e := &env{stdout: &errb, stderr: &errb}
	tests := []struct {
		in       string
		allow    bool
		wantOK   bool
		wantName string
	}{
		{":0:/dev/x:0", true, true, ""},
		{":0:/dev/x:0", false, false, ""},
		{"LS:1:/dev/x:1M", true, true, "LS"},
		{"", true, false, ""},
	}
	for _, tt := range tests {
		sp, ok := c.spec(e, tt.in, tt.allow)
		if ok != tt.wantOK || (ok && sp.Name != tt.wantName) {
			t.Errorf("spec(%q, %v) = %+v, %v; want name %q, ok %v", tt.in, tt.allow, sp, ok, tt.wantName, tt.wantOK)
		}
	}
}

func TestHelpOnEveryVerb(t *testing.T) {
	for _, verb := range []string{"init", "dump", "read", "version"} {
		t.Run(verb, func(t *testing.T) {
			out, errOut, code := runCmd(t, verb, "--help")
			if code != 0 || errOut != "" {
				t.Fatalf("%s --help: exit %d, stderr %q; want 0 and no error", verb, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: sanlock-msg "+verb) {
				t.Errorf("%s --help output starts %q, want a usage line", verb, firstLine(out))
			}
			if verb != "version" && !strings.Contains(out, "-s, --lockspace") {
				t.Errorf("%s --help does not document -s:\n%s", verb, out)
			}
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func TestOpenDeviceErrors(t *testing.T) {
	_, err := openDevice(filepath.Join(t.TempDir(), "missing"), true)
	if !errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "does not support O_DIRECT") {
		t.Errorf("openDevice(missing) = %v, want ErrNotExist without the O_DIRECT hint", err)
	}
	err = directHint(fmt.Errorf("open x: %w", syscall.EINVAL))
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "does not support O_DIRECT") {
		t.Errorf("directHint(EINVAL) = %v, want the O_DIRECT hint wrapping EINVAL", err)
	}
}

// TestHostIDRangeEverywhere: host id 0 and 2001 are the same usage error
// (exit 2, one line, "host id N out of range 1..2000") in every verb that
// takes one, with -s or -i, before anything is opened or dialled.
func TestHostIDRangeEverywhere(t *testing.T) {
	none := filepath.Join(t.TempDir(), "no-daemon")
	img := "/nonexistent/img" // never opened: the usage error comes first
	for _, id := range []string{"0", "2001"} {
		tests := [][]string{
			{"read", "-s", "LS:" + id + ":" + img + ":0"},
			{"add-lockspace", "-s", "LS:" + id + ":" + img + ":0"},
			{"send", "-s", "LS", "-i", id, "-c", "user0"},
			{"send", "-s", "LS", "-i", "2," + id, "-c", "user0"},
			{"reset", "-s", "LS", "-i", id},
		}
		if id != "0" { // where HOST_ID is ignored or means "any", 0 is fine
			tests = append(tests,
				[]string{"dump", "-s", "LS:" + id + ":" + img + ":0"},
				[]string{"init", "-s", "LS:" + id + ":" + img + ":0"},
				[]string{"rem-lockspace", "-s", "LS:" + id + ":" + img + ":0"},
				[]string{"host-status", "-s", "LS:" + id + ":" + img + ":0"},
				[]string{"listen", "-s", "LS:" + id + ":" + img + ":0"},
				[]string{"send", "-s", "LS:" + id + ":" + img + ":0", "-i", "2", "-c", "user0"},
			)
		}
		for _, args := range tests {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				if args[0] != "dump" && args[0] != "read" && args[0] != "init" {
					args = append(args, "--run-dir", none) // the verbs that dial
				}
				out, errOut, code := runCmd(t, args...)
				want := ": host id " + id + " out of range 1..2000 (see 'sanlock-msg " + args[0] + " --help')\n"
				if code != exitUsage || !strings.HasSuffix(errOut, want) || strings.Count(errOut, "\n") != 1 || out != "" {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line ending %q", code, out, errOut, want)
				}
			})
		}
	}
}

// TestBadInputEverywhere: other classes of bad input are usage errors
// that say what is wrong, before anything is opened or dialled.
func TestBadInputEverywhere(t *testing.T) {
	none := filepath.Join(t.TempDir(), "no-daemon")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"send", "-s", "LS", "-i", "2,2", "-c", "user0"}, `-i "2,2": host id 2 given twice`},
		{[]string{"send", "-s", "LS", "-i", "2,x", "-c", "user0"}, `-i: host id "x" is not a number`},
		{[]string{"send", "-s", "LS", "-i", "", "-c", "user0"}, "-i HOST_ID is required"},
		{[]string{"send", "-s", "LS", "-i", "2,3", "-g", "4", "-c", "user0"}, "-g names one target's generation"},
		{[]string{"send", "-s", "LS", "-i", "2", "-c", "user0", "--seq", "0"}, "--seq 0: seqs start at 1"},
		{[]string{"send", "-s", "LS", "-i", "2", "-c", "0"}, "code 0 is not a message"},
		{[]string{"send", "-s", "LS:x", "-i", "2", "-c", "user0"}, "want NAME:HOST_ID:PATH:OFFSET"},
		{[]string{"send", "-s", strings.Repeat("n", 49), "-i", "2", "-c", "user0"}, "name is 49 bytes, at most 48"},
		{[]string{"reset", "-s", "LS"}, "-i HOST_ID is required"},
		{[]string{"listen", "-s", "LS:1:/x"}, "want NAME:HOST_ID:PATH:OFFSET"},
		{[]string{"host-status", "-s", "LS:1:/x:1T"}, "not a byte count"},
		{[]string{"rem-lockspace", "-s", strings.Repeat("n", 49)}, "at most 48"},
		{[]string{"add-lockspace", "-s", "LS:1:/x:0", "-o", "256"}, "io_timeout 256"},
		{[]string{"reset", "-s", "LS", "-i", "2", "--timeout", "-1s"}, "--timeout must not be negative"},
		{[]string{"shutdown", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"send", "-s", "LS", "-i", "2", "-c", "user0", "--timeout", "-1s"}, "--timeout must not be negative"},
		{[]string{"listen", "-s", "LS", "--count", "-1"}, "--count must not be negative"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runCmd(t, append(tt.args, "--run-dir", none)...)
			if code != exitUsage || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", code, out, errOut, tt.want)
			}
		})
	}
}
