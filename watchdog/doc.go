// Package watchdog fences a host through its watchdog timer: the daemon
// feeds the watchdog only while every lockspace it holds renews in time, and
// stops feeding, so that the machine resets, when renewals fail or another
// host sends it a WD_RESET message.
//
// # Devices
//
// A Device is a kernel watchdog (Hardware, opened with Open, using the
// WDIOC_* ioctls and the magic close 'V'), a Fake that logs its events to a
// file and never resets anything, or None. OpenSpec maps a --watchdog flag
// value ("none", "fake:FILE" or a device path) to one of them.
//
// Opening a real device arms it. Linux watchdogs are single-open: if wdmd,
// sbd, corosync or a watchdog daemon already holds it, Open fails with
// ErrBusy and names the holder. Only Close disarms it; a process that exits
// any other way leaves it armed and the machine resets.
//
// # Policy and Keeper
//
// Policy is the pure rule: feed at time t only if no reset is latched and t
// is before every lockspace's expiry (last successful renewal start +
// 8 × io_timeout). With a watchdog timeout W, a host whose renewals stop is
// reset at most 8 × io_timeout + W after its last successful renewal, which
// is sanlock's host_dead time. Keeper owns the device, feeds it every
// interval while the Policy allows, and logs exactly why feeding stopped.
//
// # Usage
//
//	pol := watchdog.NewPolicy()
//	if reason, ok, err := watchdog.ReadMarker(runDir); err != nil {
//		return err
//	} else if ok {
//		// A reset was pending when the daemon last stopped: never feed again.
//		pol.Reset("pending from before restart: " + reason)
//	}
//	dev, err := watchdog.OpenSpec(flagWatchdog, 60*time.Second, nil)
//	if err != nil {
//		return err
//	}
//	k := watchdog.NewKeeper(dev, pol, nil, time.Second, logger)
//	k.Start()
//
//	// After each successful renewal of lockspace ls:
//	k.SetExpiry(ls, renewalStart.Add(8*ioTimeout))
//
//	// On WD_RESET:
//	watchdog.WriteMarker(runDir, "WD_RESET from host 3 in ls1")
//	fireSoon := k.ResetNow("WD_RESET from host 3 in ls1")
//	// ... write the "resetting" ack to disk ...
//	fireSoon() // timeout 1 s: the host resets about a second later
//
//	// Clean shutdown, after every lockspace is released:
//	k.Remove(ls)
//	err = k.Stop(true) // disarms with the magic close
//
// # Caveats
//
// Fencing is only as good as the device: softdog (Identity "Software
// Watchdog") is reset by the kernel that may be the thing that hangs, and a
// driver may accept a different timeout than requested, so compare
// Hardware.Timeout with the timeout every host assumes. The reset marker
// lives in the run directory, on a tmpfs, so it is gone after the reboot it
// announced; on a persistent directory it would have to be removed by hand.
package watchdog
