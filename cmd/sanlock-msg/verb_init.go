package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

const initAbout = `
Writes a new lockspace area at OFFSET of PATH (a block device or a regular
file), byte for byte as 'sanlock direct init -s NAME:0:PATH:OFFSET [-o N]
[-Z S -A A]' writes it: one record per host id with NAME, the geometry and
io_timeout, host 1's record made valid last. The HOST_ID in -s is ignored,
as sanlock ignores it; give 0.

Geometry: with neither --sector-size nor --align, the sector size is the
device's logical sector size (BLKSSZGET; 512 for a regular file) and the
align size is sanlock's default for it (1M for 512, 8M for 4096).
--sector-size alone uses its default align; --align alone uses the
device's sector size (sanlock needs both -Z and -A; either form is accepted
here). Valid pairs: 512/1M, 4096/1M (250 hosts), 4096/2M (500),
4096/4M (1000), 4096/8M (2000). OFFSET must be a multiple of the sector
size, and the device must hold OFFSET + align bytes.

An existing valid lockspace at OFFSET (any name) is never overwritten
without --force. Nothing is written when any check fails.`

// runInit implements `sanlock-msg init`.
func runInit(ctx context.Context, e *env, args []string) int {
	c := newCommand("init", "-s NAME:0:PATH:OFFSET [-o IO_TIMEOUT] [-Z 512|4096] [-A 1M|2M|4M|8M] [--force]", initAbout)
	spec := c.specFlag("lockspace to create, NAME:HOST_ID:PATH:OFFSET (HOST_ID is ignored; OFFSET in bytes, K/M/G suffixes allowed)")
	ioTimeout := c.fs.IntP("io-timeout", "o", int(delta.DefaultIOTimeout/time.Second),
		"io_timeout in seconds (1..255) written into every host record; peers derive their timeouts toward a host from it")
	geo := c.geometryFlags("")
	force := c.fs.Bool("force", false, "overwrite an existing valid lockspace")
	if done, st := c.parse(e, args); done {
		return st
	}
	sp, ok := c.spec(e, *spec, false)
	if !ok {
		return exitUsage
	}
	if *ioTimeout < 1 || *ioTimeout > 255 {
		return c.usageError(e, fmt.Sprintf("io_timeout %d: want whole seconds in 1..255", *ioTimeout))
	}
	if geo.sectorSize != 0 && geo.sectorSize != 512 && geo.sectorSize != 4096 {
		return c.usageError(e, fmt.Sprintf("--sector-size %d: want 512 or 4096", geo.sectorSize))
	}
	if geo.align != "" {
		if _, err := leader.ParseAlign(geo.align); err != nil {
			return c.usageError(e, fmt.Sprintf("--align %q: want 1M, 2M, 4M or 8M", geo.align))
		}
	}

	dev, err := openDevice(sp.Path, false)
	if err != nil {
		return fail(e, "init", err)
	}
	defer dev.Close()
	g, err := geo.resolve(dev.SectorSize())
	if err != nil {
		return fail(e, "init", fmt.Errorf("%s: %w", sp.Path, err))
	}
	o := delta.NewIO(dev, clock.Real{})
	err = delta.Init(ctx, o, delta.InitOptions{
		Name:      sp.Name,
		Offset:    sp.Offset,
		Geometry:  g,
		IOTimeout: time.Duration(*ioTimeout) * time.Second,
		Force:     *force,
	})
	if err != nil {
		return fail(e, "init", err)
	}
	fmt.Fprintf(e.stdout, "initialised lockspace %s at %s:%d: %d-byte sectors, align %s, %d hosts, io_timeout %d\n",
		sp.Name, sp.Path, sp.Offset, g.SectorSize, leader.AlignString(g.AlignSize), g.MaxHosts, *ioTimeout)
	return exitOK
}
