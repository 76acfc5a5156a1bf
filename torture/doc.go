// Package torture is issue 11's crash torture and its history checker.
//
// The torture (torture_test.go) runs six sanlock-msg daemons on one
// image, as real processes, while clients send streams of messages (with
// and without --wait, to one host and to several) and listen (with and
// without --manual-ack), and kills daemons, listeners and waiting senders
// with SIGKILL at random points; each killed daemon is restarted and joins
// again, its listeners register again. Every client writes what it saw to
// a log of Events (accepted ids, results, records, kills, joins); at the
// end, once every daemon has rejoined and nothing is pending, the final
// result of every message is added.
//
// Check reads such a history and asserts the delivery promises of the
// manual page's DELIVERY section: nothing lost (every accepted message
// ends delivered to a listener of each target, or reported failed with a
// reason), nothing duplicated outside the documented crash window (a
// second delivery of an id carries the redelivered flag and follows a
// kill of that receiver that happened before the sender saw its ack),
// each sender's messages in order, and every send ended.
//
// The long run is a documented command (see DEVELOPERS.md):
//
//	go test ./torture -run TestTorture -torture.kills 200 -timeout 60m -v
package torture
