package leader

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The sanlock-msg part of a host sector (format version 2; docs/format.md).
//
// A sector written by sanlock-msg says so in the leader record's unused1
// field (bytes 160..167), which sanlock's checksum covers but no sanlock
// code reads: the marker (marker.go). Only a marked sector has an
// extension; a marked sector whose extension is missing or fails its
// checks is a damaged sector of ours, never a plain sanlock host, so its
// event fields are never delivered as a sanlock event.
//
// The extension lives in bytes sanlock never reads and zeroes on every
// write of its own (sanlock-format.md §2): 200..255 of every sector and, on
// 4096-byte sectors, 512..4095. Layout (little-endian):
//
//	200       format version (ExtVersion)
//	201       flags (ExtFlag*)
//	202..203  W: the owner's watchdog fire timeout in seconds (0 = not
//	          said); peers use it for the owner's host_dead
//	204..207  CRC-32C (standard Castagnoli) of the whole sector except
//	          these four bytes and sanlock's checksum (168..171): it covers
//	          the leader record (marker included), the event fields
//	          176..199, the bitmap and the extension, so a torn or partly
//	          stale sector is never acted on. (Leaving sanlock's checksum out
//	          matters: a CRC register fed its own value becomes a constant,
//	          so covering a valid sanlock checksum would make bytes 0..167
//	          drop out of ours.)
//	208..213  seq of the message in the event fields and bitmap (48 bits;
//	          0 = no message)
//	214..215  origin: low 16 bits of the generation the message was first
//	          sent under (a restarted sender resends its durable outbox
//	          under the original identity, so receivers recognise it)
//	216..255  ack entries 0..3
//	512..4091 ack entries 4..361 (4096-byte sectors only)
//
// An ack entry is 10 bytes:
//
//	0..1  bits 0..10: source host id (0 = empty slot, and the end of the
//	      table: entries fill slots from 0 without holes); bits 11..15:
//	      status
//	2..3  origin: low 16 bits of the generation the acked messages were
//	      first sent under
//	4..9  seq (48 bits): the last seq of that source and origin processed
//
// Carrying the origin generation in every entry means an ack can never be
// mistaken for one addressed to another incarnation's messages
// (generations differ by one per acquire, so 16 bits tell neighbours
// apart).
const (
	OffExt         = 200
	OffExtVersion  = 200
	OffExtFlags    = 201
	OffExtWatchdog = 202
	OffExtCRC      = 204
	OffExtSeq      = 208
	OffExtOrigin   = 214
	OffExtAcks     = 216
	OffExtAcks4K   = 512
	AckEntrySize   = 10
	// ExtVersion is the extension format this build writes and reads.
	// Version 1 (before the marker) is read as a plain sanlock sector.
	ExtVersion     = 2
	MaxSeq         = 1<<48 - 1
	acksIn512      = (OffBitmap - OffExtAcks) / AckEntrySize // 4
	acksIn4KTail   = (4096 - OffExtAcks4K) / AckEntrySize    // 358
	ackHostBits    = 11
	ackHostMask    = 1<<ackHostBits - 1
	ackStatusShift = ackHostBits
)

// Extension flags (byte 201).
const (
	// ExtFlagResetting says the host accepted a WD_RESET and stopped feeding
	// its watchdog: it will reset within its watchdog timeout.
	ExtFlagResetting uint8 = 0x01
	// ExtFlagHolding says the host is holding back messages addressed to
	// it, leaving them unprocessed on their senders' disks: none of its
	// listeners has room, or it just joined and waits for its listeners to
	// register. Senders keep waiting, and say so if the send times out.
	ExtFlagHolding uint8 = 0x02
)

// AckStatus says what a receiver did with a message. It is stored in 5 bits.
type AckStatus uint8

// Ack statuses.
const (
	// StatusNone marks an entry with no status (never written by us).
	StatusNone AckStatus = 0
	// StatusDelivered: handed to at least one registered listener.
	StatusDelivered AckStatus = 1
	// StatusNoListener: no client was registered for the lockspace; the
	// message was consumed and not delivered.
	StatusNoListener AckStatus = 2
	// StatusWrongGeneration: the message named another incarnation of the
	// receiver; it was rejected, not delivered.
	StatusWrongGeneration AckStatus = 3
	// StatusResetting: a WD_RESET was accepted; the receiver stopped feeding
	// its watchdog and resets within seconds.
	StatusResetting AckStatus = 4
	// StatusResetUnavailable: a WD_RESET was received but the receiver runs
	// without a watchdog and cannot reset itself. It was still delivered.
	StatusResetUnavailable AckStatus = 5
	maxAckStatus                     = 31
)

var statusNames = map[AckStatus]string{
	StatusNone:             "none",
	StatusDelivered:        "delivered",
	StatusNoListener:       "no-listener",
	StatusWrongGeneration:  "wrong-generation",
	StatusResetting:        "resetting",
	StatusResetUnavailable: "reset-unavailable",
}

// String returns the status name used by the CLI and JSON output.
func (s AckStatus) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("status-%d", uint8(s))
}

// Ack is one entry of a receiver's ack table: the last message of one
// source incarnation the receiver processed, and what it did with it.
type Ack struct {
	HostID uint64 // source host id, 1..2047
	// Gen16 is the low 16 bits of the generation the acked messages were
	// first sent under (their origin).
	Gen16  uint16
	Status AckStatus // what the receiver did
	Seq    uint64    // source's seq, 48 bits; cumulative per source and origin
}

// Matches reports whether the entry acks messages of host first sent under
// generation gen.
func (a Ack) Matches(host, gen uint64) bool {
	return a.HostID == host && a.Gen16 == uint16(gen)
}

// Extension is the decoded sanlock-msg extension of a sector.
type Extension struct {
	Version uint8
	Flags   uint8
	// Watchdog is the owner's watchdog fire timeout W in whole seconds
	// (0: not said; peers then assume their own).
	Watchdog uint16
	// Seq identifies the message carried in the event fields and bitmap;
	// 0 means the sector carries no sanlock-msg message.
	Seq uint64
	// Origin is the low 16 bits of the generation the message was first
	// sent under: the owner's generation, or an earlier one for a message
	// resent from a durable outbox after a restart.
	Origin uint16
	// Acks lists the ack entries in slot order (the table ends at its
	// first empty slot).
	Acks []Ack
}

// AckCapacity returns how many ack entries fit in a sector of this size:
// 4 for 512-byte sectors and 362 for 4096-byte sectors.
func AckCapacity(sectorSize int) int {
	if sectorSize >= 4096 {
		return acksIn512 + acksIn4KTail
	}
	return acksIn512
}

// FindAck returns the entry for source (host, gen), if any.
func (e *Extension) FindAck(host, gen uint64) (Ack, bool) {
	if e == nil {
		return Ack{}, false
	}
	for _, a := range e.Acks {
		if a.Matches(host, gen) {
			return a, true
		}
	}
	return Ack{}, false
}

func ackOffset(slot int) int {
	if slot < acksIn512 {
		return OffExtAcks + slot*AckEntrySize
	}
	return OffExtAcks4K + (slot-acksIn512)*AckEntrySize
}

// extCRC computes the extension checksum of a whole sector, skipping
// sanlock's checksum and the extension CRC itself.
func extCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:OffChecksum])
	c = crc32.Update(c, castagnoli, b[OffChecksum+4:OffExtCRC])
	return crc32.Update(c, castagnoli, b[OffExtCRC+4:])
}

// decodeExt decodes the extension of sector b, which carries our marker.
func decodeExt(b []byte) (*Extension, error) {
	le := binary.LittleEndian
	v := b[OffExtVersion]
	if v != ExtVersion {
		detail := fmt.Sprintf("%d, want %d", v, ExtVersion)
		if v == 0 {
			detail = "0: the extension is missing from a sector marked as ours"
		}
		return nil, &FieldError{Field: "ext_version", Offset: OffExtVersion, Err: ErrExtVersion, Detail: detail}
	}
	if got, want := le.Uint32(b[OffExtCRC:]), extCRC(b); got != want {
		return nil, &FieldError{Field: "ext_crc", Offset: OffExtCRC, Err: ErrExtChecksum,
			Detail: fmt.Sprintf("stored 0x%08x, computed 0x%08x", got, want)}
	}
	e := &Extension{
		Version:  v,
		Flags:    b[OffExtFlags],
		Watchdog: le.Uint16(b[OffExtWatchdog:]),
		Seq:      uint48(b[OffExtSeq:]),
		Origin:   le.Uint16(b[OffExtOrigin:]),
	}
	n := AckCapacity(len(b))
	for slot := 0; slot < n; slot++ {
		p := b[ackOffset(slot):]
		hs := le.Uint16(p)
		host := uint64(hs & ackHostMask)
		if host == 0 {
			break // the table ends at its first empty slot
		}
		e.Acks = append(e.Acks, Ack{
			HostID: host,
			Status: AckStatus(hs >> ackStatusShift),
			Gen16:  le.Uint16(p[2:]),
			Seq:    uint48(p[4:]),
		})
	}
	return e, nil
}

// check validates e against the capacity of a sector of size n.
func (e *Extension) check(n int) error {
	if e.Seq > MaxSeq {
		return fmt.Errorf("%w: seq %d exceeds 48 bits", ErrExtRange, e.Seq)
	}
	if len(e.Acks) > AckCapacity(n) {
		return fmt.Errorf("%w: %d ack entries, a %d-byte sector holds %d", ErrExtRange, len(e.Acks), n, AckCapacity(n))
	}
	for _, a := range e.Acks {
		if a.HostID < 1 || a.HostID > ackHostMask || a.Status > maxAckStatus || a.Seq > MaxSeq {
			return fmt.Errorf("%w: ack entry %+v", ErrExtRange, a)
		}
	}
	return nil
}

// putExt writes e into sector b (whose other bytes are final) and seals it
// with the extension CRC.
func (e *Extension) put(b []byte) {
	le := binary.LittleEndian
	b[OffExtVersion] = ExtVersion
	b[OffExtFlags] = e.Flags
	le.PutUint16(b[OffExtWatchdog:], e.Watchdog)
	putUint48(b[OffExtSeq:], e.Seq)
	le.PutUint16(b[OffExtOrigin:], e.Origin)
	for slot, a := range e.Acks {
		p := b[ackOffset(slot):]
		le.PutUint16(p, uint16(a.HostID)|uint16(a.Status)<<ackStatusShift)
		le.PutUint16(p[2:], a.Gen16)
		putUint48(p[4:], a.Seq)
	}
	le.PutUint32(b[OffExtCRC:], extCRC(b))
}

func uint48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 | uint64(b[4])<<32 | uint64(b[5])<<40
}

func putUint48(b []byte, v uint64) {
	_ = b[5]
	for i := 0; i < 6; i++ {
		b[i] = byte(v >> (8 * i))
	}
}
