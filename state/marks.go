package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// MarksName is the receive marks' file name in their directory.
const MarksName = "marks"

// maxOriginsKept bounds the origins remembered per sender.
const maxOriginsKept = 8

// Marks are a receiver's memory beyond its sector: the messages it handed
// to listeners (so that one delivered again after a crash, because its ack
// never reached the disk, is flagged redelivered) and the ack entries that
// left its on-disk table (so that a restart still recognises those
// messages). Appends are plain writes, not fsync'd: they survive the
// daemon's crash (kill -9), not the machine's; the on-disk ack table is
// what survives a power loss. It is safe for concurrent use.
type Marks struct {
	path string

	mu     sync.Mutex
	f      *os.File
	handed map[originKey]uint64     // highest seq handed out
	forgot map[originKey]leader.Ack // highest ack forgotten
	lines  int
}

type originKey struct {
	host   uint64
	origin uint64 // full generation for handed; low 16 bits for forgot
}

type markRecord struct {
	T      string `json:"t"` // handed, forgot
	Host   uint64 `json:"host"`
	Origin uint64 `json:"origin"`
	Seq    uint64 `json:"seq"`
	Status uint8  `json:"status,omitempty"`
}

// OpenMarks opens (creating) the marks in dir and loads them.
func OpenMarks(dir string) (*Marks, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: marks: %w", err)
	}
	m := &Marks{path: filepath.Join(dir, MarksName), handed: make(map[originKey]uint64), forgot: make(map[originKey]leader.Ack)}
	b, err := os.ReadFile(m.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("state: marks: %w", err)
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		var r markRecord
		if json.Unmarshal(line, &r) == nil {
			m.apply(r)
		}
	}
	m.prune()
	// Start from a compact file: it also drops a torn tail.
	if err := m.rewriteLocked(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Marks) apply(r markRecord) {
	if r.Host == 0 {
		return
	}
	switch r.T {
	case "handed":
		k := originKey{r.Host, r.Origin}
		m.handed[k] = max(m.handed[k], r.Seq)
	case "forgot":
		k := originKey{r.Host, uint64(uint16(r.Origin))}
		if a, ok := m.forgot[k]; !ok || r.Seq > a.Seq {
			m.forgot[k] = leader.Ack{HostID: r.Host, Gen16: uint16(r.Origin), Seq: r.Seq, Status: leader.AckStatus(r.Status)}
		}
	}
}

// prune keeps the maxOriginsKept highest origins per sender.
func (m *Marks) prune() {
	byHost := map[uint64][]uint64{}
	for k := range m.handed {
		byHost[k.host] = append(byHost[k.host], k.origin)
	}
	for h, origins := range byHost {
		if len(origins) <= maxOriginsKept {
			continue
		}
		sort.Slice(origins, func(i, j int) bool { return origins[i] > origins[j] })
		for _, o := range origins[maxOriginsKept:] {
			delete(m.handed, originKey{h, o})
		}
	}
	n := map[uint64]int{}
	for k := range m.forgot {
		n[k.host]++
	}
	for k := range m.forgot {
		if n[k.host] > maxOriginsKept {
			delete(m.forgot, k)
			n[k.host]--
		}
	}
}

// rewriteLocked replaces the file with the current marks.
func (m *Marks) rewriteLocked() error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	n := 0
	for k, seq := range m.handed {
		enc.Encode(markRecord{T: "handed", Host: k.host, Origin: k.origin, Seq: seq})
		n++
	}
	for _, a := range m.forgot {
		enc.Encode(markRecord{T: "forgot", Host: a.HostID, Origin: uint64(a.Gen16), Seq: a.Seq, Status: uint8(a.Status)})
		n++
	}
	if err := writeAtomic(m.path, buf.Bytes()); err != nil {
		return fmt.Errorf("state: marks: %w", err)
	}
	f, err := os.OpenFile(m.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("state: marks: %w", err)
	}
	if m.f != nil {
		m.f.Close()
	}
	m.f, m.lines = f, n
	return nil
}

// Handed returns the handed-out marks, for hostmsg.Config.Handed.
func (m *Marks) Handed() []hostmsg.MsgID {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]hostmsg.MsgID, 0, len(m.handed))
	for k, seq := range m.handed {
		out = append(out, hostmsg.MsgID{Host: k.host, Origin: k.origin, Seq: seq})
	}
	return out
}

// Forgotten returns the acks that left the table, for
// hostmsg.Config.Remembered.
func (m *Marks) Forgotten() []leader.Ack {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]leader.Ack, 0, len(m.forgot))
	for _, a := range m.forgot {
		out = append(out, a)
	}
	return out
}

// Record appends marks: messages about to be handed to listeners, and
// acks that left the table. Call it before handing the messages out.
func (m *Marks) Record(handed []hostmsg.MsgID, forgot []leader.Ack) error {
	if len(handed) == 0 && len(forgot) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range handed {
		r := markRecord{T: "handed", Host: id.Host, Origin: id.Origin, Seq: id.Seq}
		m.apply(r)
		enc.Encode(r)
	}
	for _, a := range forgot {
		r := markRecord{T: "forgot", Host: a.HostID, Origin: uint64(a.Gen16), Seq: a.Seq, Status: uint8(a.Status)}
		m.apply(r)
		enc.Encode(r)
	}
	m.lines += len(handed) + len(forgot)
	if _, err := m.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("state: marks %s: %w", m.path, err)
	}
	if m.lines > 4*(len(m.handed)+len(m.forgot))+4096 {
		m.prune()
		return m.rewriteLocked()
	}
	return nil
}

// Close closes the file.
func (m *Marks) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.f.Close()
}
