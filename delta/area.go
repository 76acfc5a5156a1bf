package delta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Area is a lockspace area on a device: where it starts and its geometry.
type Area struct {
	IO     *IO
	Offset int64 // byte offset of host 1's sector
	Geo    leader.Geometry
	Name   string // lockspace name
}

// HostOffset returns the device offset of host id's sector.
func (a *Area) HostOffset(id uint64) int64 { return a.Offset + a.Geo.HostOffset(id) }

// checkPlacement validates the area's offset and the device's size.
func checkPlacement(dev Device, off int64, geo leader.Geometry) error {
	ss := int64(geo.SectorSize)
	if dss := dev.SectorSize(); dss > 0 && dss != geo.SectorSize {
		return fmt.Errorf("%w: %s has %d-byte sectors, the lockspace uses %d", ErrMisaligned, dev, dss, geo.SectorSize)
	}
	if off < 0 || off%ss != 0 {
		return fmt.Errorf("%w: offset %d is not a multiple of the %d-byte sector size", ErrMisaligned, off, ss)
	}
	size, err := dev.Size()
	if err != nil {
		return err
	}
	if off >= size {
		return fmt.Errorf("%w: offset %d is past the end of %s (%d bytes)", ErrDeviceTooSmall, off, dev, size)
	}
	if end := off + int64(geo.AlignSize); end > size {
		return fmt.Errorf("%w: the %s area at offset %d needs %d bytes, %s has %d", ErrDeviceTooSmall,
			leader.AlignString(geo.AlignSize), off, end, dev, size)
	}
	return nil
}

// InitOptions are the parameters of Init.
type InitOptions struct {
	Name      string
	Offset    int64
	Geometry  leader.Geometry
	IOTimeout time.Duration // written into every record; whole seconds, default 10 s
	// Force overwrites an existing valid lockspace. Without it Init refuses
	// with ErrExists.
	Force bool
}

// ErrExists means Init found a valid lockspace where it was asked to write.
var ErrExists = errors.New("delta: a lockspace already exists there")

// Init writes a fresh lockspace area exactly as `sanlock direct init` does
// (sanlock-format.md §1.2): every host record with the name, geometry and
// io_timeout, record 0 first written without its magic, the whole area in
// one write, then record 0 again with its magic so the area only becomes
// valid once all of it is on disk.
func Init(ctx context.Context, o *IO, opt InitOptions) error {
	geo := opt.Geometry
	if err := checkPlacement(o.Device(), opt.Offset, geo); err != nil {
		return err
	}
	ioSec, err := ioSeconds(opt.IOTimeout)
	if err != nil {
		return err
	}
	var name [leader.NameLen]byte
	if err := leader.SetName(&name, opt.Name, leader.MaxSpaceName); err != nil {
		return err
	}
	if !opt.Force {
		if err := refuseExisting(ctx, o, opt.Offset, geo.SectorSize); err != nil {
			return err
		}
	}
	rec := leader.Record{
		Magic: leader.Magic, Version: leader.Version, Flags: geo.AlignFlag(),
		SectorSize: uint32(geo.SectorSize), MaxHosts: 1, SpaceName: name, IOTimeout: ioSec,
	}
	buf := AlignedBuffer(geo.AlignSize)
	for i := 0; i < geo.MaxHosts; i++ {
		r := rec
		if i == 0 {
			r.Magic = 0
		}
		r.Seal()
		r.Put(buf[i*geo.SectorSize:])
	}
	if err := o.Write(ctx, opt.Offset, buf, InitIOTimeout); err != nil {
		return fmt.Errorf("delta: init %s: %w", opt.Name, err)
	}
	rec.Seal()
	sec := make([]byte, geo.SectorSize)
	rec.Put(sec)
	if err := o.Write(ctx, opt.Offset, sec, InitIOTimeout); err != nil {
		return fmt.Errorf("delta: init %s: write record 0: %w", opt.Name, err)
	}
	return nil
}

func ioSeconds(d time.Duration) (uint16, error) {
	if d == 0 {
		d = DefaultIOTimeout
	}
	if d < time.Second || d%time.Second != 0 || d > 255*time.Second {
		return 0, fmt.Errorf("delta: io_timeout %v must be whole seconds in 1..255", d)
	}
	return uint16(d / time.Second), nil
}

func refuseExisting(ctx context.Context, o *IO, off int64, ss int) error {
	b, err := o.Read(ctx, off, ss, InitIOTimeout)
	if err != nil {
		return fmt.Errorf("delta: read existing contents: %w", err)
	}
	r, _ := leader.DecodeRecord(b)
	if r.Verify("") == nil {
		return fmt.Errorf("%w: lockspace %q (%d-byte sectors) at offset %d of %s; use --force to overwrite it",
			ErrExists, r.SpaceNameString(), r.SectorSize, off, o.Device())
	}
	return nil
}

// Probe reads the first record of the lockspace at off and returns the
// area it describes, as sanlock does when it joins: the sector size comes
// from the record, the align size from its ALIGN flag. name, if not empty,
// must match the record. The record must pass magic, version, name and
// checksum checks.
func Probe(ctx context.Context, o *IO, off int64, name string, timeout time.Duration) (*Area, error) {
	dev := o.Device()
	probe := 4096
	if off%4096 != 0 {
		if dev.SectorSize() == 4096 {
			return nil, fmt.Errorf("%w: offset %d is not a multiple of the 4096-byte sector size", ErrMisaligned, off)
		}
		probe = 512
	}
	if off%512 != 0 {
		return nil, fmt.Errorf("%w: offset %d is not a multiple of 512", ErrMisaligned, off)
	}
	size, err := dev.Size()
	if err != nil {
		return nil, err
	}
	if off+int64(probe) > size {
		if off+512 > size {
			return nil, fmt.Errorf("%w: offset %d is past the end of %s (%d bytes)", ErrDeviceTooSmall, off, dev, size)
		}
		probe = 512
	}
	b, err := o.Read(ctx, off, probe, timeout)
	if err != nil {
		return nil, fmt.Errorf("delta: read lockspace at offset %d: %w", off, err)
	}
	r, _ := leader.DecodeRecord(b)
	if err := r.Verify(name); err != nil {
		return nil, fmt.Errorf("delta: no valid lockspace at offset %d of %s: %w", off, dev, err)
	}
	geo, err := leader.GeometryOf(&r)
	if err != nil {
		return nil, fmt.Errorf("delta: lockspace at offset %d of %s: %w", off, dev, err)
	}
	if err := checkPlacement(dev, off, geo); err != nil {
		return nil, err
	}
	return &Area{IO: o, Offset: off, Geo: geo, Name: r.SpaceNameString()}, nil
}

// ReadHosts reads the sectors of host ids first..last in one I/O and
// returns the raw buffer (sector i-first at (i-first)*SectorSize).
func (a *Area) ReadHosts(ctx context.Context, first, last uint64, timeout time.Duration) ([]byte, error) {
	if err := a.Geo.CheckHostID(first); err != nil {
		return nil, err
	}
	if err := a.Geo.CheckHostID(last); err != nil {
		return nil, err
	}
	n := int(last-first+1) * a.Geo.SectorSize
	return a.IO.Read(ctx, a.HostOffset(first), n, timeout)
}

// ReadAll reads every host sector of the area.
func (a *Area) ReadAll(ctx context.Context, timeout time.Duration) ([]byte, error) {
	return a.ReadHosts(ctx, 1, uint64(a.Geo.MaxHosts), timeout)
}

// DecodeHosts decodes every sector in buf.
func (a *Area) DecodeHosts(buf []byte) []leader.Sector {
	ss := a.Geo.SectorSize
	out := make([]leader.Sector, len(buf)/ss)
	for i := range out {
		out[i], _ = leader.DecodeSector(buf[i*ss : (i+1)*ss])
	}
	return out
}
