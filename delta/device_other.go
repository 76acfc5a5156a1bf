//go:build !linux

package delta

import (
	"errors"
	"fmt"
	"os"
)

// File is only implemented on Linux.
type File struct{ Device }

// OpenFile is only implemented on Linux.
func OpenFile(path string, readOnly bool) (*File, error) {
	return nil, fmt.Errorf("delta: open %s: %w", path, errors.Join(errors.ErrUnsupported, os.ErrNotExist))
}

// AlignedBuffer returns a zeroed buffer of n bytes.
func AlignedBuffer(n int) []byte { return make([]byte, n) }
