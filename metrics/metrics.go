// Package metrics renders a sanlock-msg daemon's status in the Prometheus
// text exposition format (version 0.0.4), for node_exporter's textfile
// collector or any scraper: `sanlock-msg metrics` prints it.
//
// It imports only package callback: the numbers come from the daemon's
// status op (callback.DaemonStatus) and host_status op, gathered by Gather.
// Each metric is one line in the tables below; a counter added to the
// status JSON becomes a metric by adding a line there.
//
// The format is written by hand: it is a few lines of text per sample, and
// a client library would bring a registry, collectors and their
// dependencies into a tool that prints one snapshot.
package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// Prefix starts every metric name.
const Prefix = "sanlock_msg_"

// Snapshot is what Write renders.
type Snapshot struct {
	// Status is the daemon's status; nil means no daemon answered
	// (only sanlock_msg_up 0 is written).
	Status *callback.DaemonStatus
	// Hosts holds each joined lockspace's hosts, by lockspace name.
	Hosts map[string][]callback.HostStatus
}

// Gather reads a Snapshot from the daemon c is connected to. A lockspace
// whose hosts cannot be read (it is still joining, or was just removed) is
// left out of Hosts.
func Gather(ctx context.Context, c *callback.Client) (Snapshot, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{Status: st, Hosts: make(map[string][]callback.HostStatus)}
	for _, ls := range st.Lockspaces {
		if ls.State != callback.StateJoined {
			continue
		}
		hosts, err := c.HostStatus(ctx, ls.Name)
		if err != nil {
			continue
		}
		s.Hosts[ls.Name] = hosts
	}
	return s, nil
}

// Metric types.
const (
	counter = "counter"
	gauge   = "gauge"
)

// lsMetric is a metric with one sample per lockspace.
type lsMetric struct {
	name, typ, help string
	value           func(ls *callback.LockspaceStatus) float64
}

// msgMetric is a metric with one sample per lockspace that has a message
// side (joined).
type msgMetric struct {
	name, typ, help string
	value           func(m *callback.MessageStatus) float64
}

func i64(v int64) float64 { return float64(v) }

// lockspaceMetrics are read from LockspaceStatus. Add a line to add one.
var lockspaceMetrics = []lsMetric{
	{"host_id", gauge, "Our host id in the lockspace.", func(l *callback.LockspaceStatus) float64 { return float64(l.HostID) }},
	{"generation", gauge, "Our generation (incarnation) in the lockspace; 0 while joining.", func(l *callback.LockspaceStatus) float64 { return float64(l.Generation) }},
	{"io_timeout_seconds", gauge, "The lockspace's io_timeout.", func(l *callback.LockspaceStatus) float64 { return float64(l.IOTimeout) }},
	{"poll_interval_seconds", gauge, "Current doorbell poll interval between renewals (0: renewals only).", func(l *callback.LockspaceStatus) float64 { return l.PollSec }},
	{"last_renewal_timestamp_seconds", gauge, "Unix time of the start of the last successful renewal; 0 before the first.", func(l *callback.LockspaceStatus) float64 { return unix(l.LastRenewal) }},
	{"lease_expiry_timestamp_seconds", gauge, "Unix time the lease expires without another renewal (last renewal + 8*io_timeout); the watchdog is fed for this lockspace until then.", func(l *callback.LockspaceStatus) float64 { return unix(l.Expiry) }},
	{"renewals_total", counter, "Successful renewals of our host id.", func(l *callback.LockspaceStatus) float64 { return i64(l.Renewals) }},
	{"renewal_failures_total", counter, "Failed renewal attempts.", func(l *callback.LockspaceStatus) float64 { return i64(l.RenewFails) }},
	{"area_reads_total", counter, "Reads of the used part or the whole lockspace area (renewals, and scans when a doorbell lost rings).", func(l *callback.LockspaceStatus) float64 { return i64(l.Reads) }},
	{"area_full_scans_total", counter, "Reads of the whole lockspace area.", func(l *callback.LockspaceStatus) float64 { return i64(l.FullScans) }},
	{"sector_writes_total", counter, "Writes of our host sector after the join (renewals and messages).", func(l *callback.LockspaceStatus) float64 { return i64(l.Writes) }},
	{"io_reads_total", counter, "Completed device reads.", func(l *callback.LockspaceStatus) float64 { return i64(l.IOReads) }},
	{"io_writes_total", counter, "Completed device writes.", func(l *callback.LockspaceStatus) float64 { return i64(l.IOWrites) }},
	{"io_read_bytes_total", counter, "Bytes read from the device.", func(l *callback.LockspaceStatus) float64 { return i64(l.ReadBytes) }},
	{"io_write_bytes_total", counter, "Bytes written to the device.", func(l *callback.LockspaceStatus) float64 { return i64(l.WriteBytes) }},
	{"io_read_seconds_total", counter, "Sum of the latencies of completed device reads (divide by io_reads_total for the mean).", func(l *callback.LockspaceStatus) float64 { return l.ReadSec }},
	{"io_write_seconds_total", counter, "Sum of the latencies of completed device writes (divide by io_writes_total for the mean).", func(l *callback.LockspaceStatus) float64 { return l.WriteSec }},
	{"io_read_last_seconds", gauge, "Latency of the last completed device read.", func(l *callback.LockspaceStatus) float64 { return l.LastReadSec }},
	{"io_write_last_seconds", gauge, "Latency of the last completed device write.", func(l *callback.LockspaceStatus) float64 { return l.LastWriteSec }},
	{"io_read_max_seconds", gauge, "Worst device read latency since the join.", func(l *callback.LockspaceStatus) float64 { return l.MaxReadSec }},
	{"io_write_max_seconds", gauge, "Worst device write latency since the join.", func(l *callback.LockspaceStatus) float64 { return l.MaxWriteSec }},
	{"io_timeouts_total", counter, "Device calls that exceeded io_timeout.", func(l *callback.LockspaceStatus) float64 { return i64(l.IOTimeouts) }},
	{"io_errors_total", counter, "Device calls that failed.", func(l *callback.LockspaceStatus) float64 { return i64(l.IOErrors) }},
}

// messageMetrics are read from MessageStatus. Add a line to add one.
var messageMetrics = []msgMetric{
	{"listeners", gauge, "Clients registered for the lockspace's messages.", func(m *callback.MessageStatus) float64 { return float64(m.Listeners) }},
	{"messages_pending", gauge, "Sends queued or in flight.", func(m *callback.MessageStatus) float64 { return float64(m.Pending) }},
	{"resetting", gauge, "1 if this host accepted a WD_RESET and is resetting.", func(m *callback.MessageStatus) float64 { return bool01(m.Resetting) }},
	{"messages_sent_total", counter, "Sends finished (one per message, whatever the number of targets).", func(m *callback.MessageStatus) float64 { return i64(m.Sent) }},
	{"messages_send_ok_total", counter, "Sends finished with every target reached.", func(m *callback.MessageStatus) float64 { return i64(m.SendOK) }},
	{"messages_send_failed_total", counter, "Sends finished with some target not reached (see message_target_outcomes_total).", func(m *callback.MessageStatus) float64 { return i64(m.SendFailed) }},
	{"messages_delivered_total", counter, "Messages received and handed to listeners.", func(m *callback.MessageStatus) float64 { return i64(m.Delivered) }},
	{"messages_no_listener_total", counter, "Messages received with no listener: acked no-listener, not kept.", func(m *callback.MessageStatus) float64 { return i64(m.NoListener) }},
	{"messages_native_delivered_total", counter, "Events from plain sanlock hosts delivered.", func(m *callback.MessageStatus) float64 { return i64(m.NativeDelivered) }},
	{"messages_duplicate_reads_total", counter, "Reads of a message already processed (not delivered again).", func(m *callback.MessageStatus) float64 { return i64(m.Duplicates) }},
	{"messages_wrong_generation_total", counter, "Messages for another incarnation of this host, acked wrong-generation.", func(m *callback.MessageStatus) float64 { return i64(m.WrongGeneration) }},
	{"sectors_bad_extension_total", counter, "Peer sectors ignored because their message extension failed its checksum.", func(m *callback.MessageStatus) float64 { return i64(m.BadExt) }},
	{"sectors_bad_total", counter, "Peer sectors ignored because their leader record failed its checks.", func(m *callback.MessageStatus) float64 { return i64(m.BadSector) }},
	{"ack_evictions_total", counter, "Ack table entries evicted from a full table.", func(m *callback.MessageStatus) float64 { return i64(m.AckEvictions) }},
	{"ack_deferred_total", counter, "Acks that waited for a free ack table entry.", func(m *callback.MessageStatus) float64 { return i64(m.AckDeferred) }},
	{"listener_dropped_records", gauge, "Records dropped for the current listeners because they read too slowly.", func(m *callback.MessageStatus) float64 { return float64(m.Overflows) }},
}

// doorbellMetric is a metric with one sample per lockspace that has a
// doorbell side (joined).
type doorbellMetric struct {
	name, typ, help string
	value           func(d *callback.DoorbellStatus) float64
}

// doorbellMetrics are read from DoorbellStatus. Add a line to add one.
var doorbellMetrics = []doorbellMetric{
	{"doorbell_polls_total", counter, "Reads of our doorbell (one sector) between renewals.", func(d *callback.DoorbellStatus) float64 { return i64(d.Polls) }},
	{"doorbell_poll_errors_total", counter, "Reads of our doorbell that failed.", func(d *callback.DoorbellStatus) float64 { return i64(d.PollErrors) }},
	{"doorbell_bad_total", counter, "Polls that found our doorbell torn or corrupt (ignored).", func(d *callback.DoorbellStatus) float64 { return i64(d.Bad) }},
	{"doorbell_foreign_total", counter, "Polls that found something that is not a doorbell in our doorbell sector (ignored).", func(d *callback.DoorbellStatus) float64 { return i64(d.Foreign) }},
	{"doorbell_rings_received_total", counter, "New rings naming us.", func(d *callback.DoorbellStatus) float64 { return i64(d.RingsReceived) }},
	{"doorbell_gaps_total", counter, "Times our doorbell had lost rings (a scan of the area followed).", func(d *callback.DoorbellStatus) float64 { return i64(d.Gaps) }},
	{"doorbell_rings_written_total", counter, "Doorbells of other hosts written (rung).", func(d *callback.DoorbellStatus) float64 { return i64(d.RingsWritten) }},
	{"doorbell_targets_rung_total", counter, "Targets named by the doorbells written.", func(d *callback.DoorbellStatus) float64 { return i64(d.TargetsRung) }},
	{"doorbell_rings_refused_total", counter, "Rings not written: the sector was not a doorbell and is never written over.", func(d *callback.DoorbellStatus) float64 { return i64(d.RingsRefused) }},
	{"doorbell_recreated_total", counter, "Rings written over a torn or corrupt doorbell, with a new epoch.", func(d *callback.DoorbellStatus) float64 { return i64(d.Recreated) }},
	{"doorbell_ring_errors_total", counter, "Rings that failed or were skipped.", func(d *callback.DoorbellStatus) float64 { return i64(d.RingErrors) }},
	{"planned_reads_total", counter, "Reads of some host sectors between renewals (ringers, awaited targets, our own before a message write).", func(d *callback.DoorbellStatus) float64 { return i64(d.TargetedReads) }},
	{"planned_read_bytes_total", counter, "Bytes of those reads.", func(d *callback.DoorbellStatus) float64 { return i64(d.TargetedBytes) }},
	{"area_scans_total", counter, "Reads of the used area between renewals, when a doorbell lost rings.", func(d *callback.DoorbellStatus) float64 { return i64(d.Scans) }},
}

// Enumerations shown as one 0/1 sample per value, so that a state that
// is not current still has a series.
var (
	lockspaceStates = []string{callback.StateJoining, callback.StateJoined, callback.StateFailed, callback.StateRemoving}
	healthValues    = []string{"ok", "late", "warn", "failed", "stopped"}
	hostStates      = []string{"UNKNOWN", "FREE", "LIVE", "FAIL", "DEAD"}
)

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Write writes s in the text exposition format. Families come in a fixed
// order, each with its HELP and TYPE lines; samples of a family are sorted
// by their labels, and a sample's labels by name.
func Write(w io.Writer, s Snapshot) error {
	e := &encoder{w: bufio.NewWriter(w)}
	e.family("up", gauge, "1 if the daemon answered the status request.")
	if s.Status == nil {
		e.sample("up", nil, 0)
		return e.flush()
	}
	st := s.Status
	e.sample("up", nil, 1)
	e.family("info", gauge, "Constant 1; labels describe the daemon.")
	e.sample("info", labels{"version": st.Version, "host_name": st.HostName, "watchdog": st.Watchdog.Device}, 1)
	e.family("watchdog_feeding", gauge, "1 while the daemon feeds its watchdog.")
	e.sample("watchdog_feeding", nil, bool01(st.Watchdog.Feeding))
	e.family("watchdog_reset", gauge, "1 once a reset is latched: the watchdog is never fed again.")
	e.sample("watchdog_reset", nil, bool01(st.Watchdog.Reset))
	e.family("watchdog_timeout_seconds", gauge, "The watchdog fire timeout W.")
	e.sample("watchdog_timeout_seconds", nil, st.Watchdog.TimeoutSec)
	e.family("client_connections", gauge, "Open client connections, listeners included.")
	e.sample("client_connections", nil, float64(st.Connections))
	e.family("client_connections_refused_total", counter, "Client connections refused over a connection cap since the daemon started.")
	e.sample("client_connections_refused_total", nil, float64(st.ConnectionsRefused))

	lss := make([]*callback.LockspaceStatus, len(st.Lockspaces))
	for i := range st.Lockspaces {
		lss[i] = &st.Lockspaces[i]
	}
	sort.Slice(lss, func(i, j int) bool { return lss[i].Name < lss[j].Name })

	e.family("lockspace_state", gauge, "1 for the lockspace's current state (joining, joined, failed, removing), 0 for the others.")
	for _, ls := range lss {
		for _, v := range lockspaceStates {
			e.sample("lockspace_state", labels{"lockspace": ls.Name, "state": v}, bool01(ls.State == v))
		}
	}
	e.family("renewal_health", gauge, "1 for the current renewal health (ok, late, warn, failed, stopped), 0 for the others; none while joining.")
	for _, ls := range lss {
		if ls.Health == "" {
			continue
		}
		for _, v := range healthValues {
			e.sample("renewal_health", labels{"lockspace": ls.Name, "health": v}, bool01(ls.Health == v))
		}
	}
	e.family("join_wait_seconds", gauge, "Time left in the wait a joining lockspace is in (the previous owner's host_dead, the verify delay).")
	for _, ls := range lss {
		if ls.Wait != nil {
			e.sample("join_wait_seconds", labels{"lockspace": ls.Name}, ls.Wait.LeftSec)
		}
	}
	for _, m := range lockspaceMetrics {
		e.family(m.name, m.typ, m.help)
		for _, ls := range lss {
			if ls.State == callback.StateJoining && m.typ == counter {
				continue // nothing counted yet
			}
			e.sample(m.name, labels{"lockspace": ls.Name}, m.value(ls))
		}
	}
	for _, m := range messageMetrics {
		e.family(m.name, m.typ, m.help)
		for _, ls := range lss {
			if ls.Messages != nil {
				e.sample(m.name, labels{"lockspace": ls.Name}, m.value(ls.Messages))
			}
		}
	}
	for _, m := range doorbellMetrics {
		e.family(m.name, m.typ, m.help)
		for _, ls := range lss {
			if ls.Doorbell != nil {
				e.sample(m.name, labels{"lockspace": ls.Name}, m.value(ls.Doorbell))
			}
		}
	}
	e.family("message_target_outcomes_total", counter,
		"Finished sends per target by outcome (acked, timeout, target-dead, target-left, target-restarted, delivered-unacknowledged, cancelled) and, when acked, the target's status (delivered, no-listener, wrong-generation, resetting, reset-unavailable).")
	for _, ls := range lss {
		if ls.Messages == nil {
			continue
		}
		for k, v := range ls.Messages.TargetOutcomes {
			outcome, status, _ := strings.Cut(k, "/")
			e.sample("message_target_outcomes_total", labels{"lockspace": ls.Name, "outcome": outcome, "status": status}, float64(v))
		}
	}
	e.family("hosts", gauge, "Hosts of the lockspace as this daemon sees them, by sanlock state (UNKNOWN, FREE, LIVE, FAIL, DEAD); ourselves included.")
	for _, ls := range lss {
		hosts, ok := s.Hosts[ls.Name]
		if !ok {
			continue
		}
		n := make(map[string]int)
		for _, h := range hosts {
			n[h.State]++
		}
		for _, v := range hostStates {
			e.sample("hosts", labels{"lockspace": ls.Name, "state": v}, float64(n[v]))
			delete(n, v)
		}
		for v, c := range n { // a state this package does not know yet
			e.sample("hosts", labels{"lockspace": ls.Name, "state": v}, float64(c))
		}
	}
	return e.flush()
}

// labels is a sample's label set.
type labels map[string]string

// encoder writes families and samples; it buffers a family's samples to
// sort them, and remembers the first write error.
type encoder struct {
	w       *bufio.Writer
	cur     string   // the family being written
	samples []string // its sample lines, unsorted
	err     error
}

// family starts family name (without Prefix), ending the previous one.
func (e *encoder) family(name, typ, help string) {
	e.end()
	e.cur = name
	e.printf("# HELP %s%s %s\n# TYPE %s%s %s\n", Prefix, name, escapeHelp(help), Prefix, name, typ)
}

// sample adds a sample to the current family, which must be name.
func (e *encoder) sample(name string, ls labels, v float64) {
	if name != e.cur {
		panic(fmt.Sprintf("metrics: sample of %s in family %s", name, e.cur))
	}
	var b strings.Builder
	b.WriteString(Prefix + name)
	if len(ls) > 0 {
		keys := make([]string, 0, len(ls))
		for k := range ls {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k + `="` + escapeLabel(ls[k]) + `"`)
		}
		b.WriteByte('}')
	}
	b.WriteString(" " + formatValue(v) + "\n")
	e.samples = append(e.samples, b.String())
}

// end writes the current family's samples, sorted.
func (e *encoder) end() {
	sort.Strings(e.samples)
	for _, s := range e.samples {
		e.printf("%s", s)
	}
	e.samples = e.samples[:0]
}

func (e *encoder) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func (e *encoder) flush() error {
	e.end()
	if e.err != nil {
		return fmt.Errorf("metrics: %w", e.err)
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// escapeHelp escapes a HELP text: backslash and newline.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// escapeLabel escapes a label value: backslash, double quote and newline.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// formatValue formats a sample value as Go's ParseFloat reads it, with
// the format's spellings of the special values.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
