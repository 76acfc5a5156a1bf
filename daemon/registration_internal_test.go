package daemon

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// socketPair returns both ends of a connected unix stream socket pair.
func socketPair(t *testing.T) (daemon, client *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int, name string) *net.UnixConn {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close() // FileConn dups it
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0], "daemon"), conn(fds[1], "client")
}

// TestRegistration_overflow: a client that does not read gets the records
// that fit its queue, then one overflow record counting the rest, then the
// end record; nothing is dropped silently.
func TestRegistration_overflow(t *testing.T) {
	dconn, cconn := socketPair(t)
	r := newRegistration("LS", dconn, 3)
	for i := range 10 {
		r.enqueue(messageRecord("LS", hostmsg.Delivery{From: 1, FromGen: 2, Seq: uint64(i + 1), Code: leader.EventUser0,
			Data: uint64(i + 1), Status: leader.StatusDelivered, At: time.Now()}))
	}
	if got := r.overflows(); got != 7 {
		t.Errorf("overflows() = %d, want 7", got)
	}
	r.end("lockspace removed")
	r.enqueue(messageRecord("LS", hostmsg.Delivery{From: 1, FromGen: 2, Seq: 11, Code: leader.EventUser0}))

	served := make(chan struct{})
	go func() {
		r.serve(bufio.NewReader(dconn))
		close(served)
	}()
	cconn.SetReadDeadline(time.Now().Add(10 * time.Second))
	sc := bufio.NewScanner(cconn)
	var recs []callback.Record
	for sc.Scan() {
		var rec callback.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		recs = append(recs, rec)
		if rec.Type == callback.RecordEnd {
			break
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("got %d records %+v, want 3 messages, overflow, end", len(recs), recs)
	}
	for i, rec := range recs[:3] {
		if rec.Type != callback.RecordMessage || rec.Seq != uint64(i+1) || rec.FromHostID != 1 || rec.FromGeneration != 2 ||
			rec.Status != "delivered" || rec.Lockspace != "LS" {
			t.Errorf("record %d: %+v, want message seq %d from 1/2", i, rec, i+1)
		}
	}
	if o := recs[3]; o.Type != callback.RecordOverflow || o.Dropped != 7 || o.Lockspace != "LS" || o.Codes == nil {
		t.Errorf("record 3: %+v, want overflow dropped 7", o)
	}
	if e := recs[4]; e.Type != callback.RecordEnd || e.Reason != "lockspace removed" {
		t.Errorf("record 4: %+v, want end, lockspace removed", e)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the end record")
	}
}

// TestRegistration_clientLeaves: serve returns when the client closes its
// end, without an end record.
func TestRegistration_clientLeaves(t *testing.T) {
	dconn, cconn := socketPair(t)
	r := newRegistration("LS", dconn, 3)
	served := make(chan struct{})
	go func() {
		r.serve(bufio.NewReader(dconn))
		close(served)
	}()
	r.enqueue(messageRecord("LS", hostmsg.Delivery{From: 1, FromGen: 1, Seq: 1, Code: leader.EventUser0}))
	cconn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(cconn).ReadBytes('\n')
	var rec callback.Record
	if err != nil || json.Unmarshal(line, &rec) != nil || rec.Seq != 1 {
		t.Fatalf("first record %q, %v; want seq 1", line, err)
	}
	cconn.Close()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the client closed")
	}
}
