package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// FuzzFlagHelpers: the -s and -i helpers never panic, and each either
// accepts a value every later step can use, printing nothing, or prints
// exactly one usage line.
func FuzzFlagHelpers(f *testing.F) {
	for _, s := range []string{
		"LS:1:/dev/sdb:0", ":0:/dev/x:1M", "LS:2001:/x:0", "LS:0:/x:0", "LS", "LS:", "LS:x", "n\x00:1:/x:0",
		"2", "2,3,7", "2,2", " 2 , 3", "2,\n2", "0", "2001", "x", "", ",", strings.Repeat("n", 49),
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allowEmptyName bool) {
		c := newCommand("x", "", "")
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb}
		// check verifies the output of one helper call and resets it.
		check := func(call string, ok bool) {
			t.Helper()
			defer out.Reset()
			defer errb.Reset()
			if out.Len() != 0 {
				t.Fatalf("%s(%q) wrote %q to stdout", call, s, out.String())
			}
			msg := errb.String()
			switch {
			case ok && msg != "":
				t.Fatalf("%s(%q) accepted it but printed %q", call, s, msg)
			case !ok && (!strings.HasPrefix(msg, "sanlock-msg x: ") || !strings.HasSuffix(msg, " (see 'sanlock-msg x --help')\n") ||
				strings.Count(msg, "\n") != 1):
				t.Fatalf("%s(%q) refused it with %q, want one usage line", call, s, msg)
			}
		}

		sp, ok := c.spec(e, s, allowEmptyName)
		check("spec", ok)
		if ok {
			if sp.Name != "" || !allowEmptyName {
				if err := delta.CheckName(sp.Name); err != nil {
					t.Fatalf("spec(%q) accepted name %q: %v", s, sp.Name, err)
				}
			}
			if sp.HostID > leader.MaxHostID || sp.Path == "" || strings.IndexByte(sp.Path, 0) >= 0 || sp.Offset < 0 {
				t.Fatalf("spec(%q) accepted %+v", s, sp)
			}
			back := sp.String()
			if sp.Name == "" {
				back = "_" + back
			}
			if b, err := delta.ParseSpec(back); err != nil || b.HostID != sp.HostID || b.Path != sp.Path || b.Offset != sp.Offset {
				t.Fatalf("spec(%q) = %+v, which does not parse back: %+v, %v", s, sp, b, err)
			}
		}

		hsp, hok := c.hostSpec(e, s, allowEmptyName)
		check("hostSpec", hok)
		if hok != (ok && sp.HostID != 0) || (hok && hsp != sp) {
			t.Fatalf("hostSpec(%q) = %+v, %v; spec gave %+v, %v", s, hsp, hok, sp, ok)
		}

		name, nok := c.lockspaceName(e, s)
		check("lockspaceName", nok)
		if nok {
			if err := delta.CheckName(name); err != nil {
				t.Fatalf("lockspaceName(%q) accepted %q: %v", s, name, err)
			}
			if !strings.Contains(s, ":") && name != s {
				t.Fatalf("lockspaceName(%q) = %q", s, name)
			}
		}
		if strings.Contains(s, ":") {
			full, fok := c.spec(e, s, false)
			check("spec", fok)
			if nok != fok || (nok && name != full.Name) {
				t.Fatalf("lockspaceName(%q) = %q, %v; spec gave %+v, %v", s, name, nok, full, fok)
			}
		}

		ids, err := parseHostIDs(s)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || msg == "" {
				t.Fatalf("parseHostIDs(%q): error %q, want one line", s, msg)
			}
			return
		}
		if len(ids) == 0 {
			t.Fatalf("parseHostIDs(%q) = no ids and no error", s)
		}
		seen := map[uint64]bool{}
		for _, id := range ids {
			if id < 1 || id > leader.MaxHostID || seen[id] {
				t.Fatalf("parseHostIDs(%q) = %v", s, ids)
			}
			seen[id] = true
		}
		var parts []string
		for _, id := range ids {
			parts = append(parts, fmt.Sprint(id))
		}
		if back, err := parseHostIDs(strings.Join(parts, ",")); err != nil || !slices.Equal(back, ids) {
			t.Fatalf("parseHostIDs(%q) = %v, which does not parse back: %v, %v", s, ids, back, err)
		}
	})
}
