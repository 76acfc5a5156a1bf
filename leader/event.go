package leader

import (
	"fmt"
	"strconv"
	"strings"
)

// Host event codes: the 64-bit bitfield written to write_generation
// (sanlock-format.md §6.5 and design.md). Codes combine.
const (
	// EventReset asks the target to reset itself through its watchdog
	// (sanlk-reset's RESET, our WD_RESET).
	EventReset uint64 = 0x1
	// EventResetting is the reply of a host that is resetting.
	EventResetting uint64 = 0x2
	// EventReboot asks for a sysrq reboot (sanlk-reset's REBOOT).
	EventReboot uint64 = 0x4
	// EventRebooting is the reply of a host that is rebooting.
	EventRebooting uint64 = 0x8
	// EventUser0 is the first of 16 application codes (bits 16..31).
	EventUser0 uint64 = 1 << 16
	// EventSeqData marks a fire-and-forget message: receivers deliver it but
	// do not ack it, and the sender keeps it on disk until every target has
	// renewed twice.
	EventSeqData uint64 = 1 << 32
)

var codeNames = []struct {
	name string
	code uint64
}{
	{"reset", EventReset},
	{"resetting", EventResetting},
	{"reboot", EventReboot},
	{"rebooting", EventRebooting},
	{"seq-data", EventSeqData},
}

// ParseCodes parses a comma-separated list of codes, each a number (decimal,
// 0x hex, 0o octal, 0b binary) or a name: reset, resetting, reboot,
// rebooting, seq-data, user0..user15. The result is their bitwise OR and
// must not be zero.
func ParseCodes(s string) (uint64, error) {
	var code uint64
	if strings.TrimSpace(s) == "" {
		return 0, fmt.Errorf("leader: empty code")
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		c, err := parseCode(f)
		if err != nil {
			return 0, err
		}
		code |= c
	}
	if code == 0 {
		return 0, fmt.Errorf("leader: code 0 is not a message (a set bit with code 0 is a sanlock resource request)")
	}
	return code, nil
}

func parseCode(f string) (uint64, error) {
	for _, n := range codeNames {
		if f == n.name {
			return n.code, nil
		}
	}
	if rest, ok := strings.CutPrefix(f, "user"); ok {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || n > 15 {
			return 0, fmt.Errorf("leader: unknown code %q (user codes are user0..user15)", f)
		}
		return EventUser0 << n, nil
	}
	if v, err := strconv.ParseUint(f, 0, 64); err == nil {
		return v, nil
	}
	return 0, fmt.Errorf("leader: unknown code %q (want a number or one of reset, resetting, reboot, rebooting, seq-data, user0..user15)", f)
}

// CodeNames names every bit set in code: known names, userN, or "0x…" for
// other bits, in bit order.
func CodeNames(code uint64) []string {
	names := []string{}
	for bit := 0; bit < 64; bit++ {
		c := uint64(1) << bit
		if code&c == 0 {
			continue
		}
		names = append(names, CodeName(c))
	}
	return names
}

// CodeName names a single code bit.
func CodeName(c uint64) string {
	for _, n := range codeNames {
		if c == n.code {
			return n.name
		}
	}
	if c >= EventUser0 && c <= EventUser0<<15 && c&(c-1) == 0 {
		for i := 0; i < 16; i++ {
			if c == EventUser0<<i {
				return fmt.Sprintf("user%d", i)
			}
		}
	}
	return fmt.Sprintf("0x%x", c)
}
