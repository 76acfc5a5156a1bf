// Package delta implements sanlock's delta leases: the lockspace area on a
// shared device, the host id lease each host holds in it, the renewals
// that prove the host alive, and the host states every member computes for
// the others. It is byte- and timing-compatible with sanlock 3.x, so real
// sanlock daemons and sanlock-msg daemons can share one lockspace.
//
// Layers:
//
//   - Device is the storage (a block device or file opened with O_DIRECT
//     by OpenFile; MemDevice and FaultDevice for tests). IO bounds every
//     call by a timeout and retires the buffers of calls that time out.
//   - Init, Probe and Area read and write whole areas (direct init, dump).
//   - Acquirer (the acquire algorithm), Hosts (host states) and Timeouts
//     (every timeout as a formula of io_timeout) are pure: they take time
//     as a value and do no I/O, so tests run them with simulated time.
//   - Lockspace drives them: Join acquires the host id, then one goroutine
//     renews it on sanlock's schedule and, between renewals, works for a
//     Messenger (the message protocol): it reads our doorbell (a spare
//     sector of the area) every poll interval, reads the host sectors the
//     Messenger plans, writes our sector when it has something to say, and
//     rings other hosts' doorbells, all within sanlock's read rate (loop.go).
//     Start and Step run the same loop without a goroutine, for
//     deterministic simulations.
//
// Usage:
//
//	dev, err := delta.OpenFile("/dev/sdb", false)
//	io := delta.NewIO(dev, clock.Real{})
//	ls, err := delta.Join(ctx, io, delta.Config{Name: "LS", HostID: 1, IOTimeout: 10 * time.Second})
//	...
//	err = ls.Release(ctx) // or ls.Close() to stop renewing without releasing
//
// A Lockspace that cannot renew for renewal_fail (8·io_timeout) stops
// writing for good (Err returns ErrRenewalFailed): from then on only the
// watchdog stands between the host and its peers' assumption that it was
// reset.
package delta
