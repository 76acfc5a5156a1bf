package callback

import (
	"errors"
)

// Sentinel errors for the daemon's response codes. Client methods return
// an *Error whose Unwrap gives one of these, so callers test them with
// errors.Is(err, callback.ErrBusy).
var (
	// ErrPermission means the peer may not run a state-changing op: it is
	// not root, not the daemon's user, and not in the daemon's group.
	ErrPermission = errors.New("callback: permission denied")
	// ErrExists means the lockspace is already joined or being joined.
	ErrExists = errors.New("callback: lockspace already added")
	// ErrNotJoined means the daemon holds no lockspace of that name.
	ErrNotJoined = errors.New("callback: lockspace not joined")
	// ErrBusy means the host id is held by a live host (sanlock -262).
	ErrBusy = errors.New("callback: host_id held by a live host")
	// ErrInvalid means the request was malformed or its arguments wrong.
	ErrInvalid = errors.New("callback: invalid request")
	// ErrRefused means the daemon refused (shutdown while lockspaces are
	// joined).
	ErrRefused = errors.New("callback: refused")
	// ErrCancelled means the op was cancelled by another request or by
	// the daemon shutting down.
	ErrCancelled = errors.New("callback: cancelled")
	// ErrIO means a storage error.
	ErrIO = errors.New("callback: i/o error")
	// ErrInternal means any other failure in the daemon.
	ErrInternal = errors.New("callback: internal error")
	// ErrNoDaemon means no daemon answers on the run directory's socket.
	ErrNoDaemon = errors.New("callback: no daemon")
	// ErrUnsupported means the daemon does not know the op or the protocol
	// version: it is older than this client.
	ErrUnsupported = errors.New("callback: not supported by the daemon")
	// ErrLimit means a daemon limit was reached: too many connections, or
	// a connection idle too long. The daemon closed the connection.
	ErrLimit = errors.New("callback: daemon limit reached")
	// ErrClosed means the connection is closed: by Close, by the daemon, or
	// by an earlier error that left the exchange in an unknown state (a
	// context that ended mid-request, an I/O error, a reply that could not
	// be decoded or that answered another request). Dial again.
	ErrClosed = errors.New("callback: connection closed")
	// ErrNotFound means the daemon knows no message of that id (result).
	ErrNotFound = errors.New("callback: no such message")
)

var codeErrors = map[string]error{
	CodePermission:  ErrPermission,
	CodeExists:      ErrExists,
	CodeNotJoined:   ErrNotJoined,
	CodeBusy:        ErrBusy,
	CodeInvalid:     ErrInvalid,
	CodeRefused:     ErrRefused,
	CodeCancelled:   ErrCancelled,
	CodeIO:          ErrIO,
	CodeInternal:    ErrInternal,
	CodeUnsupported: ErrUnsupported,
	CodeLimit:       ErrLimit,
	CodeNotFound:    ErrNotFound,
}

// Error is a failure reported by the daemon.
type Error struct {
	Op    string // the request's op
	Code  string // Response.Code
	Msg   string // Response.Error
	Field string // Response.Field: the request field at fault, if one is
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel for e.Code (ErrInternal for unknown codes).
func (e *Error) Unwrap() error {
	if err, ok := codeErrors[e.Code]; ok {
		return err
	}
	return ErrInternal
}

// CodeOf returns the protocol code for err: the code of an *Error or of a
// sentinel err wraps, else CodeInternal.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	for code, s := range codeErrors {
		if errors.Is(err, s) {
			return code
		}
	}
	return CodeInternal
}
