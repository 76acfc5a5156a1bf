package leader

import "fmt"

// Sector is one decoded host sector: the sanlock leader record, the host
// bitmap and, if the owner runs sanlock-msg, its extension.
type Sector struct {
	Record Record
	Bitmap Bitmap
	// Ext is the sanlock-msg extension, or nil if the sector is not ours
	// (a plain sanlock host, a free sector) or its extension failed its
	// checks.
	Ext *Extension
	// ExtErr says why the extension of a sector marked as ours was
	// rejected (ErrExtChecksum, ErrExtVersion; a missing extension is
	// ErrExtVersion). The leader record and bitmap are still decoded, but
	// none of the sector's message fields may be acted on: not as a
	// message, and not as a plain sanlock event either.
	ExtErr error
}

// Ours reports whether the sector was written by sanlock-msg (its record
// carries the marker), whether or not its extension passed its checks.
func (s *Sector) Ours() bool { return s.Record.Marked() }

// DecodeSector decodes a whole sector; len(b) is the sector size (512 or
// 4096). It fails only on a buffer too short to hold a 512-byte sector; all
// content checks are left to Record.Verify and reported in ExtErr.
func DecodeSector(b []byte) (Sector, error) {
	var s Sector
	if len(b) < 512 {
		return s, fmt.Errorf("%w: sector needs at least 512 bytes, have %d", ErrShortBuffer, len(b))
	}
	if len(b) > 512 && len(b) != 4096 {
		return s, fmt.Errorf("%w: %d-byte sector", ErrSectorSize, len(b))
	}
	s.Record, _ = DecodeRecord(b)
	copy(s.Bitmap[:], b[OffBitmap:OffBitmap+BitmapSize])
	if s.Record.Marked() {
		s.Ext, s.ExtErr = decodeExt(b)
	}
	return s, nil
}

// Seal prepares s for Encode: a sector with an extension gets the
// sanlock-msg marker for its generation, then sanlock's checksum is
// recomputed. Call it whenever the record changed.
func (s *Sector) Seal() {
	if s.Ext != nil {
		s.Record.Mark()
	}
	s.Record.Seal()
}

// Encode writes s into b, whose length is the sector size (512 or 4096):
// the record exactly as it is (call Seal first), the bitmap, the extension
// if s.Ext is non-nil (sealed with its CRC), and zeros everywhere else, as
// sanlock writes every sector from a zeroed buffer. It returns an error,
// and leaves b unspecified, if the extension does not fit or the record
// lacks the marker that must go with it (ErrUnmarked).
func (s *Sector) Encode(b []byte) error {
	if len(b) != 512 && len(b) != 4096 {
		return fmt.Errorf("%w: cannot encode a %d-byte sector", ErrSectorSize, len(b))
	}
	if s.Ext != nil && !s.Record.Marked() {
		return fmt.Errorf("%w (generation %d, unused1 0x%016x)", ErrUnmarked, s.Record.OwnerGeneration, s.Record.Unused1)
	}
	clear(b)
	s.Record.Put(b)
	copy(b[OffBitmap:], s.Bitmap[:])
	if s.Ext != nil {
		if err := s.Ext.check(len(b)); err != nil {
			return err
		}
		s.Ext.put(b)
	}
	return nil
}

// Event returns the host event fields (target generation, code, data).
func (s *Sector) Event() (gen, code, data uint64) {
	return s.Record.WriteID, s.Record.WriteGeneration, s.Record.WriteTimestamp
}
