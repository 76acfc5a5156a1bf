package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// lineServer is a Server with two ops and no socket, to run request lines
// through handleLine: "status", open to anyone, and "send", which changes
// state (the peer may not). calls counts the handlers' calls by op.
func lineServer() (*Server, *Conn, map[string]int) {
	calls := make(map[string]int)
	s := &Server{cfg: ServerConfig{UID: 0, GID: 0}, ops: make(map[string]Op), ctx: context.Background(),
		log: slog.New(slog.DiscardHandler)}
	s.Handle(callback.OpStatus, Op{Handler: func(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
		calls[req.Op]++
		return &callback.Response{OK: true}
	}})
	s.Handle(callback.OpSend, Op{Mutating: true, Handler: func(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
		calls[req.Op]++
		return &callback.Response{OK: true}
	}})
	c := &Conn{s: s, peer: Peer{PID: 1, UID: 1000, GID: 1000}, log: s.log}
	return s, c, calls
}

// codes are the response codes the protocol defines.
var codes = map[string]bool{
	callback.CodePermission: true, callback.CodeExists: true, callback.CodeNotJoined: true, callback.CodeBusy: true,
	callback.CodeInvalid: true, callback.CodeRefused: true, callback.CodeCancelled: true, callback.CodeIO: true,
	callback.CodeInternal: true, callback.CodeUnsupported: true, callback.CodeLimit: true,
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		line    string
		want    *callback.Request
		unknown []string
		err     string
		close   bool
	}{
		{line: `{"v":1,"op":"send","id":9,"name":"LS","targets":[2,3],"code":65536,"data":0,"wait":true}`,
			want: &callback.Request{V: 1, Op: "send", ID: 9, Name: "LS", Targets: []uint64{2, 3}, Code: 65536, Data: ptrU64(0), Wait: true}},
		{line: `{"op":"status","zz":1,"aa":[{}]}`, want: &callback.Request{Op: "status"}, unknown: []string{"aa", "zz"}},
		{line: `{"Op":"shutdown","op":"status"}`, want: &callback.Request{Op: "status"}, unknown: []string{"Op"}},
		{line: `{"op":"status","io_timeout":null}`, want: &callback.Request{Op: "status"}},
		{line: "{}\r\n", want: &callback.Request{}},
		{line: `{"op":"status","op":"status"}`, err: `key "op" appears twice`},
		{line: `{"op":"status","v":1.0}`, err: `field "v"`},
		{line: `{"op":"status","seq":-1}`, err: `field "seq"`},
		{line: `{"op":"status","targets":{}}`, err: `field "targets"`},
		{line: ``, err: "empty request line"},
		{line: `null`, err: "a JSON null, not an object"},
		{line: `true`, err: "a JSON boolean"},
		{line: `-1`, err: "a JSON number"},
		{line: `{"op":"st` + "\xc3" + `"}`, err: "not UTF-8"},
		{line: `{"op":"status"`, err: "not JSON", close: true},
		{line: `{"op":"status"}{}`, err: "not JSON", close: true},
		{line: `{'op':'status'}`, err: "not JSON", close: true},
	}
	for _, tt := range tests {
		req, unknown, rerr := parseRequest([]byte(tt.line))
		switch {
		case tt.err == "" && (rerr != nil || !reflect.DeepEqual(req, tt.want) || !reflect.DeepEqual(unknown, tt.unknown)):
			t.Errorf("parseRequest(%q) = %+v, unknown %v, %v; want %+v, unknown %v", tt.line, req, unknown, rerr, tt.want, tt.unknown)
		case tt.err != "" && (rerr == nil || !strings.Contains(rerr.msg, tt.err) || rerr.close != tt.close || rerr.code != callback.CodeInvalid):
			t.Errorf("parseRequest(%q) = %+v, %+v; want an invalid error with %q, close %v", tt.line, req, rerr, tt.err, tt.close)
		}
	}
}

func ptrU64(v uint64) *uint64 { return &v }

// FuzzRequestLine runs arbitrary request lines through the server's
// line → request → op path. Whatever the line: one response that a client
// can decode, never a panic; a request that parses round-trips through
// JSON; ok only from a known op the peer may run; a mutating op never
// reaches its handler for a peer without permission; unknown ops and
// versions are "unsupported"; the connection closes only on a line that
// is not JSON.
func FuzzRequestLine(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"op":"status","id":1}`, `{"op":"send","name":"LS","targets":[2],"code":65536,"wait":true}`,
		`{"op":"frobnicate"}`, `{"v":2,"op":"status"}`, `{"op":"status","bogus":{"x":[1]}}`, `{"OP":"send"}`,
		`{"op":"status","op":"send"}`, `{"op":"status","v":"1"}`, `{"op":"send","targets":[2,"x"]}`,
		`{"op":"send","data":null,"io_timeout":5,"timeout_ms":-1}`, "", " \t", "null", "[1]", `"x"`, "1e400",
		"hello", `{"op":"status"`, `{"op":"status"} {}`, "{\"op\":\"\xff\"}", `{"op":"status","id":18446744073709551615}`,
		`{"op":"status","id":18446744073709551616}`, `{"op":"\u0073tatus"}`, `{"":1,"op":"status"}`,
	} {
		f.Add([]byte(s + "\n"))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		_, c, calls := lineServer()
		s := c.s
		req, _, rerr := parseRequest(line)
		resp, closeConn := s.handleLine(c, line)
		if resp == nil {
			t.Fatalf("%q: no response", line)
		}
		b, err := json.Marshal(resp)
		if err != nil || bytes.IndexByte(b, '\n') >= 0 {
			t.Fatalf("%q: response %+v does not encode as one line: %v", line, resp, err)
		}
		var got callback.Response
		if err := json.Unmarshal(b, &got); err != nil || !reflect.DeepEqual(&got, resp) {
			t.Fatalf("%q: response %s decodes as %+v, %v", line, b, got, err)
		}
		if resp.V != callback.ProtocolVersion {
			t.Fatalf("%q: response version %d", line, resp.V)
		}
		if !resp.OK && (resp.Error == "" || !codes[resp.Code]) {
			t.Fatalf("%q: refusal %+v without a message or with an unknown code", line, resp)
		}
		trimmed := bytes.Trim(line, " \t\r\n")
		if closeConn != (rerr != nil && rerr.close) || (closeConn && json.Valid(trimmed)) {
			t.Fatalf("%q: close %v (parse error %+v)", line, closeConn, rerr)
		}
		if rerr != nil {
			if req != nil || resp.OK || resp.Code != callback.CodeInvalid || resp.ID != 0 || len(calls) != 0 {
				t.Fatalf("%q: parse error %v but request %+v, response %+v, calls %v", line, rerr, req, resp, calls)
			}
			return
		}
		// The request round-trips: what the daemon understood is what a
		// client that sent it meant.
		rb, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, unknown, rerr2 := parseRequest(rb)
		if rerr2 != nil || len(unknown) != 0 || !reflect.DeepEqual(again, req) {
			t.Fatalf("%q: request %+v re-encodes as %s, which parses as %+v, %v, %v", line, req, rb, again, unknown, rerr2)
		}
		if resp.ID != req.ID {
			t.Fatalf("%q: response id %d for request id %d", line, resp.ID, req.ID)
		}
		_, known := s.ops[req.Op]
		switch {
		case req.V < 0 || req.V > callback.ProtocolVersion:
			if resp.Code != callback.CodeUnsupported || len(calls) != 0 {
				t.Fatalf("%q: version %d: %+v, calls %v", line, req.V, resp, calls)
			}
		case req.Op == "":
			if resp.Code != callback.CodeInvalid || resp.Field != "op" || len(calls) != 0 {
				t.Fatalf("%q: no op: %+v, calls %v", line, resp, calls)
			}
		case !known:
			if resp.Code != callback.CodeUnsupported || len(calls) != 0 {
				t.Fatalf("%q: unknown op %q: %+v, calls %v", line, req.Op, resp, calls)
			}
		case req.Op == callback.OpSend: // mutating; the peer is not permitted
			if resp.Code != callback.CodePermission || calls[req.Op] != 0 {
				t.Fatalf("%q: send by uid 1000: %+v, calls %v", line, resp, calls)
			}
		default:
			if !resp.OK || calls[req.Op] != 1 {
				t.Fatalf("%q: op %q: %+v, calls %v", line, req.Op, resp, calls)
			}
		}
	})
}
