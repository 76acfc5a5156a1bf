package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Exit statuses shared by every verb.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed
	exitUsage = 2 // bad command line; nothing was done
)

// command is a verb's flag set with its usage text.
type command struct {
	name     string // verb name
	synopsis string // arguments after the verb, for the usage line
	about    string // what the verb does; printed by --help
	fs       *pflag.FlagSet
}

// newCommand returns a command whose flag set never prints by itself: parse
// prints --help to stdout and errors as one line to stderr.
func newCommand(name, synopsis, about string) *command {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {}
	fs.SetOutput(discard{})
	return &command{name: name, synopsis: synopsis, about: about, fs: fs}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// parse parses args. It returns done=true with the exit status when the verb
// must stop: after --help (status 0) or on a usage error (status 2). Verbs
// take no positional arguments.
func (c *command) parse(e *env, args []string) (done bool, status int) {
	err := c.fs.Parse(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		c.usage(e)
		return true, exitOK
	case err != nil:
		return true, c.usageError(e, err.Error())
	case c.fs.NArg() > 0:
		return true, c.usageError(e, fmt.Sprintf("unexpected argument %q", c.fs.Arg(0)))
	}
	return false, exitOK
}

// usage prints the verb's help to stdout.
func (c *command) usage(e *env) {
	fmt.Fprintf(e.stdout, "usage: sanlock-msg %s %s\n\n%s\n\nOptions:\n%s", c.name, c.synopsis,
		strings.TrimSpace(c.about), c.fs.FlagUsagesWrapped(100))
}

// usageError prints a one-line usage error and returns the usage status.
func (c *command) usageError(e *env, msg string) int {
	fmt.Fprintf(e.stderr, "sanlock-msg %s: %s (see 'sanlock-msg %s --help')\n", c.name, msg, c.name)
	return exitUsage
}

// specFlag adds the sanlock-style -s NAME:HOST_ID:PATH:OFFSET flag.
func (c *command) specFlag(help string) *string {
	return c.fs.StringP("lockspace", "s", "", help)
}

// spec parses the -s value NAME:HOST_ID:PATH:OFFSET. An empty NAME
// (":0:PATH:OFFSET") is allowed only when allowEmptyName is set; it then
// means "whatever lockspace is there". HOST_ID may be 0 (verbs that need
// a host id use hostSpec) but never more than leader.MaxHostID.
func (c *command) spec(e *env, s string, allowEmptyName bool) (delta.Spec, bool) {
	if s == "" {
		c.usageError(e, "-s NAME:HOST_ID:PATH:OFFSET is required")
		return delta.Spec{}, false
	}
	var sp delta.Spec
	var err error
	if allowEmptyName && strings.HasPrefix(s, ":") {
		// ParseSpec insists on a name; parse with a placeholder and drop it.
		sp, err = delta.ParseSpec("_" + s)
		sp.Name = ""
	} else {
		sp, err = delta.ParseSpec(s)
	}
	if err != nil {
		c.usageError(e, err.Error())
		return delta.Spec{}, false
	}
	if sp.HostID > leader.MaxHostID {
		c.usageError(e, hostIDRange("-s", sp.HostID, leader.MaxHostID, ""))
		return delta.Spec{}, false
	}
	return sp, true
}

// hostSpec is spec for the verbs that name one host with -s: HOST_ID
// must be 1..leader.MaxHostID.
func (c *command) hostSpec(e *env, s string, allowEmptyName bool) (delta.Spec, bool) {
	sp, ok := c.spec(e, s, allowEmptyName)
	if ok && sp.HostID == 0 {
		c.usageError(e, hostIDRange("-s", 0, leader.MaxHostID, ""))
		return delta.Spec{}, false
	}
	return sp, ok
}

// hostIDRange is the one usage error for a host id out of range, given
// with flag (-s or -i): 0 and 2001 read the same everywhere. lockspace,
// if not empty, names the lockspace whose max_hosts is maxHosts.
func hostIDRange(flag string, id uint64, maxHosts int, lockspace string) string {
	msg := fmt.Sprintf("%s: host id %d out of range 1..%d", flag, id, maxHosts)
	if lockspace != "" {
		msg += fmt.Sprintf(" (max_hosts of lockspace %s)", lockspace)
	}
	return msg
}

// lockspaceName returns the NAME of a -s value given as NAME or
// NAME:HOST_ID:PATH:OFFSET (verbs that talk to the daemon need only the
// name; the rest must still be valid), or prints a usage error.
func (c *command) lockspaceName(e *env, s string) (string, bool) {
	switch {
	case s == "":
		c.usageError(e, "-s NAME is required")
		return "", false
	case strings.Contains(s, ":"):
		sp, ok := c.spec(e, s, false)
		return sp.Name, ok
	}
	if err := delta.CheckName(s); err != nil {
		c.usageError(e, fmt.Sprintf("-s %q: %v", s, err))
		return "", false
	}
	return s, true
}

// parseHostIDs parses -i: "2" or "2,3,7", each 1..leader.MaxHostID, none
// twice. Its errors are usage errors.
func parseHostIDs(s string) ([]uint64, error) {
	if s == "" {
		return nil, errors.New("-i HOST_ID is required")
	}
	var ids []uint64
	for _, f := range strings.Split(s, ",") {
		id, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("-i: host id %q is not a number", f)
		}
		if id == 0 || id > leader.MaxHostID {
			return nil, errors.New(hostIDRange("-i", id, leader.MaxHostID, ""))
		}
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("-i %q: host id %d given twice", s, id)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// geometryFlags are --sector-size (-Z) and --align (-A), named after
// sanlock's -Z and -A.
type geometryFlags struct {
	sectorSize int
	align      string
}

func (c *command) geometryFlags(what string) *geometryFlags {
	g := &geometryFlags{}
	c.fs.IntVarP(&g.sectorSize, "sector-size", "Z", 0,
		"sector size in bytes, 512 or 4096 (default: the device's logical sector size; 512 for a regular file)"+what)
	c.fs.StringVarP(&g.align, "align", "A", "",
		"align size, the area's length: 1M, 2M, 4M or 8M (default: 1M for 512-byte sectors, 8M for 4096)"+what)
	return g
}

// set reports whether either flag was given.
func (g *geometryFlags) set() bool { return g.sectorSize != 0 || g.align != "" }

// resolve picks the geometry as `sanlock direct init` does, with friendlier
// rules for partial flags:
//
//   - neither flag: the device's sector size (devSS; 0 for a regular file
//     means 512) and sanlock's default align for it;
//   - --sector-size alone: that size and its default align (sanlock rejects
//     -Z without -A);
//   - --align alone: the device's sector size (sanlock rejects -A without -Z);
//   - both: exactly sanlock's -Z S -A A.
//
// The pair must be one sanlock accepts (512/1M, 4096/1M, 2M, 4M, 8M).
func (g *geometryFlags) resolve(devSS int) (leader.Geometry, error) {
	ss := g.sectorSize
	if ss == 0 {
		ss = devSS
		if ss == 0 {
			ss = 512
		}
	}
	if ss != 512 && ss != 4096 {
		return leader.Geometry{}, fmt.Errorf("sector size %d: want 512 or 4096", ss)
	}
	if devSS != 0 && ss != devSS {
		return leader.Geometry{}, fmt.Errorf("--sector-size %d does not match the device's %d-byte logical sectors", ss, devSS)
	}
	if g.align == "" {
		return leader.DefaultGeometry(ss)
	}
	align, err := leader.ParseAlign(g.align)
	if err != nil {
		return leader.Geometry{}, err
	}
	geo, err := leader.NewGeometry(ss, align)
	if err != nil && g.sectorSize == 0 {
		if devSS == 0 {
			return leader.Geometry{}, fmt.Errorf("--align %s needs 4096-byte sectors; a regular file defaults to 512 (add --sector-size 4096)", g.align)
		}
		return leader.Geometry{}, fmt.Errorf("--align %s needs 4096-byte sectors; the device has %d-byte sectors", g.align, devSS)
	}
	return geo, err
}

// openDevice opens path for lockspace I/O with O_DIRECT, adding a hint when
// the filesystem refuses O_DIRECT.
func openDevice(path string, readOnly bool) (*delta.File, error) {
	f, err := delta.OpenFile(path, readOnly)
	if err != nil {
		return nil, directHint(err)
	}
	return f, nil
}

// directHint explains EINVAL from an O_DIRECT open.
func directHint(err error) error {
	if errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%w (the filesystem does not support O_DIRECT: tmpfs before Linux 6.6 and some network filesystems do not; ext4 and xfs do)", err)
	}
	return err
}
