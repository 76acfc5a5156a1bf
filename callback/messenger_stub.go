package callback

import "sanlock-msg/delta"

// Placeholders until the message protocol is wired in (messenger.go
// replaces this file).

// newMessenger returns the Messenger that rides on lockspace name's loop.
func (d *Daemon) newMessenger(name string, spec delta.Spec) delta.Messenger { return nil }

// registerMessageOps adds the message ops (send, register, ...) to s.
func (d *Daemon) registerMessageOps(s *Server) {}

// lockspaceGone is called once a lockspace is forgotten (removed, failed
// and removed, or the daemon stopping), after its loop has stopped.
func (d *Daemon) lockspaceGone(name string) {}
