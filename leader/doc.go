// Package leader encodes and decodes one host sector of a sanlock 3.x
// delta-lease area (a "lockspace"), byte for byte as sanlock writes it, plus
// the sanlock-msg message extension that sanlock leaves untouched.
//
// A host sector is laid out as follows (all integers little-endian):
//
//	0..199     the sanlock leader record (Record), checksummed by sanlock's
//	           CRC-32C variant over bytes 0..167 (Checksum)
//	176..199   the host event fields: write_id (target generation),
//	           write_generation (event code), write_timestamp (event data)
//	200..255   the sanlock-msg extension header, outgoing seq and the first
//	           ack entries (Extension); zero in sectors written by sanlock
//	256..511   the host bitmap: one bit per target host id (Bitmap)
//	512..4095  on 4096-byte sectors only: more ack entries
//
// The package does no I/O and reads no clock. Decode never panics on any
// input; Encode(Decode(b)) reproduces every byte sanlock defines. See
// sanlock-format.md (sections 2, 3 and 6) for the sanlock half of the format,
// and Extension for ours.
//
// Typical use:
//
//	sec, err := leader.DecodeSector(buf)
//	if err != nil { ... }                   // short buffer only
//	if err := sec.Record.Verify("LS"); err != nil { ... } // magic, version, name, checksum
//	if sec.ExtErr != nil { ... }            // torn or foreign extension: ignore its messages
//	out := sec.Encode(make([]byte, sec.Record.SectorSize))
package leader
