package interop_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/testimg"
)

const mib = 1 << 20

// initCase is one `sanlock direct init` invocation and its sanlock-msg
// equivalent.
type initCase struct {
	sanlockArgs []string // -Z/-A, or none for the device's defaults
	ourArgs     []string // --sector-size/--align, or none
	align       int64
	off         int64
}

func (c initCase) String() string {
	geo := "default"
	if len(c.sanlockArgs) > 0 {
		geo = strings.Join(c.sanlockArgs, " ")
	}
	return fmt.Sprintf("%s at %d", geo, c.off)
}

// compareInit runs `sanlock direct init` on devA and `sanlock-msg init` on
// devB with the same parameters and compares both whole devices byte for
// byte (the area and everything around it). ioTimeout 0 leaves -o out.
func compareInit(t *testing.T, c initCase, ioTimeout int, devA, devB string, size int64) {
	t.Helper()
	testimg.SanlockInit(t, "LSI", devA, c.off, ioTimeout, c.sanlockArgs...)
	args := []string{"init", "-s", spec("LSI", 0, devB, c.off)}
	if ioTimeout != 0 {
		args = append(args, "-o", fmt.Sprint(ioTimeout))
	}
	slm(t, append(args, c.ourArgs...)...)
	a := testimg.ReadArea(t, devA, 0, int(size))
	b := testimg.ReadArea(t, devB, 0, int(size))
	if i := testimg.FirstDiff(b, a); i >= 0 {
		t.Fatalf("sanlock-msg init differs from sanlock direct init at byte %d (area byte %d): %#x, sanlock %#x",
			i, int64(i)-c.off, b[i], a[i])
	}
	if strings.Trim(string(a[c.off:c.off+512]), "\x00") == "" {
		t.Fatal("sanlock wrote nothing: the comparison proves nothing")
	}
}

// TestInitMatchesSanlock512 compares init with sanlock's on regular files
// (512-byte sectors, align 1M).
func TestInitMatchesSanlock512(t *testing.T) {
	testimg.RequireSanlock(t)
	cases := []initCase{
		{nil, nil, mib, 0},
		{nil, nil, mib, mib},
		{[]string{"-Z", "512", "-A", "1M"}, []string{"--sector-size", "512", "--align", "1M"}, mib, 0},
		{[]string{"-Z", "512", "-A", "1M"}, []string{"-Z", "512", "-A", "1M"}, mib, 2 * mib},
	}
	for _, c := range cases {
		for _, io := range []int{1, 0} {
			t.Run(fmt.Sprintf("%v io %d", c, io), func(t *testing.T) {
				size := c.off + c.align + mib
				compareInit(t, c, io, testimg.File(t, size), testimg.File(t, size), size)
			})
		}
	}
}

// TestInitMatchesSanlock4K compares init with sanlock's on loop devices
// with 4096-byte logical sectors, for every align size.
func TestInitMatchesSanlock4K(t *testing.T) {
	testimg.RequireSanlock(t)
	z := func(a string) []string { return []string{"-Z", "4096", "-A", a} }
	cases := []initCase{
		{z("1M"), []string{"--sector-size", "4096", "--align", "1M"}, mib, 0},
		{z("1M"), []string{"--align", "1M"}, mib, mib},
		{z("8M"), []string{"--sector-size", "4096", "--align", "8M"}, 8 * mib, 0},
		{z("8M"), []string{"-Z", "4096", "-A", "8M"}, 8 * mib, 8 * mib},
		{nil, nil, 8 * mib, 0},
		{z("2M"), []string{"-A", "2M"}, 2 * mib, 2 * mib},
		{z("4M"), []string{"-A", "4M"}, 4 * mib, 0},
	}
	for _, c := range cases {
		for _, io := range []int{1, 0} {
			t.Run(fmt.Sprintf("%v io %d", c, io), func(t *testing.T) {
				size := c.off + c.align + mib
				devA := testimg.Loop(t, testimg.File(t, size), 4096)
				devB := testimg.Loop(t, testimg.File(t, size), 4096)
				compareInit(t, c, io, devA, devB, size)
			})
		}
	}
}

// TestSanlockReadsOurInit checks that sanlock's own readers accept an area
// sanlock-msg initialised: read_leader decodes host 1 and the last host,
// and dump lists nothing (no host has joined yet).
func TestSanlockReadsOurInit(t *testing.T) {
	testimg.RequireSanlock(t)
	for _, tt := range []struct {
		name     string
		ss       int
		args     []string
		flags    string
		maxHosts int
	}{
		{"512", 512, nil, "0x10", 2000},
		{"4096 1M", 4096, []string{"-A", "1M"}, "0x10", 250},
		{"4096 8M", 4096, nil, "0x80", 2000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := testimg.File(t, 9*mib)
			if tt.ss == 4096 {
				path = testimg.Loop(t, path, 4096)
			}
			const off = mib
			slm(t, append([]string{"init", "-o", "1", "-s", spec("OURS", 0, path, off)}, tt.args...)...)
			for _, id := range []int{1, tt.maxHosts} {
				f := readLeader(t, spec("OURS", id, path, off))
				want := map[string]string{
					"magic": "0x12212010", "version": "0x30004", "flags": tt.flags, "sector_size": fmt.Sprint(tt.ss),
					"max_hosts": "1", "owner_id": "0", "space_name": "OURS", "timestamp": "0", "io_timeout": "1",
				}
				for k, v := range want {
					if f[k] != v {
						t.Errorf("host %d: read_leader %s = %q, want %q", id, k, f[k], v)
					}
				}
			}
			out, err := testimg.Direct("dump", fmt.Sprintf("%s:%d", path, off))
			if err != nil {
				t.Fatalf("sanlock direct dump: %v: %s", err, out)
			}
			if rows := parseSanlockDump(t, out); len(rows) != 0 {
				t.Errorf("sanlock direct dump lists %d hosts on a fresh area, want none: %+v", len(rows), rows)
			}
		})
	}
}
