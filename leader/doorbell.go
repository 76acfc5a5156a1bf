package leader

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Doorbells live in the spare sectors at the end of a lockspace area, after
// the max_hosts host records (sanlock-format.md §1.3): 48 at 512/1M and
// 4096/8M, 6 at 4096/1M, 12 at 4096/2M, 24 at 4096/4M. Sanlock never parses
// them, `sanlock direct init` zeroes them, and `sanlock direct dump` skips a
// sector whose first four bytes are zero, so a doorbell keeps bytes 0..3
// zero.
//
// Host h's doorbell is spare sector (h-1) mod D, where D is the number of
// spare sectors; h is bit (h-1) div D of that doorbell's target masks, so
// one doorbell serves at most 42 hosts in every geometry. A sender that has
// put a message on disk rings each target's doorbell; a receiver polls its
// doorbell (one sector) instead of every sender's sector, and reads the
// ringer's sector when a ring names it. Several hosts write one doorbell, so
// a ring is a hint, never the truth: a ringer reads the doorbell, adds its
// entry and writes it back, and two ringers that race lose one entry. The
// message and its ack stay in their owners' sectors, and senders ring again
// while an ack is missing.
//
// Layout (little-endian; docs/format.md):
//
//	0..3    zero (sanlock's magic position)
//	4..7    DoorbellMagic ("SMdb")
//	8       format version (DoorbellVersion)
//	9       number of entries
//	10..11  zero
//	12..15  CRC-32C (standard Castagnoli) of the whole sector except these
//	        four bytes
//	16..19  epoch: a random non-zero value chosen when the doorbell is
//	        created (or recreated over a damaged or zeroed sector), so a
//	        receiver never mistakes a new counter for an old one
//	20..23  zero
//	24..31  counter: one more on every write
//	32..    entries, newest first, 16 bytes each (30 in a 512-byte sector,
//	        254 in a 4096-byte one):
//	          0..1   ringer host id
//	          2..3   low 16 bits of the ringer's generation
//	          4..9   the counter value the entry was written with (48 bits)
//	          10..15 target mask (48 bits): bit k names host k·D + i + 1,
//	                 where i is this doorbell's index
const (
	// DoorbellMagic is bytes 4..7 of a doorbell: "SMdb".
	DoorbellMagic uint32 = 'S' | 'M'<<8 | 'd'<<16 | 'b'<<24
	// DoorbellVersion is the doorbell format this build writes and reads.
	DoorbellVersion = 1
	// DoorbellEntrySize is the size of one ring entry.
	DoorbellEntrySize = 16
	// DoorbellMaskBits is the number of hosts one doorbell can name.
	DoorbellMaskBits = 48

	offDbMagic   = 4
	offDbVersion = 8
	offDbCount   = 9
	offDbCRC     = 12
	offDbEpoch   = 16
	offDbCounter = 24
	offDbEntries = 32
)

// Ring is one doorbell entry: a ringer asking the hosts in Mask to read its
// sector.
type Ring struct {
	From    uint64 // ringer host id
	FromGen uint16 // low 16 bits of the ringer's generation
	// Counter is the doorbell counter the entry was written with.
	Counter uint64
	// Mask names the targets: bit k is the host at slot k of the doorbell
	// (Geometry.DoorbellSlot).
	Mask uint64
}

// Doorbell is a decoded doorbell sector.
type Doorbell struct {
	// Epoch is chosen when the doorbell is created; 0 means the sector was
	// never written as a doorbell (all zero, as init leaves it).
	Epoch uint32
	// Counter goes up by one on every write.
	Counter uint64
	// Rings are the entries, newest first.
	Rings []Ring
}

// DoorbellCapacity returns how many entries a doorbell sector of this size
// holds: 30 for 512 bytes, 254 for 4096.
func DoorbellCapacity(sectorSize int) int {
	return (sectorSize - offDbEntries) / DoorbellEntrySize
}

func doorbellCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:offDbCRC])
	return crc32.Update(c, castagnoli, b[offDbCRC+4:])
}

// DecodeDoorbell decodes a doorbell sector (512 or 4096 bytes). An
// all-zero sector is an empty doorbell (Epoch 0). Anything else that is not
// a valid doorbell is an error wrapping ErrDoorbell: a torn or corrupt ring,
// or a sector that is not ours (bytes 0..3 not zero: never write over it).
func DecodeDoorbell(b []byte) (Doorbell, error) {
	var d Doorbell
	if len(b) != 512 && len(b) != 4096 {
		return d, fmt.Errorf("%w: %d-byte doorbell", ErrSectorSize, len(b))
	}
	le := binary.LittleEndian
	if m := le.Uint32(b); m != 0 {
		return d, &FieldError{Field: "doorbell", Offset: 0, Err: ErrNotDoorbell,
			Detail: fmt.Sprintf("bytes 0..3 are 0x%08x, not zero: a sanlock record or foreign data", m)}
	}
	if allZero(b) {
		return d, nil
	}
	if m := le.Uint32(b[offDbMagic:]); m != DoorbellMagic {
		return d, &FieldError{Field: "doorbell_magic", Offset: offDbMagic, Err: ErrDoorbell,
			Detail: fmt.Sprintf("0x%08x, want 0x%08x", m, DoorbellMagic)}
	}
	if v := b[offDbVersion]; v != DoorbellVersion {
		return d, &FieldError{Field: "doorbell_version", Offset: offDbVersion, Err: ErrDoorbell,
			Detail: fmt.Sprintf("%d, want %d", v, DoorbellVersion)}
	}
	if got, want := le.Uint32(b[offDbCRC:]), doorbellCRC(b); got != want {
		return d, &FieldError{Field: "doorbell_crc", Offset: offDbCRC, Err: ErrDoorbell,
			Detail: fmt.Sprintf("stored 0x%08x, computed 0x%08x", got, want)}
	}
	n := int(b[offDbCount])
	if n > DoorbellCapacity(len(b)) {
		return d, &FieldError{Field: "doorbell_count", Offset: offDbCount, Err: ErrDoorbell,
			Detail: fmt.Sprintf("%d entries, a %d-byte sector holds %d", n, len(b), DoorbellCapacity(len(b)))}
	}
	if !allZero(b[10:12]) || !allZero(b[20:24]) || !allZero(b[offDbEntries+n*DoorbellEntrySize:]) {
		return d, &FieldError{Field: "doorbell", Offset: 10, Err: ErrDoorbell, Detail: "reserved or unused bytes are not zero"}
	}
	d.Epoch = le.Uint32(b[offDbEpoch:])
	d.Counter = le.Uint64(b[offDbCounter:])
	if d.Epoch == 0 {
		return d, &FieldError{Field: "doorbell_epoch", Offset: offDbEpoch, Err: ErrDoorbell, Detail: "0"}
	}
	d.Rings = make([]Ring, n)
	for i := range d.Rings {
		p := b[offDbEntries+i*DoorbellEntrySize:]
		d.Rings[i] = Ring{From: uint64(le.Uint16(p)), FromGen: le.Uint16(p[2:]), Counter: uint48(p[4:]), Mask: uint48(p[10:])}
	}
	return d, nil
}

// Encode writes d into b (512 or 4096 bytes): zeros, the header, as many
// entries as fit (the newest), and the CRC. d.Epoch must not be 0.
func (d *Doorbell) Encode(b []byte) error {
	if len(b) != 512 && len(b) != 4096 {
		return fmt.Errorf("%w: cannot encode a %d-byte doorbell", ErrSectorSize, len(b))
	}
	if d.Epoch == 0 {
		return fmt.Errorf("%w: epoch 0", ErrDoorbell)
	}
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[offDbMagic:], DoorbellMagic)
	b[offDbVersion] = DoorbellVersion
	n := min(len(d.Rings), DoorbellCapacity(len(b)))
	b[offDbCount] = byte(n)
	le.PutUint32(b[offDbEpoch:], d.Epoch)
	le.PutUint64(b[offDbCounter:], d.Counter)
	for i, r := range d.Rings[:n] {
		if r.From < 1 || r.From > ackHostMask || r.Counter > MaxSeq || r.Mask >= 1<<DoorbellMaskBits {
			return fmt.Errorf("%w: ring entry %+v", ErrExtRange, r)
		}
		p := b[offDbEntries+i*DoorbellEntrySize:]
		le.PutUint16(p, uint16(r.From))
		le.PutUint16(p[2:], r.FromGen)
		putUint48(p[4:], r.Counter)
		putUint48(p[10:], r.Mask)
	}
	le.PutUint32(b[offDbCRC:], doorbellCRC(b))
	return nil
}

// Add records a ring by from (generation gen) for the targets in mask, as
// the next write of the doorbell: the counter goes up by one, the new entry
// goes first, an older entry of the same ringer whose targets the new one
// covers is dropped, and the oldest entries fall off past capacity.
// epoch is used if the doorbell has none yet (a fresh or damaged sector).
func (d *Doorbell) Add(from uint64, gen uint16, mask uint64, epoch uint32, capacity int) {
	if d.Epoch == 0 {
		d.Epoch, d.Counter, d.Rings = epoch, 0, nil
	}
	d.Counter++
	rings := make([]Ring, 0, min(len(d.Rings)+1, capacity))
	rings = append(rings, Ring{From: from, FromGen: gen, Counter: d.Counter & MaxSeq, Mask: mask})
	for _, r := range d.Rings {
		if len(rings) == capacity {
			break
		}
		if r.From == from && r.FromGen == gen && r.Mask&^mask == 0 {
			continue
		}
		rings = append(rings, r)
	}
	d.Rings = rings
}

// Since returns the rings written after counter last (of the same epoch)
// that name slot, and whether the doorbell may have lost some of those:
// it is full (capacity entries), its oldest entry is newer than last+1, and
// its counter moved further than the entries newer than last account for.
// A ringer's entry replaced by its own newer one (Add) is not a loss, and a
// doorbell that never filled up has lost nothing, so neither makes a gap.
func (d *Doorbell) Since(last uint64, slot, capacity int) (rings []Ring, gap bool) {
	if d.Counter <= last {
		return nil, false
	}
	seen := 0
	for _, r := range d.Rings {
		if r.Counter <= last&MaxSeq {
			break
		}
		seen++
		if r.Mask&(1<<uint(slot)) != 0 {
			rings = append(rings, r)
		}
	}
	full := len(d.Rings) >= capacity && len(d.Rings) > 0
	return rings, full && d.Rings[len(d.Rings)-1].Counter > (last+1)&MaxSeq && uint64(seen) < d.Counter-last
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Spare returns the number of spare sectors after the host records: D, the
// number of doorbells.
func (g Geometry) Spare() int { return g.AlignSize/g.SectorSize - g.MaxHosts }

// DoorbellIndex returns the index (0..Spare()-1) of host id's doorbell.
func (g Geometry) DoorbellIndex(hostID uint64) int { return int((hostID - 1) % uint64(g.Spare())) }

// DoorbellOffset returns the offset, from the start of the area, of
// doorbell index i: always past the last host record.
func (g Geometry) DoorbellOffset(i int) int64 {
	return int64(g.MaxHosts+i) * int64(g.SectorSize)
}

// DoorbellSlot returns host id's bit in its doorbell's target masks.
func (g Geometry) DoorbellSlot(hostID uint64) int { return int((hostID - 1) / uint64(g.Spare())) }

// DoorbellHost returns the host id at slot of doorbell index i (0 if none).
func (g Geometry) DoorbellHost(i, slot int) uint64 {
	h := uint64(slot*g.Spare() + i + 1)
	if h > uint64(g.MaxHosts) {
		return 0
	}
	return h
}
