package daemon

import (
	"bufio"
	"encoding/json"
	"net"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/hostmsg"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// DefaultQueue is how many records a registration buffers for a client
// that is not reading. A message that finds every listener's queue full is
// left on its sender's disk (back-pressure); one that only some queues can
// take is counted, for the others, in an overflow record, never dropped
// silently.
const DefaultQueue = 4096

func messageRecord(ls string, d hostmsg.Delivery) callback.Record {
	r := callback.Record{Type: callback.RecordMessage, Lockspace: ls, FromHostID: d.From, FromGeneration: d.FromGen, Seq: d.Seq,
		Code: d.Code, Data: d.Data, Codes: leader.CodeNames(d.Code), Generation: d.TargetGeneration,
		Native: d.Native, Status: d.Status.String(), Time: d.At, Redelivered: d.Redelivered}
	if !d.Native {
		r.ID, r.Origin = d.ID().String(), d.Origin
	}
	return r
}

// registration streams one lockspace's records to one client connection.
// The lockspace loop only enqueues (never blocks); a writer goroutine owned
// by the connection's handler drains the queue and hands the ids of the
// messages it has written to onWritten. A manual-ack registration also
// reads ack lines from the client and hands them to onAck.
type registration struct {
	ls     string
	nc     *net.UnixConn
	max    int
	manual bool
	by     string
	since  time.Time
	// onAck is called for each ack line of a manual-ack client.
	onAck func(id string)
	// onWritten is called with the ids of the message records the
	// writer has handed to the kernel (a flush returned): from then on a
	// crash of the daemon does not lose them, the client reads them.
	onWritten func(ids []string)

	mu      sync.Mutex
	queue   []callback.Record
	ended   bool
	dropped int // total dropped, for status
	logged  time.Time
	signal  chan struct{}
	closed  chan struct{} // the client went away
}

func newRegistration(ls string, nc *net.UnixConn, max int) *registration {
	return &registration{ls: ls, nc: nc, max: max, since: time.Now(), signal: make(chan struct{}, 1), closed: make(chan struct{})}
}

// room returns how many more records the queue takes now.
func (r *registration) room() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return 0
	}
	return max(r.max-len(r.queue), 0)
}

// enqueue adds a record without blocking and reports whether it was
// queued. When the queue is full the record is counted in an overflow
// record at the queue's tail instead.
func (r *registration) enqueue(rec callback.Record) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return false
	}
	if len(r.queue) >= r.max {
		r.dropped++
		if last := &r.queue[len(r.queue)-1]; last.Type == callback.RecordOverflow {
			last.Dropped++
		} else {
			r.queue = append(r.queue, callback.Record{Type: callback.RecordOverflow, Lockspace: r.ls, Dropped: 1, Codes: []string{}})
		}
		r.poke()
		return false
	}
	r.queue = append(r.queue, rec)
	r.poke()
	return true
}

// shouldLog rate-limits overflow log lines: true at most every interval.
func (r *registration) shouldLog(now time.Time, interval time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.logged) < interval {
		return false
	}
	r.logged = now
	return true
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

func (r *registration) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// read takes the client's lines: a manual-ack client's ack lines go to
// onAck; anything else ends the registration. EOF means the client left.
func (r *registration) read(br *bufio.Reader) {
	defer close(r.closed)
	for {
		line, err := readLine(br, callback.MaxLine)
		if err != nil {
			return
		}
		var a callback.AckLine
		if json.Unmarshal(line, &a) != nil || a.Op != "ack" || !r.manual || r.onAck == nil {
			r.end("bad line from the client: a registration takes only ack lines, and only with manual_ack")
			return
		}
		r.onAck(a.ID)
	}
}

// serve writes queued records until the end record is written or the
// client goes away. Writes have no deadline: a client that stops reading
// only fills its queue, and learns about it from the overflow record.
func (r *registration) serve(br *bufio.Reader) {
	go r.read(br)
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
			if r.onWritten != nil {
				var ids []string
				for _, rec := range batch {
					if rec.Type == callback.RecordMessage && rec.ID != "" {
						ids = append(ids, rec.ID)
					}
				}
				if len(ids) > 0 {
					r.onWritten(ids)
				}
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
