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
