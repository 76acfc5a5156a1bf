package leader

import "fmt"

// Sector is one decoded host sector: the sanlock leader record, the host
// bitmap and, if the owner runs sanlock-msg, its extension.
type Sector struct {
	Record Record
	Bitmap Bitmap
	// Ext is the sanlock-msg extension, or nil if the sector has none (a
	// sanlock-native host, a free sector) or it failed its checks.
	Ext *Extension
	// ExtErr says why an extension that is present was rejected
	// (ErrExtChecksum, ErrExtVersion). The leader record and bitmap are
	// still decoded; the message fields must not be acted on.
	ExtErr error
}

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
	s.Ext, s.ExtErr = decodeExt(b)
	return s, nil
}

// Encode writes s into b, whose length is the sector size (512 or 4096):
// the record exactly as it is (call Record.Seal first), the bitmap, the
// extension if s.Ext is non-nil (sealed with its CRC), and zeros everywhere
// else, as sanlock writes every sector from a zeroed buffer. It returns an
// error, and leaves b unspecified, if the extension does not fit.
func (s *Sector) Encode(b []byte) error {
	if len(b) != 512 && len(b) != 4096 {
		return fmt.Errorf("%w: cannot encode a %d-byte sector", ErrSectorSize, len(b))
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
