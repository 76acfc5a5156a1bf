package testimg_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/testimg"
)

func TestFile(t *testing.T) {
	const size = 3 << 20
	path := testimg.File(t, size)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Errorf("size %d, want %d", st.Size(), size)
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks*512 >= size {
		t.Errorf("%d bytes allocated: the file is not sparse", blocks*512)
	}
	if b := testimg.ReadArea(t, path, 1<<20, 4096); len(b) != 4096 || strings.Trim(string(b), "\x00") != "" {
		t.Errorf("ReadArea of a new file: %d bytes, not all zero", len(b))
	}
}

func TestLoop(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		var dev, path string
		t.Run(fmt.Sprint(ss), func(t *testing.T) {
			path = testimg.File(t, 8<<20)
			dev = testimg.Loop(t, path, ss)
			out, err := exec.Command("blockdev", "--getss", dev).Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(out)); got != fmt.Sprint(ss) {
				t.Errorf("blockdev --getss %s = %s, want %d", dev, got, ss)
			}
		})
		if dev == "" {
			continue
		}
		// The subtest's cleanup has run: the device must be detached.
		if out, _ := exec.Command("losetup", "-j", path).Output(); strings.Contains(string(out), dev+":") {
			t.Errorf("%s still attached after cleanup: %s", dev, out)
		}
	}
}

func TestSanlockDaemon(t *testing.T) {
	s := testimg.StartSanlock(t, "testimg-host")
	out, err := s.Client("status")
	if err != nil || !strings.Contains(out, "daemon testimg-host") {
		t.Fatalf("client status: %v: %q, want the daemon's host name", err, out)
	}
	out, err = s.Python("import sanlock; print(sanlock.get_lockspaces())")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("python get_lockspaces: %v: %q, want []", err, out)
	}
	if !s.Alive() {
		t.Error("daemon not alive")
	}
}

func TestSanlockInitAndDirect(t *testing.T) {
	testimg.RequireSanlock(t)
	path := testimg.File(t, 2<<20)
	testimg.SanlockInit(t, "TI", path, 1<<20, 1)
	out, err := testimg.Direct("read_leader", "-s", fmt.Sprintf("TI:1:%s:%d", path, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"space_name TI", "io_timeout 1", "sector_size 512"} {
		if !strings.Contains(out, want) {
			t.Errorf("read_leader output lacks %q:\n%s", want, out)
		}
	}
	if _, err := testimg.Direct("read_leader", "-s", "TI:1:"+path+".missing:0"); err == nil {
		t.Error("Direct on a missing path: no error")
	}
}

func TestBinary(t *testing.T) {
	bin := testimg.Binary(t)
	if again := testimg.Binary(t); again != bin {
		t.Errorf("second Binary() = %s, want the same %s", again, bin)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sanlock-msg ") {
		t.Errorf("%s version: %v: %q", bin, err, out)
	}
}

func TestFirstDiff(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", -1},
		{"abc", "abc", -1},
		{"abc", "abd", 2},
		{"xbc", "abc", 0},
		{"ab", "abc", 2},
		{"abc", "a", 1},
	}
	for _, tt := range tests {
		if got := testimg.FirstDiff([]byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("FirstDiff(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
