package leader

// The sanlock-msg marker: bytes 160..167 of the leader record (sanlock's
// unused1), which sanlock's checksum covers and no sanlock code reads or
// writes on its own (sanlock-format.md §2: an acquire keeps every field it
// does not set, renewals start from the record read, init writes 0).
//
//	160..163  MarkerMagic ("SMsg")
//	164..167  low 32 bits of the record's owner_generation
//
// Binding the marker to the generation matters: when a sanlock daemon
// acquires a host id last held by sanlock-msg it keeps unused1 as it was
// but adds one to the generation, so the inherited marker no longer
// matches and the sector reads as a plain sanlock host again (Stale).
const (
	OffMarker = OffUnused1
	// MarkerMagic is the low half of unused1 in a sector written by
	// sanlock-msg: the bytes "SMsg".
	MarkerMagic uint32 = 'S' | 'M'<<8 | 's'<<16 | 'g'<<24
)

// markerFor returns the unused1 value that marks a record of generation gen.
func markerFor(gen uint64) uint64 { return uint64(MarkerMagic) | uint64(uint32(gen))<<32 }

// Mark sets the sanlock-msg marker for r's current owner generation. Call it
// after the generation is final and before Seal.
func (r *Record) Mark() { r.Unused1 = markerFor(r.OwnerGeneration) }

// Marked reports whether r was written by sanlock-msg: unused1 holds the
// marker of r's own generation.
func (r *Record) Marked() bool { return r.Unused1 == markerFor(r.OwnerGeneration) }

// StaleMarker reports whether r carries a marker of another generation:
// a sanlock daemon took over a host id that sanlock-msg held (it keeps
// unused1 and adds one to the generation). Such a record is sanlock's.
func (r *Record) StaleMarker() bool {
	return uint32(r.Unused1) == MarkerMagic && !r.Marked()
}
