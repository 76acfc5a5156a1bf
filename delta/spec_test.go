package delta

import (
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

func TestParseSpecStrict(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "LS:1:/x:1KiB", want: Spec{"LS", 1, "/x", 1 << 10}},
		{in: "LS:1:/x: 2mb ", want: Spec{"LS", 1, "/x", 2 << 20}},
		{in: "LS:1:/x:3G", want: Spec{"LS", 1, "/x", 3 << 30}},
		{in: "LS:1:/x:512b", want: Spec{"LS", 1, "/x", 512}},
		{in: "LS:007:/x:0", want: Spec{"LS", 7, "/x", 0}},
		{in: "L\x00S:1:/x:0", err: "NUL"},
		{in: "LS:1:/x\x00y:0", err: "NUL"},
		{in: "LS:1:/x:1I", err: "not a byte count"},
		{in: "LS:1:/x:1IB", err: "not a byte count"},
		{in: "LS:1:/x:K", err: "not a byte count"},
		{in: "LS:1:/x:1T", err: "not a byte count"},
		{in: "LS:1:/x:+1", err: "not a byte count"},
		{in: "LS:1:/x:4611686018427387905", err: "at most 2^62"},
		{in: "LS:1:/x:4294967297G", err: "at most 2^62"},
		{in: "LS:1:/x:4294967296G", want: Spec{"LS", 1, "/x", 1 << 62}},
		{in: "LS:+1:/x:0", err: "not a number"},
		{in: "LS:-1:/x:0", err: "not a number"},
		{in: "LS:18446744073709551616:/x:0", err: "not a number"},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseSpec(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
		}
	}
}

// FuzzParseSpec: whatever the input, ParseSpec does not panic, and what it
// accepts is a spec every later step can use: a valid name, a path
// without NUL, an offset in 0..2^62, and a String form that parses back
// to the same spec.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"LS:1:/dev/sdb:0", "LS:0:/tmp/a:b:1M", "LS:2000:/x:8MiB", ":1:/x:0", "LS:1::0",
		"LS:1:/x:-5", "LS:1:/x", "a:b:c:d:e", "LS:1:/x: 1 k", "L\x00S:1:/x:0", "LS:99999999999999999999:/x:0",
		strings.Repeat("n", 48) + ":1:/x:0", strings.Repeat("n", 49) + ":1:/x:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			if sp != (Spec{}) {
				t.Fatalf("ParseSpec(%q) = %+v with error %v, want a zero Spec", s, sp, err)
			}
			if !strings.HasPrefix(err.Error(), "delta: bad lockspace ") {
				t.Fatalf("ParseSpec(%q) error %q lacks the prefix", s, err)
			}
			return
		}
		if err := CheckName(sp.Name); err != nil {
			t.Fatalf("ParseSpec(%q) accepted name %q: %v", s, sp.Name, err)
		}
		var field [leader.NameLen]byte
		if err := leader.SetName(&field, sp.Name, leader.MaxSpaceName); err != nil {
			t.Fatalf("ParseSpec(%q) accepted name %q that cannot go on disk: %v", s, sp.Name, err)
		}
		if sp.Path == "" || strings.IndexByte(sp.Path, 0) >= 0 {
			t.Fatalf("ParseSpec(%q) accepted path %q", s, sp.Path)
		}
		if sp.Offset < 0 || sp.Offset > 1<<62 {
			t.Fatalf("ParseSpec(%q) accepted offset %d", s, sp.Offset)
		}
		back, err := ParseSpec(sp.String())
		if err != nil || back != sp {
			t.Fatalf("ParseSpec(%q) = %+v; its String %q parses as %+v, %v", s, sp, sp.String(), back, err)
		}
	})
}
