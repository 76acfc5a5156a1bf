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
// (everything between the second and the last colon). The name must be a
// valid lockspace name (CheckName); HOST_ID is a decimal number (its
// range depends on the lockspace: callers check it); OFFSET is a byte
// count (ParseSize).
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
	if err := CheckName(sp.Name); err != nil {
		return bad(err.Error())
	}
	switch {
	case sp.Path == "":
		return bad("empty path")
	case strings.IndexByte(sp.Path, 0) >= 0:
		return bad("the path contains a NUL byte")
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

// CheckName reports whether name can be a lockspace name: 1..48 bytes
// (sanlock's space name field), no NUL (the field is NUL-padded, so a NUL
// would cut the name short on disk) and no colon (the separator of
// NAME:HOST_ID:PATH:OFFSET).
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case len(name) > leader.MaxSpaceName:
		return fmt.Errorf("name is %d bytes, at most %d", len(name), leader.MaxSpaceName)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("the name contains a NUL byte")
	case strings.IndexByte(name, ':') >= 0:
		return fmt.Errorf("the name contains a colon")
	}
	return nil
}

// sizeUnits are ParseSize's suffixes, in lower case: powers of 1024.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
}

// ParseSize parses a byte count: decimal digits, then optionally K, M or G
// (powers of 1024; KB, KiB and the like too, in any case). The result is
// at most 2^62.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	digits := len(t) - len(strings.TrimLeft(t, "0123456789"))
	mult, ok := sizeUnits[strings.ToLower(t[digits:])]
	if digits == 0 || !ok {
		return 0, fmt.Errorf("offset %q is not a byte count", s)
	}
	n, err := strconv.ParseInt(t[:digits], 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("offset %q is not a byte count (at most 2^62)", s)
	}
	return n * mult, nil
}

// String formats the spec as NAME:HOST_ID:PATH:OFFSET.
func (s Spec) String() string {
	return fmt.Sprintf("%s:%d:%s:%d", s.Name, s.HostID, s.Path, s.Offset)
}
