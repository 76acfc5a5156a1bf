package leader

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrShortBuffer means a buffer is smaller than the structure decoded.
	ErrShortBuffer = errors.New("leader: short buffer")
	// ErrMagic means the record does not start with the delta lease magic.
	ErrMagic = errors.New("leader: bad magic")
	// ErrVersion means the record's major version is not 3.
	ErrVersion = errors.New("leader: unsupported version")
	// ErrName means the record belongs to another lockspace.
	ErrName = errors.New("leader: wrong lockspace name")
	// ErrChecksum means the sanlock leader checksum does not match.
	ErrChecksum = errors.New("leader: bad checksum")
	// ErrSectorSize means the record's sector_size is neither 512 nor 4096.
	ErrSectorSize = errors.New("leader: bad sector size")
	// ErrGeometry means the sector size and align size are not a valid pair.
	ErrGeometry = errors.New("leader: invalid sector/align combination")
	// ErrHostID means a host id is outside 1..max_hosts.
	ErrHostID = errors.New("leader: host id out of range")
	// ErrNameTooLong means a lockspace or host name does not fit its field.
	ErrNameTooLong = errors.New("leader: name too long")
	// ErrExtChecksum means a sanlock-msg extension is present but its CRC
	// does not match: the sector was torn or corrupted, and none of its
	// message fields may be acted on.
	ErrExtChecksum = errors.New("leader: bad extension checksum")
	// ErrExtVersion means the extension has a format version this build
	// does not understand.
	ErrExtVersion = errors.New("leader: unsupported extension version")
	// ErrUnmarked means a sector with an extension was to be encoded
	// without the sanlock-msg marker in its record (Sector.Seal sets it).
	ErrUnmarked = errors.New("leader: extension without the sanlock-msg marker; call Sector.Seal")
	// ErrDoorbell means a doorbell sector is torn, corrupt or of an unknown
	// version: it is ignored (counted), never acted on.
	ErrDoorbell = errors.New("leader: bad doorbell")
	// ErrNotDoorbell means a spare sector does not start with four zero
	// bytes: it is not ours to write (a sanlock record, or foreign data).
	ErrNotDoorbell = errors.New("leader: not a doorbell")
	// ErrExtRange means an extension field holds a value outside its range.
	ErrExtRange = errors.New("leader: extension value out of range")
)

// FieldError reports which field of a sector failed a check.
type FieldError struct {
	Field  string // on-disk field name, as in sanlock-format.md
	Offset int    // byte offset of the field in the sector
	Err    error  // one of the sentinels above
	Detail string // found and wanted values
}

func (e *FieldError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v (%s at byte %d)", e.Err, e.Field, e.Offset)
	}
	return fmt.Sprintf("%v: %s (%s at byte %d)", e.Err, e.Detail, e.Field, e.Offset)
}

// Unwrap returns the sentinel.
func (e *FieldError) Unwrap() error { return e.Err }
