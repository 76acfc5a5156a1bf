// Package state keeps what the daemon must remember across its own
// crashes and restarts, in its state directory (--state-dir, default
// /var/lib/sanlock-msg, mode 0700):
//
//	lock                                   flock: one daemon per state directory
//	lockspaces/NAME/host-ID/outbox         the outbox journal (Outbox)
//	lockspaces/NAME/host-ID/marks          the receive marks (Marks)
//
// NAME is the lockspace name with every byte outside [A-Za-z0-9_-]
// written %XX. Both files are JSON lines, appended to and compacted with
// atomicfile's discipline (temporary file, fsync, rename, fsync of the
// directory).
//
// The outbox journal makes `send` durable: a message is answered (its id
// given to the client) only once its "send" record is fsync'd; each
// target's outcome and the final result follow as "target" and "done"
// records. A daemon that restarts resends every message without a "done"
// record, under its original identity, to the targets still waiting, and
// answers `result ID` from the journal. The receive marks let a restarted
// receiver recognise what its previous incarnation handed to listeners
// (so a redelivery is flagged) and the acks that left its on-disk table.
package state
