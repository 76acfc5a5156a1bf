package hostmsg

import (
	"fmt"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// Config configures a Machine for one lockspace membership (one host id
// and generation). The driver builds a new Machine after every join.
type Config struct {
	// HostID and Generation are our identity in the lockspace.
	HostID     uint64
	Generation uint64
	// SectorSize (512 or 4096) fixes the ack table capacity.
	SectorSize int
	// MaxHosts bounds target host ids (the lockspace's max_hosts).
	MaxHosts int
	// SendTimeout bounds a send whose Message has no Timeout. Default:
	// 2 minutes.
	SendTimeout time.Duration
	// AckHold is how long an ack must have been on disk before a full ack
	// table may evict it for another sender (the evicted sender is acked
	// again later, so this trades latency, never correctness). Default 1 s.
	AckHold time.Duration
	// ActiveWindow keeps Busy and Plan.Fast true this long after the last
	// delivery or send (Plan.Fast at least four doorbell poll intervals),
	// so the next message of a conversation is found at the fast doorbell
	// poll. Default 2 s.
	ActiveWindow time.Duration
	// MaxOutbox bounds the number of queued sends. Default 1024.
	MaxOutbox int
	// Doorbells is the number of doorbell sectors of the area
	// (leader.Geometry.Spare): host h rings at doorbell (h-1) mod
	// Doorbells. 0 disables doorbells: no rings, and the driver must read
	// the area often enough to find messages.
	Doorbells int
	// RingRetry is the first interval between rings of a target whose ack
	// is missing; each next one doubles, capped at the target's renewal
	// interval. Default 500 ms.
	RingRetry time.Duration
	// RingJitter stretches each target's ring schedule by up to this
	// fraction, by a hash of sender, target and seq, so that senders whose
	// rings collided in one doorbell (a fan-in) do not ring it together
	// again. Default DefaultRingJitter; negative: none.
	RingJitter float64
	// CanReset says a watchdog can reset this host. Without one a WD_RESET
	// is acked "reset-unavailable" (and still delivered to listeners).
	CanReset bool
	// SeqWindow bounds a caller's seq: at most this far above the last
	// one (default DefaultSeqWindow), so that no caller can exhaust the
	// 48-bit space in a few sends.
	SeqWindow uint64
	// ListenerGrace: for this long after the first Observe, a message that
	// finds no listener is left unprocessed on its sender's disk instead of
	// being acked "no-listener", so that the listeners of a restarting
	// receiver can register first (default 10 s; negative: none).
	ListenerGrace time.Duration
	// Inherited is the ack table our previous incarnation left in our
	// sector (delta.Acquirer.Previous), if that sector was ours and
	// intact. The machine starts from it: messages it acked are not
	// delivered again, and its entries stay in our table for senders that
	// still wait for them.
	Inherited []leader.Ack
	// Remembered are further ack entries an earlier incarnation kept
	// beyond its table (evicted or replaced, see Ready.Forgotten): they
	// seed the receive state only.
	Remembered []leader.Ack
	// Handed are messages an earlier incarnation handed to its listeners
	// (the driver notes each Delivery before handing it out): if one comes
	// again because its ack never reached the disk, it is delivered with
	// Redelivered set.
	Handed []MsgID
}

func (c *Config) validate() error {
	if c.HostID < 1 || c.HostID > leader.BitmapHosts {
		return fmt.Errorf("hostmsg: host id %d out of range", c.HostID)
	}
	if c.Generation == 0 {
		return fmt.Errorf("hostmsg: generation 0 (not joined)")
	}
	if c.SectorSize != 512 && c.SectorSize != 4096 {
		return fmt.Errorf("hostmsg: sector size %d", c.SectorSize)
	}
	if c.MaxHosts == 0 {
		c.MaxHosts = leader.MaxHostID
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 2 * time.Minute
	}
	if c.AckHold == 0 {
		c.AckHold = time.Second
	}
	if c.ActiveWindow == 0 {
		c.ActiveWindow = 2 * time.Second
	}
	if c.Doorbells < 0 || (c.Doorbells > 0 && (c.HostID-1)/uint64(c.Doorbells) >= leader.DoorbellMaskBits) {
		return fmt.Errorf("hostmsg: host id %d has no bit in %d doorbells", c.HostID, c.Doorbells)
	}
	if c.RingRetry == 0 {
		c.RingRetry = DefaultRingRetry
	}
	if c.RingJitter == 0 {
		c.RingJitter = DefaultRingJitter
	}
	if c.MaxOutbox == 0 {
		c.MaxOutbox = 1024
	}
	if c.SeqWindow == 0 {
		c.SeqWindow = DefaultSeqWindow
	}
	if c.ListenerGrace == 0 {
		c.ListenerGrace = 10 * time.Second
	}
	if len(c.Inherited) > leader.AckCapacity(c.SectorSize) {
		return fmt.Errorf("hostmsg: %d inherited acks, a %d-byte sector holds %d", len(c.Inherited), c.SectorSize, leader.AckCapacity(c.SectorSize))
	}
	return nil
}

// DefaultRingRetry is Config.RingRetry's default.
const DefaultRingRetry = 500 * time.Millisecond

// DefaultRingJitter is Config.RingJitter's default.
const DefaultRingJitter = 0.5

// PeerState is a host's liveness as the driver computes it (sanlock's
// host states; delta.HostState has the same values).
type PeerState int

// Peer states.
const (
	PeerUnknown PeerState = 1
	PeerFree    PeerState = 2
	PeerLive    PeerState = 3
	PeerFail    PeerState = 4
	PeerDead    PeerState = 5
)

// Peer is one host sector as just read.
type Peer struct {
	HostID uint64
	Sector *leader.Sector
	State  PeerState
	// Bad is set when the leader record failed its checks (magic,
	// version, lockspace name, checksum): nothing in it is acted on.
	Bad bool
}
