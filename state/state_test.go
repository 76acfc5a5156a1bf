package state

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

func msg(seq uint64) Message {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return Message{ID: fmt.Sprintf("1:5:%d", seq), Origin: 5, Seq: seq, Targets: []uint64{2, 3}, Code: 1 << 16, Data: seq,
		QueuedAt: t0, Deadline: t0.Add(time.Minute)}
}

func openOutbox(t *testing.T, dir string, keep int) *Outbox {
	t.Helper()
	o, err := OpenOutbox(dir, keep, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestOutboxRestart: what was accepted, per-target outcomes and results
// survive a close (or a crash: the file is all there is) and a reopen.
func TestOutboxRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ls", "host-1")
	o := openOutbox(t, dir, 0)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := <-o.Accept(msg(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-o.Accept(msg(2)); err == nil {
		t.Error("a second Accept of the same id succeeded")
	}
	at := time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)
	o.Target("1:5:1", callback.TargetStatus{HostID: 2, Outcome: "acked", Status: "delivered", OK: true, At: at})
	o.Target("1:5:1", callback.TargetStatus{HostID: 3, Outcome: "acked", Status: "delivered", OK: true, At: at})
	o.Done("1:5:1", callback.SendReply{ID: "1:5:1", Seq: 1, Done: true, OK: true})
	o.Target("1:5:2", callback.TargetStatus{HostID: 3, Outcome: "timeout", At: at})
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("journal directory mode %v, want 0700", st.Mode().Perm())
	}

	o = openOutbox(t, dir, 0)
	defer o.Close()
	un := o.Unfinished()
	if len(un) != 2 || un[0].Message.ID != "1:5:2" || un[1].Message.ID != "1:5:3" {
		t.Fatalf("unfinished %+v, want 1:5:2 and 1:5:3 in order", un)
	}
	if w := un[0].Waiting(); fmt.Sprint(w) != "[2]" {
		t.Errorf("1:5:2 waits for %v, want [2] (3 timed out)", w)
	}
	if w := un[1].Waiting(); fmt.Sprint(w) != "[2 3]" {
		t.Errorf("1:5:3 waits for %v", w)
	}
	if un[1].Message.Deadline != msg(3).Deadline || un[1].Message.Data != 3 {
		t.Errorf("message %+v, want %+v", un[1].Message, msg(3))
	}
	f, ok := o.Lookup("1:5:1")
	if !ok || f.Result == nil || !f.Result.OK || f.Result.State != "done" || len(f.Targets) != 2 {
		t.Fatalf("Lookup(1:5:1) = %+v, %v", f, ok)
	}
	if _, ok := o.Lookup("1:5:9"); ok {
		t.Error("Lookup of an unknown id succeeded")
	}
	fs, err := LoadOutbox(dir)
	if err != nil || len(fs) != 3 {
		t.Fatalf("LoadOutbox: %d fates, %v", len(fs), err)
	}
}

// TestOutboxTornTail: a record cut short by a crash is dropped, and the
// journal goes on from the last whole record.
func TestOutboxTornTail(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, 0)
	if err := <-o.Accept(msg(1)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	path := filepath.Join(dir, OutboxName)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"t":"send","id":"1:5:2","send":{"id":"1:5:2","ori`)
	f.Close()
	o = openOutbox(t, dir, 0)
	if err := <-o.Accept(msg(3)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	recs, err := readLines(path)
	if err != nil {
		t.Fatalf("journal unreadable after a torn tail: %v", err)
	}
	if len(recs) != 2 || recs[0].ID != "1:5:1" || recs[1].ID != "1:5:3" {
		t.Fatalf("records %+v, want 1:5:1 and 1:5:3", recs)
	}
}

// TestOutboxKeepAndCompact: finished messages beyond keep are forgotten,
// unfinished ones never; compaction keeps the journal small and loadable.
func TestOutboxKeepAndCompact(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, 100)
	const n = 3000
	for seq := uint64(1); seq <= n; seq++ {
		if err := <-o.Accept(msg(seq)); err != nil {
			t.Fatal(err)
		}
		if seq%10 != 0 { // every tenth stays unfinished
			o.Target(msg(seq).ID, callback.TargetStatus{HostID: 2, Outcome: "acked", Status: "delivered", OK: true})
			o.Done(msg(seq).ID, callback.SendReply{ID: msg(seq).ID, Seq: seq, Done: true, OK: true})
		}
	}
	o.Close()
	recs, _ := readLines(filepath.Join(dir, OutboxName))
	if len(recs) > 3*n {
		t.Errorf("%d records in the journal after %d messages: not compacted", len(recs), n)
	}
	o = openOutbox(t, dir, 100)
	defer o.Close()
	if un := o.Unfinished(); len(un) != n/10 {
		t.Errorf("%d unfinished, want %d", len(un), n/10)
	}
	if _, ok := o.Lookup(msg(n - 1).ID); !ok {
		t.Errorf("the newest finished message is forgotten")
	}
	if _, ok := o.Lookup(msg(1).ID); ok {
		t.Errorf("the oldest finished message is still kept beyond keep")
	}
	if _, ok := o.Lookup(msg(10).ID); !ok {
		t.Errorf("an unfinished message was forgotten")
	}
}

// TestOutboxConcurrent: concurrent Accepts are all durable and recorded
// once (group commit).
func TestOutboxConcurrent(t *testing.T) {
	dir := t.TempDir()
	o := openOutbox(t, dir, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 1; i <= 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- <-o.Accept(msg(uint64(i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	recs, _ := readLines(filepath.Join(dir, OutboxName))
	if len(recs) != 200 {
		t.Fatalf("%d records, want 200", len(recs))
	}
}

// TestMarks: marks survive a reopen, keep the highest seq per sender and
// origin, and stay bounded.
func TestMarks(t *testing.T) {
	dir := t.TempDir()
	m, err := OpenMarks(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Record([]hostmsg.MsgID{{Host: 2, Origin: 7, Seq: 5}, {Host: 2, Origin: 7, Seq: 4}, {Host: 3, Origin: 1, Seq: 9}},
		[]leader.Ack{{HostID: 4, Gen16: 2, Seq: 11, Status: leader.StatusDelivered}})
	if err != nil {
		t.Fatal(err)
	}
	for o := uint64(1); o <= 20; o++ {
		if err := m.Record([]hostmsg.MsgID{{Host: 5, Origin: o, Seq: 1}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	m, err = OpenMarks(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := map[string]bool{}
	n5 := 0
	for _, id := range m.Handed() {
		got[id.String()] = true
		if id.Host == 5 {
			n5++
		}
	}
	if !got["2:7:5"] || got["2:7:4"] || !got["3:1:9"] || !got["5:20:1"] || got["5:1:1"] || n5 != maxOriginsKept {
		t.Errorf("handed %v (%d of host 5)", got, n5)
	}
	if f := m.Forgotten(); len(f) != 1 || f[0] != (leader.Ack{HostID: 4, Gen16: 2, Seq: 11, Status: leader.StatusDelivered}) {
		t.Errorf("forgotten %+v", f)
	}
}

// TestStoreLock: one daemon per state directory; names are escaped.
func TestStoreLock(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(root); st.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v", st.Mode().Perm())
	}
	if _, err := Open(root); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second Open: %v, want an error naming our pid", err)
	}
	if got := s.Dir("../a/b.c", 7); got != filepath.Join(root, "lockspaces", "%2E%2E%2Fa%2Fb%2Ec", "host-7") {
		t.Errorf("Dir = %s", got)
	}
	s.Close()
	if s2, err := Open(root); err != nil {
		t.Errorf("Open after Close: %v", err)
	} else {
		s2.Close()
	}
}
