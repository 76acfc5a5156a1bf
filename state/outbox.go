package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/internal/atomicfile"
)

// OutboxName is the journal's file name in its directory.
const OutboxName = "outbox"

// DefaultKeep is how many finished messages a journal keeps for `result`.
const DefaultKeep = 10000

// Message is a message send accepted, as the journal keeps it.
type Message struct {
	ID      string   `json:"id"` // HOST:ORIGIN:SEQ
	Origin  uint64   `json:"origin"`
	Seq     uint64   `json:"seq"`
	Targets []uint64 `json:"targets"`
	// Generation is the target generation named (0: any).
	Generation uint64    `json:"generation,omitempty"`
	Code       uint64    `json:"code"`
	Data       uint64    `json:"data"`
	QueuedAt   time.Time `json:"queued_at"`
	// Deadline is when the send times out, in wall time: a restarted
	// daemon ends a message whose deadline passed "timeout".
	Deadline time.Time `json:"deadline"`
}

// Fate is what the journal knows of one message.
type Fate struct {
	Message Message
	// Targets are the outcomes recorded so far, in order.
	Targets []callback.TargetStatus
	// Result is set once the message finished.
	Result *callback.SendReply
}

// Waiting returns the targets without an outcome yet.
func (f *Fate) Waiting() []uint64 {
	var out []uint64
	for _, t := range f.Message.Targets {
		done := false
		for _, ts := range f.Targets {
			done = done || ts.HostID == t
		}
		if !done {
			out = append(out, t)
		}
	}
	return out
}

func (f *Fate) has(host uint64) bool {
	for _, t := range f.Targets {
		if t.HostID == host {
			return true
		}
	}
	return false
}

// record is one journal line.
type record struct {
	T      string                 `json:"t"` // send, target, done
	ID     string                 `json:"id"`
	Send   *Message               `json:"send,omitempty"`
	Target *callback.TargetStatus `json:"target,omitempty"`
	Result *callback.SendReply    `json:"result,omitempty"`
}

// Outbox is the journal of one lockspace membership's sends. It is safe
// for concurrent use. Its writes happen in its own goroutine, so that
// Target and Done never block the lockspace loop; Accept returns a channel
// that says when the message is durable (fsync'd).
type Outbox struct {
	path string
	log  *slog.Logger
	keep int

	mu       sync.Mutex
	fates    map[string]*Fate
	order    []string // ids, oldest first (finished ones may be gone from fates)
	finished int      // finished fates in the index
	queue    []queued
	signal   chan struct{}
	closing  bool
	f        *os.File
	lines    int // records in the file
	done     chan struct{}
}

type queued struct {
	rec  record
	sync chan error // non-nil: fsync, then report
}

// OpenOutbox opens (creating) the journal in dir (made mode 0700) and
// loads it. A torn last line (a crash in the middle of an append) is cut
// off; any other unreadable line is skipped with a warning. keep bounds
// the finished messages kept for Lookup (0: DefaultKeep).
func OpenOutbox(dir string, keep int, log *slog.Logger) (*Outbox, error) {
	if keep <= 0 {
		keep = DefaultKeep
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: outbox: %w", err)
	}
	o := &Outbox{path: filepath.Join(dir, OutboxName), log: log, keep: keep, fates: make(map[string]*Fate),
		signal: make(chan struct{}, 1), done: make(chan struct{})}
	good, lines, err := o.load()
	if err != nil {
		return nil, err
	}
	o.lines = lines
	f, err := os.OpenFile(o.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: outbox: %w", err)
	}
	// Cut a torn tail, so that the next append starts a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > good {
		log.Warn("outbox journal: cutting a torn last record (the daemon died while appending it)", "path", o.path,
			"bytes", st.Size()-good)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("state: outbox: %w", err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("state: outbox: %w", err)
	}
	o.f = f
	o.trimLocked()
	if o.lines > o.compactAt() {
		if err := o.compact(); err != nil {
			o.f.Close()
			return nil, err
		}
	}
	go o.writer()
	return o, nil
}

// load reads the journal into the index; it returns the length of the
// part made of whole lines, and the number of records.
func (o *Outbox) load() (good int64, lines int, err error) {
	b, err := os.ReadFile(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("state: outbox: %w", err)
	}
	fates, order, good, lines, bad := parseOutbox(b)
	if bad > 0 {
		o.log.Warn("outbox journal: skipped unreadable records", "path", o.path, "records", bad)
	}
	o.fates, o.order = fates, order
	for _, f := range fates {
		if f.Result != nil {
			o.finished++
		}
	}
	return good, lines, nil
}

// parseOutbox applies the journal's records in order. Records whose
// message is unknown are ignored.
func parseOutbox(b []byte) (fates map[string]*Fate, order []string, good int64, lines, bad int) {
	fates = make(map[string]*Fate)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // torn tail
		}
		line := b[:i]
		b = b[i+1:]
		var r record
		if err := json.Unmarshal(line, &r); err != nil || r.ID == "" {
			if len(b) == 0 {
				break // a torn last line that happens to end in '\n'
			}
			good += int64(i + 1)
			bad++
			continue
		}
		good += int64(i + 1)
		lines++
		switch f := fates[r.ID]; {
		case r.T == "send" && r.Send != nil && f == nil:
			fates[r.ID] = &Fate{Message: *r.Send}
			order = append(order, r.ID)
		case r.T == "target" && r.Target != nil && f != nil && !f.has(r.Target.HostID):
			f.Targets = append(f.Targets, *r.Target)
		case r.T == "done" && r.Result != nil && f != nil:
			f.Result = r.Result
		}
	}
	return fates, order, good, lines, bad
}

// LoadOutbox reads the journal in dir without opening it for writing (a
// lockspace not joined now): every message it knows, oldest first.
func LoadOutbox(dir string) ([]Fate, error) {
	b, err := os.ReadFile(filepath.Join(dir, OutboxName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: outbox: %w", err)
	}
	fates, order, _, _, _ := parseOutbox(b)
	out := make([]Fate, 0, len(order))
	for _, id := range order {
		out = append(out, *fates[id])
	}
	return out, nil
}

// Accept records a new message. The channel receives nil once it is
// durable (written and fsync'd with everything queued before it), or the
// write error.
func (o *Outbox) Accept(m Message) <-chan error {
	ch := make(chan error, 1)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		ch <- errors.New("state: outbox closed")
		return ch
	}
	if _, ok := o.fates[m.ID]; ok {
		ch <- fmt.Errorf("state: outbox: message %s already recorded", m.ID)
		return ch
	}
	o.fates[m.ID] = &Fate{Message: m}
	o.order = append(o.order, m.ID)
	mm := m
	o.enqueueLocked(queued{rec: record{T: "send", ID: m.ID, Send: &mm}, sync: ch})
	return ch
}

// Target records one target's outcome. It never blocks.
func (o *Outbox) Target(id string, t callback.TargetStatus) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.fates[id]
	if f == nil || o.closing || f.has(t.HostID) {
		return
	}
	f.Targets = append(f.Targets, t)
	o.enqueueLocked(queued{rec: record{T: "target", ID: id, Target: &t}})
}

// Done records a message's result. It never blocks.
func (o *Outbox) Done(id string, r callback.SendReply) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.fates[id]
	if f == nil || f.Result != nil || o.closing {
		return
	}
	r.State = "done"
	f.Result = &r
	o.finished++
	o.enqueueLocked(queued{rec: record{T: "done", ID: id, Result: &r}})
	o.trimLocked()
}

func (o *Outbox) enqueueLocked(q queued) {
	o.queue = append(o.queue, q)
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// trimLocked forgets the oldest finished messages beyond keep.
func (o *Outbox) trimLocked() {
	i := 0
	for o.finished > o.keep && i < len(o.order) {
		if f := o.fates[o.order[i]]; f != nil && f.Result != nil {
			delete(o.fates, o.order[i])
			o.finished--
		}
		i++
	}
	// Drop the forgotten ids at the front of order.
	j := 0
	for j < len(o.order) && o.fates[o.order[j]] == nil {
		j++
	}
	o.order = o.order[j:]
}

// Unfinished returns the messages without a result, oldest first.
func (o *Outbox) Unfinished() []Fate {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Fate
	for _, id := range o.order {
		if f := o.fates[id]; f != nil && f.Result == nil {
			out = append(out, *f)
		}
	}
	return out
}

// Lookup returns what the journal knows of message id.
func (o *Outbox) Lookup(id string) (Fate, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.fates[id]
	if f == nil {
		return Fate{}, false
	}
	return *f, true
}

// Close writes what is queued and closes the journal.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		<-o.done
		return nil
	}
	o.closing = true
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
	<-o.done
	return o.f.Close()
}

// writer appends queued records: one write per batch, one fsync per batch
// that holds an Accept (group commit).
func (o *Outbox) writer() {
	defer close(o.done)
	var buf bytes.Buffer
	for {
		<-o.signal
		for {
			o.mu.Lock()
			batch := o.queue
			o.queue = nil
			closing := o.closing
			o.mu.Unlock()
			if len(batch) == 0 {
				if closing {
					o.f.Sync()
					return
				}
				break
			}
			buf.Reset()
			var waiters []chan error
			for _, q := range batch {
				b, _ := json.Marshal(q.rec)
				buf.Write(b)
				buf.WriteByte('\n')
				if q.sync != nil {
					waiters = append(waiters, q.sync)
				}
			}
			_, err := o.f.Write(buf.Bytes())
			if err == nil && len(waiters) > 0 {
				err = o.f.Sync()
			}
			if err != nil {
				err = fmt.Errorf("state: outbox %s: %w", o.path, err)
				o.log.Error("outbox journal write failed", "err", err)
			}
			for _, w := range waiters {
				w <- err
			}
			o.mu.Lock()
			o.lines += len(batch)
			compact := o.lines > o.compactAt()
			o.mu.Unlock()
			if compact {
				if cerr := o.compact(); cerr != nil {
					o.log.Error("outbox journal compaction failed; appending to the old one", "err", cerr)
				}
			}
		}
	}
}

// compactAt is the number of records above which the journal is rewritten.
func (o *Outbox) compactAt() int { return 4*len(o.fates) + 4096 }

// compact rewrites the journal from the index: every message kept, with
// its target outcomes and result. Only the writer goroutine (or Open,
// before it starts) calls it. Records queued meanwhile are appended to the
// new file afterwards; those already reflected in the index come out
// twice, which loading ignores.
func (o *Outbox) compact() error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	n := 0
	o.mu.Lock()
	for _, id := range o.order {
		f := o.fates[id]
		if f == nil {
			continue
		}
		m := f.Message
		enc.Encode(record{T: "send", ID: id, Send: &m})
		n++
		for i := range f.Targets {
			t := f.Targets[i]
			enc.Encode(record{T: "target", ID: id, Target: &t})
			n++
		}
		if f.Result != nil {
			enc.Encode(record{T: "done", ID: id, Result: f.Result})
			n++
		}
	}
	o.mu.Unlock()
	if err := atomicfile.Write(o.path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("state: outbox: compact: %w", err)
	}
	nf, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("state: outbox: compact: %w", err)
	}
	o.f.Close()
	o.f = nf
	o.mu.Lock()
	o.lines = n
	o.mu.Unlock()
	return nil
}

// readLines is a test helper's view of the file: its records.
func readLines(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, sc.Err()
}
