package leader

import "fmt"

// Flag bits stored in Record.Flags (sanlock-format.md §1).
const (
	FlagAlign1M uint32 = 0x10
	FlagAlign2M uint32 = 0x20
	FlagAlign4M uint32 = 0x40
	FlagAlign8M uint32 = 0x80
	// FlagAlignMask selects the ALIGN bits, the only flags stored on disk.
	FlagAlignMask uint32 = 0xF0
)

// MiB is one mebibyte.
const MiB = 1 << 20

// BitmapHosts is the number of host ids the 256-byte bitmap can address.
const BitmapHosts = 2048

// MaxHostID is the largest host id sanlock accepts in any lockspace.
const MaxHostID = 2000

// Geometry is the shape of a lockspace area: sector size, align size (the
// area's length) and the number of host sectors.
type Geometry struct {
	SectorSize int // 512 or 4096
	AlignSize  int // area length in bytes: 1, 2, 4 or 8 MiB
	MaxHosts   int // host ids 1..MaxHosts; not AlignSize/SectorSize
}

var geometries = []Geometry{
	{512, 1 * MiB, 2000},
	{4096, 1 * MiB, 250},
	{4096, 2 * MiB, 500},
	{4096, 4 * MiB, 1000},
	{4096, 8 * MiB, 2000},
}

// NewGeometry returns the geometry for a sector size and align size, or
// ErrGeometry if sanlock does not accept the pair.
func NewGeometry(sectorSize, alignSize int) (Geometry, error) {
	for _, g := range geometries {
		if g.SectorSize == sectorSize && g.AlignSize == alignSize {
			return g, nil
		}
	}
	return Geometry{}, fmt.Errorf("%w: sector size %d with align %s (valid: 512/1M, 4096/1M, 4096/2M, 4096/4M, 4096/8M)",
		ErrGeometry, sectorSize, AlignString(alignSize))
}

// DefaultGeometry returns sanlock's default for a sector size: 1 MiB for
// 512-byte sectors and 8 MiB for 4096-byte sectors.
func DefaultGeometry(sectorSize int) (Geometry, error) {
	switch sectorSize {
	case 512:
		return NewGeometry(512, 1*MiB)
	case 4096:
		return NewGeometry(4096, 8*MiB)
	}
	return Geometry{}, fmt.Errorf("%w: %d", ErrSectorSize, sectorSize)
}

// GeometryOf returns the geometry a record describes: sector size from its
// sector_size field, align size from its ALIGN flag (or the legacy default
// when no ALIGN bit is set). This is how sanlock sizes a lockspace it joins.
func GeometryOf(r *Record) (Geometry, error) {
	ss := int(r.SectorSize)
	if ss != 512 && ss != 4096 {
		return Geometry{}, &FieldError{Field: "sector_size", Offset: OffSectorSize, Err: ErrSectorSize,
			Detail: fmt.Sprintf("%d", r.SectorSize)}
	}
	var align int
	switch r.Flags & FlagAlignMask {
	case 0:
		return DefaultGeometry(ss)
	case FlagAlign1M:
		align = 1 * MiB
	case FlagAlign2M:
		align = 2 * MiB
	case FlagAlign4M:
		align = 4 * MiB
	case FlagAlign8M:
		align = 8 * MiB
	default:
		return Geometry{}, &FieldError{Field: "flags", Offset: OffFlags, Err: ErrGeometry,
			Detail: fmt.Sprintf("several ALIGN bits in 0x%x", r.Flags)}
	}
	return NewGeometry(ss, align)
}

// AlignFlag returns the ALIGN flag bit stored for g.
func (g Geometry) AlignFlag() uint32 {
	switch g.AlignSize {
	case 1 * MiB:
		return FlagAlign1M
	case 2 * MiB:
		return FlagAlign2M
	case 4 * MiB:
		return FlagAlign4M
	case 8 * MiB:
		return FlagAlign8M
	}
	return 0
}

// HostOffset returns the byte offset of host id's sector relative to the
// start of the area.
func (g Geometry) HostOffset(hostID uint64) int64 {
	return int64(hostID-1) * int64(g.SectorSize)
}

// CheckHostID returns ErrHostID unless 1 <= id <= g.MaxHosts.
func (g Geometry) CheckHostID(id uint64) error {
	if id < 1 || id > uint64(g.MaxHosts) {
		return fmt.Errorf("%w: host_id %d, valid 1..%d", ErrHostID, id, g.MaxHosts)
	}
	return nil
}

// String describes g as "512/1M (2000 hosts)".
func (g Geometry) String() string {
	return fmt.Sprintf("%d/%s (%d hosts)", g.SectorSize, AlignString(g.AlignSize), g.MaxHosts)
}

// AlignString formats an align size as "1M", "8M", or bytes.
func AlignString(n int) string {
	if n > 0 && n%MiB == 0 {
		return fmt.Sprintf("%dM", n/MiB)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ParseAlign parses "1M", "2M", "4M", "8M" (also with "iB"/"B" suffix or as
// a byte count).
func ParseAlign(s string) (int, error) {
	switch s {
	case "1M", "1MiB", "1048576":
		return 1 * MiB, nil
	case "2M", "2MiB", "2097152":
		return 2 * MiB, nil
	case "4M", "4MiB", "4194304":
		return 4 * MiB, nil
	case "8M", "8MiB", "8388608":
		return 8 * MiB, nil
	}
	return 0, fmt.Errorf("leader: bad align size %q (want 1M, 2M, 4M or 8M)", s)
}
