package torture

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// Kinds of Event.
const (
	// KindJoin: host Host's daemon incarnation Incarnation joined the
	// lockspace with generation Generation.
	KindJoin = "join"
	// KindKill: a SIGKILL, logged just before it was sent. What is
	// "daemon" (of Host), "listener" (Client, process Op; Manual says
	// whether it acked by hand) or "sender" (a send --wait of Client,
	// attempt Op).
	KindKill = "kill"
	// KindAttempt: sender client Client is about to run its attempt Op:
	// a send from host Host to Targets with Data, with --wait or not.
	KindAttempt = "attempt"
	// KindAccept: the send printed the message's ID: it was accepted.
	KindAccept = "accept"
	// KindResult: a send --wait printed its Result.
	KindResult = "result"
	// KindEnd: the send command exited with Exit (Err: its stderr).
	KindEnd = "end"
	// KindListener: listener process Op of slot Client on host Host
	// started (What "start") or exited (What "exit", Exit, Err).
	KindListener = "listener"
	// KindRecord: that listener printed record Rec.
	KindRecord = "record"
	// KindFinal: the final state of message ID sent from Host, asked
	// once every daemon had rejoined and nothing was pending: Result (nil
	// if the daemon did not know the id: Err says why), and Targets and
	// Data as the sender's journal has them (for ids no client saw).
	KindFinal = "final"
)

// What of a KindKill event.
const (
	KillDaemon   = "daemon"
	KillListener = "listener"
	KillSender   = "sender"
)

// Event is one line of a client's log. Fields that do not apply to its
// Kind are zero.
type Event struct {
	// T is when the client saw it (a record: when the listener's line was
	// read; a kill: just before the signal).
	T    time.Time `json:"t"`
	Kind string    `json:"kind"`
	// Host is the host id the event is about: the sender of an attempt,
	// accept, result, end or final; the receiver of a record; the host
	// whose process a kill or join is about.
	Host uint64 `json:"host,omitempty"`
	// Client names the sender client or the listener slot.
	Client string `json:"client,omitempty"`
	// Op numbers a sender client's attempts, and a listener slot's
	// processes, from 1.
	Op          int                 `json:"op,omitempty"`
	What        string              `json:"what,omitempty"`
	Targets     []uint64            `json:"targets,omitempty"`
	Wait        bool                `json:"wait,omitempty"`
	Manual      bool                `json:"manual,omitempty"`
	Data        uint64              `json:"data,omitempty"`
	ID          string              `json:"id,omitempty"`
	Incarnation int                 `json:"incarnation,omitempty"`
	Generation  uint64              `json:"generation,omitempty"`
	Exit        int                 `json:"exit,omitempty"`
	Err         string              `json:"err,omitempty"`
	Rec         *callback.Record    `json:"rec,omitempty"`
	Result      *callback.SendReply `json:"result,omitempty"`
}

// Log appends Events to a JSON-lines file; it is safe for concurrent use.
// Each line is written with one write(2), so a log read while it is being
// written has only whole lines but perhaps the last.
type Log struct {
	mu sync.Mutex
	f  *os.File
}

// LogExt is the file name extension of the logs Read reads.
const LogExt = ".jsonl"

// CreateLog creates the log file dir/NAME.jsonl.
func CreateLog(dir, name string) (*Log, error) {
	f, err := os.OpenFile(filepath.Join(dir, name+LogExt), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("torture: %w", err)
	}
	return &Log{f: f}, nil
}

// Add appends e, stamped with the current time if e.T is zero, and
// returns that time.
func (l *Log) Add(e Event) time.Time {
	if e.T.IsZero() {
		e.T = time.Now()
	}
	b, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("torture: event %+v: %v", e, err)) // only plain fields: cannot happen
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		panic(fmt.Sprintf("torture: log %s: %v", l.f.Name(), err))
	}
	return e.T
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// Read reads every log (*.jsonl) in dir and returns their events, each
// log's in its order, merged by time.
func Read(dir string) ([]Event, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*"+LogExt))
	if err != nil {
		return nil, fmt.Errorf("torture: %w", err)
	}
	sort.Strings(paths)
	var all []Event
	for _, p := range paths {
		evs, err := readLog(p)
		if err != nil {
			return nil, err
		}
		all = append(all, evs...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].T.Before(all[j].T) })
	return all, nil
}

func readLog(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("torture: %w", err)
	}
	defer f.Close()
	var evs []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("torture: %s:%d: %w", path, n, err)
		}
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("torture: %s: %w", path, err)
	}
	return evs, nil
}
