package leader

import "fmt"

// Bitmap offsets: the host bitmap occupies bytes 256..511 of every sector,
// whatever the sector size.
const (
	OffBitmap  = 256
	BitmapSize = 256
)

// Bitmap is the 256-byte host bitmap of a sector: bit h-1 (LSB first) is
// set when the sector's owner addresses host id h.
type Bitmap [BitmapSize]byte

// Test reports whether host id h's bit is set. Ids outside 1..2048 are never
// set.
func (b *Bitmap) Test(h uint64) bool {
	if h < 1 || h > BitmapHosts {
		return false
	}
	return b[(h-1)/8]&(1<<((h-1)%8)) != 0
}

// Set sets host id h's bit. It panics if h is outside 1..2048: the caller
// validates host ids.
func (b *Bitmap) Set(h uint64) {
	if h < 1 || h > BitmapHosts {
		panic(fmt.Sprintf("leader: bitmap host id %d out of range", h))
	}
	b[(h-1)/8] |= 1 << ((h - 1) % 8)
}

// Clear clears host id h's bit; out-of-range ids are ignored.
func (b *Bitmap) Clear(h uint64) {
	if h < 1 || h > BitmapHosts {
		return
	}
	b[(h-1)/8] &^= 1 << ((h - 1) % 8)
}

// Hosts lists the host ids whose bits are set, in increasing order.
func (b *Bitmap) Hosts() []uint64 {
	var ids []uint64
	for i, c := range b {
		for c != 0 {
			bit := uint64(0)
			for c&(1<<bit) == 0 {
				bit++
			}
			ids = append(ids, uint64(i)*8+bit+1)
			c &^= 1 << bit
		}
	}
	return ids
}

// Empty reports whether no bit is set.
func (b *Bitmap) Empty() bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Count returns the number of bits set.
func (b *Bitmap) Count() int {
	n := 0
	for _, c := range b {
		for ; c != 0; c &= c - 1 {
			n++
		}
	}
	return n
}
