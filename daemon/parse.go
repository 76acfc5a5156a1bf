package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// requestError is a request line refused before any op runs.
type requestError struct {
	code  string
	field string // the request field at fault, if one is
	msg   string
	// close is set when the stream can no longer be trusted (the client
	// and the daemon may disagree on where lines end): the server closes
	// the connection after the error line.
	close bool
}

func (e *requestError) Error() string { return e.msg }

// response is the error line for e.
func (e *requestError) response() *callback.Response {
	msg := e.msg
	if e.close {
		msg += "; closing the connection"
	}
	return &callback.Response{V: callback.ProtocolVersion, Code: e.code, Error: msg, Field: e.field}
}

// requestFields are the JSON keys of callback.Request.
var requestFields = jsonKeys(reflect.TypeFor[callback.Request]())

// jsonKeys returns the JSON keys of struct type t's fields.
func jsonKeys(t reflect.Type) map[string]bool {
	keys := make(map[string]bool)
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys[name] = true
	}
	return keys
}

// parseRequest decodes one request line (its newline included or not).
// It is strict on syntax and lenient on content:
//
//   - the line must be one JSON object in UTF-8, with no key twice;
//   - the known fields must have their types;
//   - keys this daemon does not know are ignored (a newer client may send
//     them) and returned in unknown; keys match exactly, case included.
//
// An empty line, a value that is not an object and a field of the wrong
// type are refused, and the connection stays usable: the line was whole.
// A line that is not JSON is refused and closes the connection: the
// client may be framing requests differently (a pretty-printed object
// spans lines), so the next line could be the middle of this one.
func parseRequest(line []byte) (req *callback.Request, unknown []string, rerr *requestError) {
	b := bytes.Trim(line, " \t\r\n")
	invalid := func(format string, args ...any) *requestError {
		return &requestError{code: callback.CodeInvalid, msg: "daemon: " + fmt.Sprintf(format, args...)}
	}
	switch {
	case len(b) == 0:
		return nil, nil, invalid("empty request line: want one JSON object per line")
	case !utf8.Valid(b):
		return nil, nil, invalid("request line is not UTF-8")
	case !json.Valid(b):
		var v any
		err := json.Unmarshal(b, &v)
		rerr = invalid("request line is not JSON: %v", err)
		rerr.close = true
		return nil, nil, rerr
	case b[0] != '{':
		return nil, nil, invalid("request is a JSON %s, not an object", jsonKind(b[0]))
	}
	known, unknown, err := knownFields(b)
	if err != nil {
		return nil, unknown, invalid("%v", err)
	}
	req = new(callback.Request)
	if err := json.Unmarshal(known, req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			rerr = invalid("field %q: want %v, got JSON %s", te.Field, te.Type, te.Value)
			rerr.field = te.Field
			return nil, unknown, rerr
		}
		return nil, unknown, invalid("%v", err)
	}
	if len(req.Targets) == 0 {
		req.Targets = nil // "targets":[] means what no targets means
	}
	return req, unknown, nil
}

// knownFields rewrites the JSON object b with only the keys of
// callback.Request, so that encoding/json, which matches keys without
// regard to case, sees exact matches only. It refuses a key given twice
// (which of the two would count is not obvious) and returns the unknown
// keys, sorted. b must be a valid JSON object.
func knownFields(b []byte) (known []byte, unknown []string, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, nil, err
	}
	seen := make(map[string]bool)
	var out bytes.Buffer
	out.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, err
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		if !requestFields[key] {
			unknown = append(unknown, key)
			continue
		}
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		kb, _ := json.Marshal(key)
		out.Write(kb)
		out.WriteByte(':')
		out.Write(raw)
	}
	out.WriteByte('}')
	slices.Sort(unknown)
	return out.Bytes(), unknown, nil
}

// jsonKind names the JSON value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}
