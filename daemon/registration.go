package daemon

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// DefaultQueue is how many records a registration buffers for a client
// that is not reading. Past that, records are counted and reported in one
// overflow record, never dropped silently.
const DefaultQueue = 4096

func messageRecord(ls string, d hostmsg.Delivery) callback.Record {
	return callback.Record{Type: callback.RecordMessage, Lockspace: ls, FromHostID: d.From, FromGeneration: d.FromGen, Seq: d.Seq,
		Code: d.Code, Data: d.Data, Codes: leader.CodeNames(d.Code), Generation: d.TargetGeneration,
		Native: d.Native, Status: d.Status.String(), Time: d.At}
}

// registration streams one lockspace's records to one client connection.
// The lockspace loop only enqueues (never blocks); a writer goroutine owned
// by the connection's handler drains the queue.
type registration struct {
	ls  string
	nc  *net.UnixConn
	max int

	mu      sync.Mutex
	queue   []callback.Record
	ended   bool
	dropped int // total dropped, for status
	signal  chan struct{}
	closed  chan struct{} // the client went away
}

func newRegistration(ls string, nc *net.UnixConn, max int) *registration {
	return &registration{ls: ls, nc: nc, max: max, signal: make(chan struct{}, 1), closed: make(chan struct{})}
}

// enqueue adds a record without blocking. When the queue is full the
// record is counted in an overflow record at the queue's tail instead.
func (r *registration) enqueue(rec callback.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	if len(r.queue) >= r.max {
		r.dropped++
		if last := &r.queue[len(r.queue)-1]; last.Type == callback.RecordOverflow {
			last.Dropped++
		} else {
			r.queue = append(r.queue, callback.Record{Type: callback.RecordOverflow, Lockspace: r.ls, Dropped: 1, Codes: []string{}})
		}
	} else {
		r.queue = append(r.queue, rec)
	}
	r.poke()
}

// end queues the end record; the writer closes the connection after it.
func (r *registration) end(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.queue = append(r.queue, callback.Record{Type: callback.RecordEnd, Lockspace: r.ls, Reason: reason, Codes: []string{}})
	r.ended = true
	// A client that stopped reading must not keep the connection open
	// forever: give the end record a bounded time to go out.
	r.nc.SetWriteDeadline(time.Now().Add(endWriteTimeout))
	r.poke()
}

// endWriteTimeout bounds the writes after a registration ended.
const endWriteTimeout = 5 * time.Second

// clearDeadline removes the write deadline the OK response was written
// with: records have none. An end record keeps the one end set.
func (r *registration) clearDeadline() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ended {
		r.nc.SetWriteDeadline(time.Time{})
	}
}

func (r *registration) poke() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

func (r *registration) overflows() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// serve writes queued records until the end record is written or the
// client goes away. Writes have no deadline: a client that stops reading
// only fills its queue, and learns about it from the overflow record.
func (r *registration) serve(br *bufio.Reader) {
	go func() {
		// The client sends nothing after registering; EOF means it left.
		io.Copy(io.Discard, br)
		close(r.closed)
	}()
	w := bufio.NewWriter(r.nc)
	enc := json.NewEncoder(w)
	for {
		r.mu.Lock()
		batch := r.queue
		r.queue = nil
		r.mu.Unlock()
		for _, rec := range batch {
			if err := enc.Encode(rec); err != nil {
				return
			}
		}
		if len(batch) > 0 {
			if err := w.Flush(); err != nil {
				return
			}
			if batch[len(batch)-1].Type == callback.RecordEnd {
				return
			}
		}
		select {
		case <-r.signal:
		case <-r.closed:
			return
		}
	}
}
