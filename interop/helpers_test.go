package interop_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// slm runs the sanlock-msg binary and returns its stdout; a non-zero exit
// fails the test with stderr.
func slm(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(testimg.Binary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("sanlock-msg %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// writeFile writes data into a new O_DIRECT-capable file and returns its
// path.
func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := testimg.File(t, int64(len(data)))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sanlockRow is one row of `sanlock direct dump`.
type sanlockRow struct {
	Offset              int64
	Lockspace, Resource string
	Timestamp, Own, Gen uint64
}

// parseSanlockDump parses `sanlock direct dump` output. Its rows are
// printf("%08llu %36s %48s %010llu %04llu %04llu"), so the columns are
// fixed: names may be empty and cannot be split on spaces.
func parseSanlockDump(t *testing.T, out string) []sanlockRow {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "  offset") {
		t.Fatalf("sanlock direct dump: no header line:\n%s", out)
	}
	rows := []sanlockRow{}
	for _, l := range lines[1:] {
		if len(l) < 115 {
			t.Fatalf("sanlock direct dump: short row %q", l)
		}
		num := func(s string) uint64 {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				t.Fatalf("sanlock direct dump: row %q: %v", l, err)
			}
			return n
		}
		rows = append(rows, sanlockRow{
			Offset:    int64(num(l[0:8])),
			Lockspace: strings.TrimSpace(l[9:45]),
			Resource:  strings.TrimSpace(l[46:94]),
			Timestamp: num(l[95:105]),
			Own:       num(l[106:110]),
			Gen:       num(l[111:115]),
		})
	}
	return rows
}

// readLeader runs `sanlock direct read_leader` and returns its fields.
func readLeader(t *testing.T, spec string) map[string]string {
	t.Helper()
	out, err := testimg.Direct("read_leader", "-s", spec)
	if err != nil || !strings.Contains(out, "read_leader done 0") {
		t.Fatalf("sanlock direct read_leader -s %s: %v:\n%s", spec, err, out)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(out, "\n")[1:] {
		k, v, _ := strings.Cut(l, " ")
		if k != "" {
			fields[k] = v
		}
	}
	return fields
}

func spec(name string, id int, path string, off int64) string {
	return fmt.Sprintf("%s:%d:%s:%d", name, id, path, off)
}
