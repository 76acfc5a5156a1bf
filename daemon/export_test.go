package daemon

import "errors"

// ErrKilled is what Run returns after Kill.
var ErrKilled = errors.New("daemon: killed by the test")

// Kill stops the daemon as kill -9 would, as far as the storage and the
// state directory can tell: lockspaces stop renewing without release and
// sends stay unfinished in the journal. The watchdog keeper stops too
// (a killed process feeds nothing), leaving the device as it is.
func (d *Daemon) Kill() {
	d.halt(ErrKilled)
	d.keeper.Stop(false)
}
