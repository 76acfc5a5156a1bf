package delta

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Spec names a lockspace and, optionally, a host id in it, in sanlock's
// NAME:HOST_ID:PATH:OFFSET syntax.
type Spec struct {
	Name   string
	HostID uint64
	Path   string
	Offset int64
}

// ParseSpec parses NAME:HOST_ID:PATH:OFFSET. The path may contain colons
// (everything between the second and the last colon). The name must be 1..48
// bytes. OFFSET is a byte count (a K/M/G suffix multiplies by 1024s).
func ParseSpec(s string) (Spec, error) {
	bad := func(why string) (Spec, error) {
		return Spec{}, fmt.Errorf("delta: bad lockspace %q: %s (want NAME:HOST_ID:PATH:OFFSET)", s, why)
	}
	first := strings.Index(s, ":")
	if first < 0 {
		return bad("no colons")
	}
	rest := s[first+1:]
	second := strings.Index(rest, ":")
	last := strings.LastIndex(rest, ":")
	if second < 0 || last == second {
		return bad("need four fields")
	}
	sp := Spec{Name: s[:first], Path: rest[second+1 : last]}
	if sp.Name == "" {
		return bad("empty name")
	}
	if len(sp.Name) > leader.MaxSpaceName {
		return bad(fmt.Sprintf("name is %d bytes, at most %d", len(sp.Name), leader.MaxSpaceName))
	}
	if sp.Path == "" {
		return bad("empty path")
	}
	id, err := strconv.ParseUint(rest[:second], 10, 64)
	if err != nil {
		return bad(fmt.Sprintf("host id %q is not a number", rest[:second]))
	}
	sp.HostID = id
	off, err := ParseSize(rest[last+1:])
	if err != nil {
		return bad(err.Error())
	}
	sp.Offset = off
	return sp, nil
}

// ParseSize parses a byte count with an optional K, M or G suffix (powers of
// 1024; "KiB" style accepted too).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("offset %q is not a byte count", s)
	}
	return n * mult, nil
}

// String formats the spec as NAME:HOST_ID:PATH:OFFSET.
func (s Spec) String() string {
	return fmt.Sprintf("%s:%d:%s:%d", s.Name, s.HostID, s.Path, s.Offset)
}
