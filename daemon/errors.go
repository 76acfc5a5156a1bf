package daemon

import "github.com/sanlock-msg/sanlock-msg/callback"

// Fail returns the failure Response for err with code (the code of the
// sentinel err wraps if code is empty, CodeInternal if none).
func Fail(code string, err error) *callback.Response {
	if code == "" {
		code = callback.CodeOf(err)
	}
	return &callback.Response{V: callback.ProtocolVersion, Code: code, Error: err.Error()}
}

// Invalid returns the failure Response (CodeInvalid) for a request whose
// field has a wrong value: a usage error, which the CLI reports as one
// (exit status 2).
func Invalid(field string, err error) *callback.Response {
	r := Fail(callback.CodeInvalid, err)
	r.Field = field
	return r
}
