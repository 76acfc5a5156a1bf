package leader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// On-disk constants of a sanlock 3.x delta lease (sanlock-format.md §2).
const (
	// Magic identifies a delta lease record ("10 20 21 12" on disk).
	Magic uint32 = 0x12212010
	// PaxosMagic identifies a paxos (resource) lease; never valid in a lockspace.
	PaxosMagic uint32 = 0x06152010
	// Version is the version sanlock 3.8 writes: major 3, minor 4.
	Version uint32 = 0x00030004
	// MajorMask selects the major version; readers compare only the major part.
	MajorMask uint32 = 0xFFFF0000
	// NameLen is the size of the space_name and resource_name fields.
	NameLen = 48
	// RecordSize is the size of the leader record at the start of every sector.
	RecordSize = 200
	// ChecksumLen is the number of leading bytes covered by the checksum.
	ChecksumLen = 168
)

// Byte offsets of the record fields inside a sector.
const (
	OffMagic           = 0
	OffVersion         = 4
	OffFlags           = 8
	OffSectorSize      = 12
	OffNumHosts        = 16
	OffMaxHosts        = 24
	OffOwnerID         = 32
	OffOwnerGeneration = 40
	OffLVer            = 48
	OffSpaceName       = 56
	OffResourceName    = 104
	OffTimestamp       = 152
	OffUnused1         = 160
	OffChecksum        = 168
	OffUnused2         = 172
	OffIOTimeout       = 174
	OffWriteID         = 176 // event: target generation
	OffWriteGeneration = 184 // event: event code
	OffWriteTimestamp  = 192 // event: event data
)

// Record is the 200-byte sanlock leader record of one host sector.
//
// Names are kept as raw 48-byte arrays: sanlock compares them with a 48-byte
// strncmp and leaves bytes after the NUL as they were, so a string round trip
// would lose information. Use SpaceNameString and ResourceNameString to read
// them and SetName to write them.
type Record struct {
	Magic      uint32
	Version    uint32
	Flags      uint32 // ALIGN_* bit; see Geometry
	SectorSize uint32 // 512 or 4096
	NumHosts   uint64 // unused by delta leases (0)
	MaxHosts   uint64 // 1 as written by init; not the lockspace's max_hosts
	// OwnerID is the host id that last acquired the sector.
	OwnerID uint64
	// OwnerGeneration goes up by one on every acquire.
	OwnerGeneration uint64
	LVer            uint64 // paxos only (0)
	SpaceName       [NameLen]byte
	// ResourceName holds the owner's host name in a delta lease.
	ResourceName [NameLen]byte
	// Timestamp is the owner's monotonic clock in whole seconds at its last
	// write; 0 means free or released. Only changes of it are meaningful.
	Timestamp uint64
	Unused1   uint64
	// Checksum is sanlock's CRC-32C variant over bytes 0..167 (see Checksum).
	Checksum uint32
	Unused2  uint16
	// IOTimeout is the owner's io_timeout in seconds; peers derive their
	// timeouts toward this host from it.
	IOTimeout uint16
	// WriteID is the host event's target generation (0 = any).
	WriteID uint64
	// WriteGeneration is the host event code (0 = no event).
	WriteGeneration uint64
	// WriteTimestamp is the host event data.
	WriteTimestamp uint64
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum computes sanlock's leader checksum over rec[0:168]: CRC-32C
// (Castagnoli) with the register started at 0xFFFFFFFE and no final XOR.
// It differs from the standard CRC-32C (crc32.Checksum).
func Checksum(rec []byte) uint32 {
	// crc32.Update inverts on entry and exit: passing 1 starts the register
	// at ^1, and the outer ^ cancels the final inversion.
	return ^crc32.Update(1, castagnoli, rec[:ChecksumLen])
}

// DecodeRecord decodes the leader record from the first 200 bytes of b. It
// validates nothing but the length; see Verify.
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) < RecordSize {
		return r, fmt.Errorf("%w: record needs %d bytes, have %d", ErrShortBuffer, RecordSize, len(b))
	}
	le := binary.LittleEndian
	r.Magic = le.Uint32(b[OffMagic:])
	r.Version = le.Uint32(b[OffVersion:])
	r.Flags = le.Uint32(b[OffFlags:])
	r.SectorSize = le.Uint32(b[OffSectorSize:])
	r.NumHosts = le.Uint64(b[OffNumHosts:])
	r.MaxHosts = le.Uint64(b[OffMaxHosts:])
	r.OwnerID = le.Uint64(b[OffOwnerID:])
	r.OwnerGeneration = le.Uint64(b[OffOwnerGeneration:])
	r.LVer = le.Uint64(b[OffLVer:])
	copy(r.SpaceName[:], b[OffSpaceName:])
	copy(r.ResourceName[:], b[OffResourceName:])
	r.Timestamp = le.Uint64(b[OffTimestamp:])
	r.Unused1 = le.Uint64(b[OffUnused1:])
	r.Checksum = le.Uint32(b[OffChecksum:])
	r.Unused2 = le.Uint16(b[OffUnused2:])
	r.IOTimeout = le.Uint16(b[OffIOTimeout:])
	r.WriteID = le.Uint64(b[OffWriteID:])
	r.WriteGeneration = le.Uint64(b[OffWriteGeneration:])
	r.WriteTimestamp = le.Uint64(b[OffWriteTimestamp:])
	return r, nil
}

// Put encodes r into b[0:200] exactly as it is, including the Checksum field
// as stored in r. Use Seal to recompute the checksum first. Put panics if b
// is shorter than RecordSize.
func (r *Record) Put(b []byte) {
	_ = b[RecordSize-1]
	le := binary.LittleEndian
	le.PutUint32(b[OffMagic:], r.Magic)
	le.PutUint32(b[OffVersion:], r.Version)
	le.PutUint32(b[OffFlags:], r.Flags)
	le.PutUint32(b[OffSectorSize:], r.SectorSize)
	le.PutUint64(b[OffNumHosts:], r.NumHosts)
	le.PutUint64(b[OffMaxHosts:], r.MaxHosts)
	le.PutUint64(b[OffOwnerID:], r.OwnerID)
	le.PutUint64(b[OffOwnerGeneration:], r.OwnerGeneration)
	le.PutUint64(b[OffLVer:], r.LVer)
	copy(b[OffSpaceName:OffSpaceName+NameLen], r.SpaceName[:])
	copy(b[OffResourceName:OffResourceName+NameLen], r.ResourceName[:])
	le.PutUint64(b[OffTimestamp:], r.Timestamp)
	le.PutUint64(b[OffUnused1:], r.Unused1)
	le.PutUint32(b[OffChecksum:], r.Checksum)
	le.PutUint16(b[OffUnused2:], r.Unused2)
	le.PutUint16(b[OffIOTimeout:], r.IOTimeout)
	le.PutUint64(b[OffWriteID:], r.WriteID)
	le.PutUint64(b[OffWriteGeneration:], r.WriteGeneration)
	le.PutUint64(b[OffWriteTimestamp:], r.WriteTimestamp)
}

// Bytes returns the 200-byte encoding of r (checksum as stored).
func (r *Record) Bytes() []byte {
	b := make([]byte, RecordSize)
	r.Put(b)
	return b
}

// Seal recomputes r.Checksum from the other fields, as sanlock does before
// every write.
func (r *Record) Seal() {
	var b [RecordSize]byte
	r.Put(b[:])
	r.Checksum = Checksum(b[:])
}

// ComputeChecksum returns the checksum r's fields should carry.
func (r *Record) ComputeChecksum() uint32 {
	var b [RecordSize]byte
	r.Put(b[:])
	return Checksum(b[:])
}

// Verify checks what sanlock checks on the sector of its own host id:
// magic, major version, space name (48-byte strncmp) and checksum, in that
// order. It returns a *FieldError wrapping ErrMagic, ErrVersion, ErrName or
// ErrChecksum. An empty name skips the name check.
func (r *Record) Verify(spaceName string) error {
	if r.Magic != Magic {
		return &FieldError{Field: "magic", Offset: OffMagic, Err: ErrMagic,
			Detail: fmt.Sprintf("0x%08x, want 0x%08x", r.Magic, Magic)}
	}
	if r.Version&MajorMask != Version&MajorMask {
		return &FieldError{Field: "version", Offset: OffVersion, Err: ErrVersion,
			Detail: fmt.Sprintf("0x%08x, want major 0x%04x", r.Version, Version>>16)}
	}
	if spaceName != "" && !r.HasSpaceName(spaceName) {
		return &FieldError{Field: "space_name", Offset: OffSpaceName, Err: ErrName,
			Detail: fmt.Sprintf("%q, want %q", r.SpaceNameString(), spaceName)}
	}
	if c := r.ComputeChecksum(); c != r.Checksum {
		return &FieldError{Field: "checksum", Offset: OffChecksum, Err: ErrChecksum,
			Detail: fmt.Sprintf("stored 0x%08x, computed 0x%08x", r.Checksum, c)}
	}
	return nil
}

// HasSpaceName reports whether the record's space name equals name, compared
// as sanlock does (strncmp over 48 bytes).
func (r *Record) HasSpaceName(name string) bool {
	return nameEqual(r.SpaceName, name)
}

// HasResourceName reports whether the resource (owner host) name equals name
// (strncmp over 48 bytes).
func (r *Record) HasResourceName(name string) bool {
	return nameEqual(r.ResourceName, name)
}

// SpaceNameString returns the space name up to the first NUL.
func (r *Record) SpaceNameString() string { return cString(r.SpaceName[:]) }

// ResourceNameString returns the resource (owner host) name up to the first NUL.
func (r *Record) ResourceNameString() string { return cString(r.ResourceName[:]) }

// SetName copies name into a 48-byte name field as sanlock does: at most 48
// bytes for a space name, followed by a NUL if there is room; bytes after the
// NUL are left as they were. It returns ErrNameTooLong if name does not fit
// in max bytes (48 for space names, 47 for host names).
func SetName(field *[NameLen]byte, name string, max int) error {
	if len(name) > max {
		return fmt.Errorf("%w: %q is %d bytes, at most %d", ErrNameTooLong, name, len(name), max)
	}
	if bytes.IndexByte([]byte(name), 0) >= 0 {
		return fmt.Errorf("leader: name %q contains a NUL byte", name)
	}
	copy(field[:], name)
	if len(name) < NameLen {
		field[len(name)] = 0
	}
	return nil
}

// MaxSpaceName and MaxHostName are the longest names sanlock stores: a space
// name may fill all 48 bytes; a host name is written as a C string.
const (
	MaxSpaceName = NameLen
	MaxHostName  = NameLen - 1
)

func nameEqual(field [NameLen]byte, name string) bool {
	if len(name) > NameLen {
		return false
	}
	for i := 0; i < NameLen; i++ {
		var c byte
		if i < len(name) {
			c = name[i]
		}
		if field[i] != c {
			return false
		}
		if c == 0 {
			return true
		}
	}
	return true
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
