package daemon

import (
	"fmt"
	"net"
	"os"
)

// Service manager notifications (sd_notify(3)).
const (
	notifyReady    = "READY=1"
	notifyStopping = "STOPPING=1"
)

// sdNotify sends state to the service manager's $NOTIFY_SOCKET, as
// go-systemd's SdNotify: (false, nil) when the variable is unset (not run
// by systemd, not an error), (true, nil) when sent, (false, err) when
// sending failed.
func sdNotify(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("daemon: sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("daemon: sd_notify: %w", err)
	}
	return true, nil
}
