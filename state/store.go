package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sanlock-msg/sanlock-msg/internal/atomicfile"
	"github.com/sanlock-msg/sanlock-msg/internal/pidlock"
)

func writeAtomic(path string, data []byte) error { return atomicfile.Write(path, data, 0o600) }

// Store is a locked state directory.
type Store struct {
	root string
	lock *os.File
}

// Open creates (mode 0700) and locks the state directory root: a second
// daemon on the same directory fails here, naming the first one's pid.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	path := filepath.Join(root, "lock")
	f, err := pidlock.Lock(path, 0o600)
	if errors.Is(err, pidlock.ErrHeld) {
		return nil, fmt.Errorf("state: another daemon (pid %s) uses the state directory %s; give each daemon its own --state-dir",
			pidlock.Holder(err), root)
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return &Store{root: root, lock: f}, nil
}

// Root returns the state directory.
func (s *Store) Root() string { return s.root }

// Dir returns the directory of lockspace name's host id.
func (s *Store) Dir(name string, hostID uint64) string { return Dir(s.root, name, hostID) }

// Close releases the lock.
func (s *Store) Close() error { return s.lock.Close() }

// Dir returns the directory of lockspace name's host id under root.
func Dir(root, name string, hostID uint64) string {
	return filepath.Join(root, "lockspaces", escape(name), "host-"+strconv.FormatUint(hostID, 10))
}

// escape keeps [A-Za-z0-9_-] and writes every other byte %XX, so that any
// lockspace name ("..", "a/b") is one safe path element.
func escape(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Lockspaces returns the names of the lockspaces under root that have a
// directory for host id.
func Lockspaces(root string, hostID uint64) []string {
	ents, err := os.ReadDir(filepath.Join(root, "lockspaces"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		name, ok := unescape(e.Name())
		if !ok {
			continue
		}
		if st, err := os.Stat(Dir(root, name, hostID)); err == nil && st.IsDir() {
			names = append(names, name)
		}
	}
	return names
}

// unescape reverses escape.
func unescape(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}

// GenerationName is the file, in a lockspace's directory, that records our
// generation at the last join.
const GenerationName = "generation"

// Reinitialised reports whether the lockspace area was re-initialised
// since the last join recorded in dir: generations only go up, so a join
// that gives gen not above the one recorded means the area is new
// (`sanlock direct init` or `sanlock-msg init` ran over it) and every host's
// generations start again from 1. Message ids (HOST:ORIGIN:SEQ) and receive
// marks kept for the old area would then be taken for new messages. It
// also returns the generation recorded (0 if none).
func Reinitialised(dir string, gen uint64) (bool, uint64) {
	b, err := os.ReadFile(filepath.Join(dir, GenerationName))
	if err != nil {
		return false, 0
	}
	old, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return false, 0
	}
	return gen <= old, old
}

// RecordGeneration records gen as our generation at the last join in dir.
func RecordGeneration(dir string, gen uint64) error {
	if err := writeAtomic(filepath.Join(dir, GenerationName), []byte(strconv.FormatUint(gen, 10)+"\n")); err != nil {
		return fmt.Errorf("state: record generation: %w", err)
	}
	return nil
}

// Retire moves the outbox journal and the receive marks of dir aside
// (NAME.retired-SUFFIX) once they are closed, so that the next Open starts
// empty; the old files stay for a human to read. It returns the new paths.
func Retire(dir, suffix string) ([]string, error) {
	var moved []string
	for _, name := range []string{OutboxName, MarksName} {
		from := filepath.Join(dir, name)
		to := from + ".retired-" + suffix
		if err := os.Rename(from, to); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return moved, fmt.Errorf("state: retire %s: %w", name, err)
		}
		moved = append(moved, to)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return moved, fmt.Errorf("state: retire: %w", err)
	}
	return moved, nil
}
