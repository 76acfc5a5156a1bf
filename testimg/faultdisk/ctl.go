//go:build linux

package faultdisk

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/delta"
)

// CtlHelp lists the commands of Control and of the ctl file.
const CtlHelp = `commands (one per line; RANGE is OFF+LEN in bytes, default the whole image;
OP is read or write, default both; count N: the next N matching requests, default all):
  hang [OP] [at RANGE]                    block matching requests until release or heal
  eio [OP] [at RANGE] [count N]           fail them with EIO
  delay DURATION [OP] [at RANGE] [count N]  answer them DURATION late (Go syntax: 500ms)
  tear BYTES [hold DURATION] [at RANGE] [count N]
                                          writes: only the first BYTES land and the write fails
                                          with EIO; with hold, the rest lands DURATION later
                                          and the write succeeds
  short BYTES [OP] [at RANGE] [count N]   transfer only the first BYTES
  corrupt BYTE [OP] [at RANGE] [count N]  flip byte BYTE of the data read or written
  release                                 let hung requests proceed (faults stay)
  heal                                    remove every fault, then release
`

// Control runs one command of the control file (see CtlHelp), for
// example "hang write at 512+512", "eio count 3", "delay 300ms",
// "tear 176 at 512+512 count 1" or "heal".
func (d *Disk) Control(cmd string) error {
	f, err := ParseFault(cmd)
	if err != nil {
		return err
	}
	switch strings.TrimSpace(cmd) {
	case "heal":
		d.Heal()
	case "release":
		d.Release()
	case "":
	default:
		d.Inject(f)
		d.mu.Lock()
		d.injected = append(d.injected, strings.TrimSpace(cmd))
		d.mu.Unlock()
	}
	return nil
}

// ParseFault parses a fault command of the control file into a
// delta.Fault. "heal", "release" and an empty line parse to the zero
// Fault.
func ParseFault(cmd string) (delta.Fault, error) {
	var f delta.Fault
	words := strings.Fields(cmd)
	if len(words) == 0 {
		return f, nil
	}
	bad := func(format string, args ...any) (delta.Fault, error) {
		return delta.Fault{}, fmt.Errorf("faultdisk: %q: %s", strings.TrimSpace(cmd), fmt.Sprintf(format, args...))
	}
	kind, args := words[0], words[1:]
	// arg takes the next word as the value of what.
	arg := func(what string) (string, error) {
		if len(args) == 0 {
			return "", fmt.Errorf("faultdisk: %q: %s needs a value", strings.TrimSpace(cmd), what)
		}
		v := args[0]
		args = args[1:]
		return v, nil
	}
	num := func(what string) (int64, error) {
		v, err := arg(what)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(v, 0, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("faultdisk: %q: %s %q: want a number >= 0", strings.TrimSpace(cmd), what, v)
		}
		return n, nil
	}
	dur := func(what string) (time.Duration, error) {
		v, err := arg(what)
		if err != nil {
			return 0, err
		}
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return 0, fmt.Errorf("faultdisk: %q: %s %q: want a positive duration such as 500ms", strings.TrimSpace(cmd), what, v)
		}
		return t, nil
	}
	var err error
	var n int64
	switch kind {
	case "heal", "release":
		if len(args) > 0 {
			return bad("%s takes no arguments", kind)
		}
		return f, nil
	case "hang":
		f.Kind = delta.FaultHang
	case "eio":
		f.Kind = delta.FaultEIO
	case "delay":
		f.Kind = delta.FaultDelay
		if f.Delay, err = dur("delay"); err != nil {
			return delta.Fault{}, err
		}
	case "tear":
		f.Kind, f.Op = delta.FaultTorn, "write"
		if n, err = num("tear"); err != nil {
			return delta.Fault{}, err
		}
		f.Bytes = int(n)
	case "short":
		f.Kind = delta.FaultShort
		if n, err = num("short"); err != nil {
			return delta.Fault{}, err
		}
		f.Bytes = int(n)
	case "corrupt":
		f.Kind = delta.FaultCorrupt
		if n, err = num("corrupt"); err != nil {
			return delta.Fault{}, err
		}
		f.Bytes = int(n)
	default:
		return bad("unknown command %q (reading ctl lists the commands)", kind)
	}
	for len(args) > 0 {
		w := args[0]
		args = args[1:]
		switch w {
		case "read", "write":
			if kind == "tear" && w == "read" {
				return bad("tear applies to writes only")
			}
			f.Op = w
		case "at":
			r, err := arg("at")
			if err != nil {
				return delta.Fault{}, err
			}
			off, length, ok := strings.Cut(r, "+")
			o, err1 := strconv.ParseInt(off, 0, 64)
			l, err2 := strconv.ParseInt(length, 0, 64)
			if !ok || err1 != nil || err2 != nil || o < 0 || l <= 0 {
				return bad("at %q: want OFF+LEN, for example 512+512", r)
			}
			f.Off, f.End = o, o+l
		case "count":
			if kind == "hang" {
				return bad("a hang holds every matching request; count does not apply")
			}
			if n, err = num("count"); err != nil {
				return delta.Fault{}, err
			}
			if n == 0 {
				return bad("count 0: leave count out for every request")
			}
			f.Count = int(n)
		case "hold":
			if kind != "tear" {
				return bad("hold applies to tear only")
			}
			if f.Delay, err = dur("hold"); err != nil {
				return delta.Fault{}, err
			}
		default:
			return bad("unexpected %q (reading ctl lists the commands)", w)
		}
	}
	return f, nil
}

// setCtlErr records the outcome of the last write to the ctl file.
func (d *Disk) setCtlErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ctlErr = err
}

// String describes the disk: what reading the ctl file shows.
func (d *Disk) String() string {
	c := d.Counts()
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "image %s, %d bytes, up %v\n", d.Path, d.Size(), time.Since(d.start).Round(time.Second))
	fmt.Fprintf(&b, "reads %d (%d failed, %d bytes), writes %d (%d failed, %d bytes), hung now %d, abandoned %d\n",
		c.Reads, c.ReadErrs, c.ReadBytes, c.Writes, c.WriteErrs, c.WriteBytes, c.Hung, c.Abandoned)
	if len(d.injected) == 0 {
		b.WriteString("faults injected since the last heal: none\n")
	} else {
		b.WriteString("faults injected since the last heal (count-limited ones may be spent):\n")
		for _, f := range d.injected {
			fmt.Fprintf(&b, "  %s\n", f)
		}
	}
	if d.ctlErr != nil {
		fmt.Fprintf(&b, "last command failed: %v\n", d.ctlErr)
	}
	b.WriteString(CtlHelp)
	return b.String()
}
