package main

import "errors"

// errNotImplemented is returned by placeholder verbs (stub_*.go).
var errNotImplemented = errors.New("not implemented yet")
