package watchdog

import (
	"fmt"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
)

// OpenSpec opens the watchdog named by spec, the value of a --watchdog flag:
//
//	none        None: no watchdog, no fencing
//	fake:FILE   a Fake writing its events to FILE, on clk
//	fake-broken:FILE
//	            a Fake that never resets anything when it fires (it
//	            writes "broken-fire"): a watchdog that failed, to test
//	            that a fencer notices
//	PATH        a device, with Open (for example /dev/watchdog0)
//
// timeout is the fire timeout (DefaultTimeout if <= 0). A nil clk means
// clock.Real; only the Fake uses it.
func OpenSpec(spec string, timeout time.Duration, clk clock.Clock) (Device, error) {
	switch {
	case spec == "":
		return nil, fmt.Errorf("watchdog: empty watchdog spec; want none, fake:FILE or a device path such as /dev/watchdog0")
	case spec == "none":
		return None{}, nil
	case strings.HasPrefix(spec, "fake:"), strings.HasPrefix(spec, "fake-broken:"):
		kind, file, _ := strings.Cut(spec, ":")
		if file == "" {
			return nil, fmt.Errorf("watchdog: watchdog spec %q has no file name; want %s:FILE", spec, kind)
		}
		f, err := OpenFake(file, timeout, clk)
		if err != nil {
			return nil, err
		}
		f.Broken = kind == "fake-broken"
		return f, nil
	}
	h, err := Open(spec, timeout)
	if err != nil {
		return nil, err
	}
	return h, nil
}
