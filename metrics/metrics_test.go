package metrics

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.prom from the current output")

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// snapshot is a daemon with a joined lockspace whose name needs escaping,
// and one still joining.
func snapshot() Snapshot {
	return Snapshot{
		Status: &callback.DaemonStatus{
			PID: 42, Version: "1.0", HostName: "host-a",
			Watchdog:    callback.WatchdogStatus{Device: "fake:/tmp/wd", TimeoutSec: 60, Feeding: true},
			Connections: 3, ConnectionsRefused: 12,
			Lockspaces: []callback.LockspaceStatus{
				{Name: "WAIT", HostID: 3, State: callback.StateJoining, IOTimeout: 1,
					Wait: &callback.WaitStatus{Reason: "watching", Until: t0.Add(68 * time.Second), LeftSec: 68}},
				{Name: `L"S\1` + "\n", HostID: 1, Generation: 2, State: callback.StateJoined, Health: "ok", IOTimeout: 10,
					LastRenewal: t0.Add(-time.Second), Expiry: t0.Add(79 * time.Second), Renewals: 100, RenewFails: 1,
					Reads: 500, FullScans: 25, Writes: 110, ReadBytes: 1 << 20, WriteBytes: 512 * 110, IOTimeouts: 1,
					MaxReadSec: 0.25, MaxWriteSec: 0.125, PollSec: 0.25, IOReads: 503, IOWrites: 112, ReadSec: 1.5,
					WriteSec: 0.75, LastReadSec: 0.002, LastWriteSec: 0.001,
					Doorbell: &callback.DoorbellStatus{Index: 0, Polls: 400, Bad: 2, RingsReceived: 9, Gaps: 1, RingsWritten: 8,
						TargetsRung: 8, RingsRefused: 1, TargetedReads: 30, TargetedBytes: 15360, Scans: 1},
					Messages: &callback.MessageStatus{Listeners: 1, Sent: 7, SendOK: 5, SendFailed: 2, Delivered: 9,
						TargetOutcomes: map[string]int64{"acked/delivered": 5, "timeout": 1, "acked/no-listener": 1}}},
			},
		},
		Hosts: map[string][]callback.HostStatus{
			`L"S\1` + "\n": {{HostID: 1, State: "LIVE", Self: true}, {HostID: 2, State: "LIVE"}, {HostID: 7, State: "DEAD"}, {HostID: 9, State: "NEW"}},
		},
	}
}

func TestWrite_golden(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, snapshot()); err != nil {
		t.Fatal(err)
	}
	checkExposition(t, b.String())
	golden := filepath.Join("testdata", "snapshot.prom")
	if *rewrite {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("output differs from %s (go test -rewrite to accept):\n%s", golden, b.String())
	}
}

func TestWrite_noDaemon(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, Snapshot{}); err != nil {
		t.Fatal(err)
	}
	checkExposition(t, b.String())
	want := "# HELP sanlock_msg_up 1 if the daemon answered the status request.\n# TYPE sanlock_msg_up gauge\nsanlock_msg_up 0\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// TestWrite_values checks samples against the status they come from.
func TestWrite_values(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, snapshot()); err != nil {
		t.Fatal(err)
	}
	ls := `{lockspace="L\"S\\1\n"}`
	for _, want := range []string{
		"sanlock_msg_up 1",
		`sanlock_msg_info{host_name="host-a",version="1.0",watchdog="fake:/tmp/wd"} 1`,
		"sanlock_msg_watchdog_feeding 1",
		"sanlock_msg_renewals_total" + ls + " 100",
		"sanlock_msg_renewal_failures_total" + ls + " 1",
		"sanlock_msg_io_read_seconds_total" + ls + " 1.5",
		"sanlock_msg_io_reads_total" + ls + " 503",
		"sanlock_msg_io_read_bytes_total" + ls + " 1.048576e+06",
		"sanlock_msg_lease_expiry_timestamp_seconds" + ls + " 1.796032879e+09",
		`sanlock_msg_lockspace_state{lockspace="WAIT",state="joining"} 1`,
		`sanlock_msg_lockspace_state{lockspace="WAIT",state="joined"} 0`,
		`sanlock_msg_join_wait_seconds{lockspace="WAIT"} 68`,
		`sanlock_msg_renewal_health{health="ok",lockspace="L\"S\\1\n"} 1`,
		`sanlock_msg_message_target_outcomes_total{lockspace="L\"S\\1\n",outcome="acked",status="delivered"} 5`,
		`sanlock_msg_message_target_outcomes_total{lockspace="L\"S\\1\n",outcome="timeout",status=""} 1`,
		`sanlock_msg_hosts{lockspace="L\"S\\1\n",state="LIVE"} 2`,
		`sanlock_msg_hosts{lockspace="L\"S\\1\n",state="DEAD"} 1`,
		`sanlock_msg_hosts{lockspace="L\"S\\1\n",state="FAIL"} 0`,
		`sanlock_msg_hosts{lockspace="L\"S\\1\n",state="NEW"} 1`,
		"sanlock_msg_messages_delivered_total" + ls + " 9",
	} {
		if !strings.Contains(b.String(), "\n"+want+"\n") {
			t.Errorf("missing sample %s", want)
		}
	}
	// A joining lockspace has no counters yet, and no message side.
	if strings.Contains(b.String(), `sanlock_msg_renewals_total{lockspace="WAIT"}`) ||
		strings.Contains(b.String(), `sanlock_msg_listeners{lockspace="WAIT"}`) {
		t.Error("a joining lockspace has counters")
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1.5: "1.5", 1e21: "1e+21", math.Inf(1): "+Inf", math.Inf(-1): "-Inf"} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
	if got := formatValue(math.NaN()); got != "NaN" {
		t.Errorf("formatValue(NaN) = %q", got)
	}
}

// TestCheckExposition makes sure the checker below rejects what it must.
func TestCheckExposition(t *testing.T) {
	ok := "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n"
	if err := exposition(ok); err != nil {
		t.Fatalf("valid input rejected: %v", err)
	}
	for name, in := range map[string]string{
		"no trailing newline": strings.TrimSuffix(ok, "\n"),
		"sample before TYPE":  "a_total 1\n# HELP a_total A.\n# TYPE a_total counter\n",
		"no HELP":             "# TYPE a_total counter\na_total 1\n",
		"counter not _total":  "# HELP a A.\n# TYPE a counter\na 1\n",
		"family twice":        ok + ok,
		"bad name":            "# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n",
		"bad label name":      "# HELP a A.\n# TYPE a gauge\na{__x=\"1\"} 1\n",
		"labels not sorted":   "# HELP a A.\n# TYPE a gauge\na{y=\"1\",x=\"2\"} 1\n",
		"bad escape":          "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n",
		"raw quote in value":  "# HELP a A.\n# TYPE a gauge\na{x=\"a\"b\"} 1\n",
		"bad value":           "# HELP a A.\n# TYPE a gauge\na one\n",
		"duplicate series":    "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
		"samples unsorted":    "# HELP a A.\n# TYPE a gauge\na{x=\"2\"} 1\na{x=\"1\"} 2\n",
		"unknown type":        "# HELP a A.\n# TYPE a number\na 1\n",
		"bad HELP escape":     "# HELP a A\\t.\n# TYPE a gauge\na 1\n",
	} {
		if err := exposition(in); err == nil {
			t.Errorf("%s: accepted:\n%s", name, in)
		}
	}
}

func checkExposition(t *testing.T, s string) {
	t.Helper()
	if err := exposition(s); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
}

var (
	nameRE      = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// exposition checks s against the rules of the text exposition format
// 0.0.4, and the stricter ones this package promises: every family has
// HELP then TYPE before its samples, appears once, counters end in _total,
// a sample's labels are sorted by name, a family's samples by their
// labels, and no series repeats.
func exposition(s string) error {
	if !strings.HasSuffix(s, "\n") {
		return errors.New("output does not end with a newline")
	}
	seen := map[string]bool{}
	var fam, typ string
	var help bool
	var prevLabels string
	series := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		errf := func(format string, args ...any) error {
			return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(format, args...))
		}
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, text, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if !nameRE.MatchString(name) {
				return errf("bad metric name")
			}
			if seen[name] {
				return errf("family %s appears twice", name)
			}
			if err := checkEscapes(text, `\n`); err != nil {
				return errf("%v", err)
			}
			seen[name], fam, typ, help, prevLabels = true, name, "", true, ""
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			if len(f) != 2 || f[0] != fam || !help || typ != "" {
				return errf("TYPE must follow the family's HELP")
			}
			switch f[1] {
			case counter:
				if !strings.HasSuffix(fam, "_total") {
					return errf("counter %s does not end in _total", fam)
				}
			case gauge, "untyped", "summary", "histogram":
			default:
				return errf("unknown type %q", f[1])
			}
			typ = f[1]
		case strings.HasPrefix(line, "#"):
			return errf("unexpected comment")
		default:
			name, rest := line, ""
			if j := strings.IndexAny(line, "{ "); j >= 0 {
				name, rest = line[:j], line[j:]
			}
			if name != fam || typ == "" {
				return errf("sample of %s outside its family (HELP and TYPE first)", name)
			}
			lbls := ""
			if strings.HasPrefix(rest, "{") {
				end, err := parseLabels(rest)
				if err != nil {
					return errf("%v", err)
				}
				lbls, rest = rest[:end], rest[end:]
			}
			v := strings.TrimPrefix(rest, " ")
			if v == rest {
				return errf("no space before the value")
			}
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return errf("bad value %q", v)
			}
			if series[name+lbls] {
				return errf("series repeated")
			}
			series[name+lbls] = true
			if lbls < prevLabels {
				return errf("samples not sorted by labels")
			}
			prevLabels = lbls
		}
	}
	return nil
}

// parseLabels parses `{a="x",b="y"}` at the start of s and returns its
// length; label names must be valid, not reserved, and sorted.
func parseLabels(s string) (int, error) {
	i := 1
	var names []string
	for {
		if i < len(s) && s[i] == '}' {
			break
		}
		j := strings.Index(s[i:], `="`)
		if j < 0 {
			return 0, errors.New("label without value")
		}
		name := s[i : i+j]
		if !labelNameRE.MatchString(name) || strings.HasPrefix(name, "__") {
			return 0, fmt.Errorf("bad label name %q", name)
		}
		names = append(names, name)
		i += j + 2
		var val strings.Builder
		for {
			if i >= len(s) {
				return 0, errors.New("unterminated label value")
			}
			c := s[i]
			if c == '"' {
				i++
				break
			}
			if c == '\\' {
				if i+1 >= len(s) || !strings.ContainsRune(`\"n`, rune(s[i+1])) {
					return 0, errors.New(`bad escape in label value (only \\, \" and \n)`)
				}
				i += 2
				continue
			}
			if c == '\n' {
				return 0, errors.New("raw newline in label value")
			}
			val.WriteByte(c)
			i++
		}
		if i < len(s) && s[i] == ',' {
			i++
		} else if i >= len(s) || s[i] != '}' {
			return 0, errors.New("expected , or } after a label value")
		}
	}
	if !sort.StringsAreSorted(names) {
		return 0, fmt.Errorf("labels %v not sorted", names)
	}
	return i + 1, nil
}

// checkEscapes accepts backslash escapes of a backslash and of the
// characters in allowed only.
func checkEscapes(s, allowed string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if i+1 >= len(s) || (s[i+1] != '\\' && !strings.Contains(allowed, s[i:i+2])) {
			return errors.New("bad escape in HELP (only \\\\ and \\n)")
		}
		i++
	}
	return nil
}
