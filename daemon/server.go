package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// writeTimeout bounds each response write, so a client that stops reading
// cannot hold a connection goroutine forever.
const writeTimeout = 10 * time.Second

// Accept-error backoff, as memberlist's NetTransport.
const (
	acceptBaseDelay = 5 * time.Millisecond
	acceptMaxDelay  = time.Second
)

// Peer holds the credentials of a connected client, from SO_PEERCRED and
// /proc/PID/status.
type Peer struct {
	PID int32
	UID uint32
	GID uint32
	// Groups are the supplementary groups (nil if /proc did not show them).
	Groups []uint32
}

// String formats the peer for logs: "pid 123 uid 1000 gid 1000".
func (p Peer) String() string {
	return fmt.Sprintf("pid %d uid %d gid %d", p.PID, p.UID, p.GID)
}

// InGroup reports whether gid is the peer's group or one of its
// supplementary groups.
func (p Peer) InGroup(gid uint32) bool {
	if p.GID == gid {
		return true
	}
	for _, g := range p.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// Handler runs one op for one request and returns its response. It runs in
// the connection's goroutine; other connections are served meanwhile. ctx
// ends when the server shuts down. A handler that returns nil writes no
// response (use it after Hijack).
type Handler func(ctx context.Context, c *Conn, req *callback.Request) *callback.Response

// Op is a registered op.
type Op struct {
	Handler Handler
	// Mutating ops change the daemon's state: the server checks the peer
	// (root, the daemon's uid, or a member of its group) before calling
	// Handler and answers CodePermission otherwise. Read-only ops are open
	// to anyone who can connect.
	Mutating bool
}

// ServerConfig configures Listen.
type ServerConfig struct {
	// Path is the socket path.
	Path string
	// Mode is the socket's permission bits (default 0660).
	Mode os.FileMode
	// UID is the daemon's uid; peers with it may change state.
	UID uint32
	// GID is the group whose members may change state; the socket is
	// chowned to it.
	GID uint32
	// Logger receives the server's log (default slog.Default()).
	Logger *slog.Logger
}

// Server is the daemon's control socket: it accepts connections, reads one
// JSON request per line, checks the peer's credentials and dispatches to
// the registered ops. Register every op with Handle before Serve.
type Server struct {
	cfg ServerConfig
	ln  *net.UnixListener
	log *slog.Logger
	ops map[string]Op

	ctx      context.Context
	cancel   context.CancelFunc
	shutdown atomic.Bool
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[*Conn]struct{}
}

// Listen creates the socket at cfg.Path, with cfg.Mode and group cfg.GID.
// An existing socket file is removed only if no daemon answers on it.
func Listen(cfg ServerConfig) (*Server, error) {
	if cfg.Mode == 0 {
		cfg.Mode = 0o660
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := removeStale(cfg.Path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("daemon: listen on %s: %w", cfg.Path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chown(cfg.Path, -1, int(cfg.GID)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("daemon: chown %s to group %d: %w", cfg.Path, cfg.GID, err)
	}
	if err := os.Chmod(cfg.Path, cfg.Mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("daemon: chmod %s: %w", cfg.Path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, ln: ln, log: cfg.Logger, ops: make(map[string]Op),
		ctx: ctx, cancel: cancel, conns: make(map[*Conn]struct{})}, nil
}

// removeStale removes a socket file at path that no daemon answers on.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("daemon: %s exists and is not a socket; remove it by hand", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("daemon: a daemon already answers on %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("daemon: remove stale socket: %w", err)
	}
	return nil
}

// Path returns the socket path.
func (s *Server) Path() string { return s.cfg.Path }

// Handle registers op name. It must be called before Serve.
func (s *Server) Handle(name string, op Op) { s.ops[name] = op }

// Serve starts the accept loop in a goroutine and returns at once.
func (s *Server) Serve() {
	s.wg.Add(1)
	go s.acceptLoop()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := s.ln.AcceptUnix()
		if err != nil {
			if s.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, acceptBaseDelay), acceptMaxDelay)
			s.log.Error("accept failed", "socket", s.cfg.Path, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		c, err := s.newConn(nc)
		if err != nil {
			s.log.Warn("closing connection", "err", err)
			nc.Close()
			continue
		}
		s.mu.Lock()
		if s.shutdown.Load() {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Shutdown stops accepting, cancels the handlers' context, closes every
// connection and waits for their goroutines. It is idempotent.
func (s *Server) Shutdown() {
	if s.shutdown.Swap(true) {
		s.wg.Wait()
		return
	}
	s.ln.Close()
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Conn is one client connection.
type Conn struct {
	s    *Server
	nc   *net.UnixConn
	r    *bufio.Reader
	peer Peer
	log  *slog.Logger

	wmu      sync.Mutex
	after    []func()
	hijacked bool
}

func (s *Server) newConn(nc *net.UnixConn) (*Conn, error) {
	peer, err := peerOf(nc)
	if err != nil {
		return nil, err
	}
	return &Conn{s: s, nc: nc, r: bufio.NewReader(nc), peer: peer,
		log: s.log.With("peer_pid", peer.PID, "peer_uid", peer.UID)}, nil
}

// peerOf reads SO_PEERCRED and the peer's supplementary groups.
func peerOf(nc *net.UnixConn) (Peer, error) {
	rc, err := nc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("daemon: SO_PEERCRED: %w", cerr)
	}
	p := Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	p.Groups = procGroups(fmt.Sprintf("/proc/%d/status", cred.Pid))
	return p, nil
}

// procGroups returns the Groups: line of a /proc/PID/status file, or nil.
func procGroups(path string) []uint32 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var gs []uint32
		for f := range strings.FieldsSeq(rest) {
			if g, err := strconv.ParseUint(f, 10, 32); err == nil {
				gs = append(gs, uint32(g))
			}
		}
		return gs
	}
	return nil
}

// Peer returns the client's credentials.
func (c *Conn) Peer() Peer { return c.peer }

// Permitted reports nil if the peer may change the daemon's state (root,
// the daemon's uid, or a member of the daemon's group), else an error
// wrapping ErrPermission that names the uid.
func (c *Conn) Permitted() error { return permitted(c.peer, c.s.cfg.UID, c.s.cfg.GID) }

func permitted(p Peer, uid, gid uint32) error {
	if p.UID == 0 || p.UID == uid || p.InGroup(gid) {
		return nil
	}
	return fmt.Errorf("%w (EACCES): uid %d is not root, not the daemon's uid %d, and not in group %d",
		callback.ErrPermission, p.UID, uid, gid)
}

// Hijack hands the connection to the handler, for ops that turn it into a
// stream (register). The handler then reads and writes the connection
// itself (WriteJSON is still safe to use) and must return nil; the server
// reads no more requests from it and closes it when the handler returns.
// The returned reader holds any bytes the client sent after the request.
func (c *Conn) Hijack() (*net.UnixConn, *bufio.Reader) {
	c.hijacked = true
	return c.nc, c.r
}

// AfterReply registers f to run after the response to the current request
// has been written (shutdown uses it to exit only after answering).
func (c *Conn) AfterReply(f func()) { c.after = append(c.after, f) }

// WriteJSON writes v as one JSON line, within a write timeout. It is safe
// for concurrent use.
func (c *Conn) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("daemon: encode: %w", err)
	}
	b = append(b, '\n')
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = c.nc.Write(b)
	return err
}

// errLineTooLong means a request exceeded MaxLine.
var errLineTooLong = fmt.Errorf("request longer than %d bytes", callback.MaxLine)

// readLine reads one newline-terminated line of at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		if err == nil {
			return line, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(line) >= max { // no room left for the newline
				return nil, errLineTooLong
			}
			continue
		}
		if err == io.EOF && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

func (s *Server) serveConn(c *Conn) {
	defer s.wg.Done()
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	for {
		line, err := readLine(c.r, callback.MaxLine)
		if err != nil {
			if err != io.EOF && !s.shutdown.Load() {
				c.log.Warn("closing connection: bad request", "err", err)
				c.WriteJSON(Fail(callback.CodeInvalid, fmt.Errorf("daemon: %v; closing the connection", err)))
			}
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var req callback.Request
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			c.log.Warn("closing connection: malformed request", "err", err)
			c.WriteJSON(Fail(callback.CodeInvalid, fmt.Errorf("daemon: malformed request: %v; closing the connection", err)))
			return
		}
		resp := s.dispatch(c, &req)
		if c.hijacked {
			return
		}
		if resp != nil {
			if err := c.WriteJSON(resp); err != nil {
				c.log.Warn("closing connection: cannot write response", "op", req.Op, "err", err)
				return
			}
		}
		after := c.after
		c.after = nil
		for _, f := range after {
			f()
		}
	}
}

func (s *Server) dispatch(c *Conn, req *callback.Request) *callback.Response {
	if req.V != 0 && req.V != callback.ProtocolVersion {
		return Fail(callback.CodeInvalid, fmt.Errorf("daemon: protocol version %d not supported (want %d)", req.V, callback.ProtocolVersion))
	}
	op, ok := s.ops[req.Op]
	if !ok {
		return Fail(callback.CodeInvalid, fmt.Errorf("daemon: unknown op %q", req.Op))
	}
	if op.Mutating {
		if err := c.Permitted(); err != nil {
			c.log.Warn("permission denied", "op", req.Op)
			return Fail(callback.CodePermission, fmt.Errorf("%w (op %s)", err, req.Op))
		}
	}
	resp := op.Handler(s.ctx, c, req)
	if resp != nil {
		resp.V = callback.ProtocolVersion
	}
	return resp
}
