package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

// writeTimeout bounds each response write, so a client that stops reading
// cannot hold a connection goroutine forever.
const writeTimeout = 10 * time.Second

// refusalTimeout bounds the error line written to a connection refused
// over a limit (its socket buffer is empty: it never blocks in practice).
const refusalTimeout = time.Second

// Connection limits and the idle timeout (ServerConfig).
const (
	// DefaultIdleTimeout closes a connection that sends no request for
	// this long (registrations excepted).
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxConns caps the connections of all users but root.
	DefaultMaxConns = 1024
	// DefaultMaxConnsPerUID caps the connections of one uid, root's too.
	DefaultMaxConnsPerUID = 256
)

// refusalLogEvery is how often refused connections are logged, so that a
// flood of them does not flood the log.
const refusalLogEvery = 10 * time.Second

// Accept-error backoff, as memberlist's NetTransport.
const (
	acceptBaseDelay = 5 * time.Millisecond
	acceptMaxDelay  = time.Second
)

// Peer holds the credentials of a connected client, from the kernel:
// SO_PEERCRED and SO_PEERGROUPS, as they were when the client connected.
type Peer struct {
	PID int32
	UID uint32
	GID uint32
	// Groups are the supplementary groups (nil on kernels before 4.13,
	// which lack SO_PEERGROUPS: then only the primary group counts).
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
	// IdleTimeout closes a connection that sends no complete request for
	// this long, after an error line (code limit). Registrations, which
	// send nothing after registering, are exempt. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConns caps the open connections of all peers but root (default
	// DefaultMaxConns). Root is held only to MaxConnsPerUID, so that
	// other users cannot lock root out (of reset, of shutdown).
	MaxConns int
	// MaxConnsPerUID caps the open connections of one uid (default
	// DefaultMaxConnsPerUID). A connection over a cap gets an error line
	// (code limit) and is closed; the daemon goes on renewing.
	MaxConnsPerUID int
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

	mu       sync.Mutex
	conns    map[*Conn]struct{}
	perUID   map[uint32]int // open connections by peer uid
	refused  int            // connections refused since the last log line
	loggedAt time.Time      // when refusals were last logged
	refusals int64          // connections refused since Listen
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
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerUID <= 0 {
		cfg.MaxConnsPerUID = DefaultMaxConnsPerUID
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
	s := &Server{cfg: cfg, ln: ln, log: cfg.Logger, ops: make(map[string]Op),
		ctx: ctx, cancel: cancel, conns: make(map[*Conn]struct{}), perUID: make(map[uint32]int)}
	s.checkFileLimit()
	return s, nil
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

// Stats returns the number of open connections and of connections
// refused over a cap since Listen.
func (s *Server) Stats() (open int, refused int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), s.refusals
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
		if err := s.overLimitLocked(c.peer); err != nil {
			s.noteRefusalLocked(c.peer, err)
			s.mu.Unlock()
			refuse(nc, err)
			continue
		}
		s.conns[c] = struct{}{}
		s.perUID[c.peer.UID]++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// overLimitLocked returns why a new connection of peer is over a cap, or
// nil.
func (s *Server) overLimitLocked(p Peer) error {
	if n := s.perUID[p.UID]; n >= s.cfg.MaxConnsPerUID {
		return fmt.Errorf("uid %d has %d connections open, the most one user may have; close some (listeners count too)",
			p.UID, n)
	}
	if p.UID != 0 && len(s.conns) >= s.cfg.MaxConns {
		return fmt.Errorf("the daemon has %d connections open, the most it accepts from users other than root; try again later",
			len(s.conns))
	}
	return nil
}

// noteRefusalLocked logs a refused connection, at most once per
// refusalLogEvery with the count of those not logged.
func (s *Server) noteRefusalLocked(p Peer, err error) {
	s.refused++
	s.refusals++
	now := time.Now()
	if now.Sub(s.loggedAt) < refusalLogEvery {
		return
	}
	s.log.Warn("connection refused", "peer", p.String(), "err", err, "refused_since_last_log", s.refused,
		"open", len(s.conns), "open_by_uid", s.perUID[p.UID])
	s.refused, s.loggedAt = 0, now
}

// refuse writes the error line for err to a connection that is not served
// and closes it.
func refuse(nc *net.UnixConn, err error) {
	b, _ := json.Marshal(Fail(callback.CodeLimit, fmt.Errorf("daemon: connection refused: %w", err)))
	nc.SetWriteDeadline(time.Now().Add(refusalTimeout))
	nc.Write(append(b, '\n'))
	nc.Close()
}

// checkFileLimit warns when the process may not open as many files as the
// connection caps allow: accept would then fail with EMFILE before the
// caps refuse anyone with a clear line.
func (s *Server) checkFileLimit() {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	const reserve = 64 // devices, the watchdog, the pid file, logs
	if want := uint64(s.cfg.MaxConns + s.cfg.MaxConnsPerUID + reserve); rl.Cur < want {
		s.log.Warn("the open file limit is lower than the connection caps allow; past it, connections fail without an explanation",
			"nofile", rl.Cur, "max_conns", s.cfg.MaxConns, "max_conns_per_uid", s.cfg.MaxConnsPerUID, "want_nofile", want)
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
	reqID    uint64 // the ID of the request being served
	badLines int    // request lines refused by the parser
}

func (s *Server) newConn(nc *net.UnixConn) (*Conn, error) {
	peer, err := peerOf(nc)
	if err != nil {
		return nil, err
	}
	return &Conn{s: s, nc: nc, r: bufio.NewReader(nc), peer: peer,
		log: s.log.With("peer_pid", peer.PID, "peer_uid", peer.UID)}, nil
}

// peerOf reads the peer's credentials from the kernel: SO_PEERCRED and
// SO_PEERGROUPS, both captured when the peer connected. (Reading
// /proc/PID/status instead would race with the pid being reused.)
func peerOf(nc *net.UnixConn) (Peer, error) {
	rc, err := nc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var groups []uint32
	var cerr, gerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		groups, gerr = peerGroups(int(fd))
	}); err != nil {
		return Peer{}, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("daemon: SO_PEERCRED: %w", cerr)
	}
	if gerr != nil && !errors.Is(gerr, unix.ENOPROTOOPT) {
		return Peer{}, fmt.Errorf("daemon: SO_PEERGROUPS: %w", gerr)
	}
	return Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid, Groups: groups}, nil
}

// peerGroups reads SO_PEERGROUPS: the supplementary groups of the peer of
// socket fd, as an array of gids. The kernel answers ERANGE with the size
// it needs when the buffer is too small.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == unix.ERANGE && int(size/4) > len(buf):
			buf = make([]uint32, size/4)
			continue
		case errno != 0:
			return nil, errno
		}
		return buf[: size/4 : size/4], nil
	}
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
// for concurrent use. A *callback.Response gets the protocol version and
// the ID of the request being served, if it has none.
func (c *Conn) WriteJSON(v any) error {
	if r, ok := v.(*callback.Response); ok {
		if r.V == 0 {
			r.V = callback.ProtocolVersion
		}
		if r.ID == 0 {
			r.ID = c.reqID
		}
	}
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
		if s.perUID[c.peer.UID]--; s.perUID[c.peer.UID] <= 0 {
			delete(s.perUID, c.peer.UID)
		}
		s.mu.Unlock()
	}()
	for {
		c.nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		line, err := readLine(c.r, callback.MaxLine)
		if err != nil {
			s.readFailed(c, err)
			return
		}
		c.nc.SetReadDeadline(time.Time{})
		resp, closeConn := s.handleLine(c, line)
		if c.hijacked {
			return
		}
		if resp != nil {
			if err := c.WriteJSON(resp); err != nil {
				c.log.Warn("closing connection: cannot write response", "err", err)
				return
			}
		}
		if closeConn {
			return
		}
		after := c.after
		c.after = nil
		for _, f := range after {
			f()
		}
	}
}

// readFailed answers a request line that could not be read, when someone
// may still read the answer.
func (s *Server) readFailed(c *Conn, err error) {
	if s.shutdown.Load() {
		return
	}
	c.reqID = 0
	switch {
	case errors.Is(err, errLineTooLong):
		c.log.Warn("closing connection: request line too long", "max", callback.MaxLine)
		c.WriteJSON(Fail(callback.CodeInvalid, fmt.Errorf("daemon: %v; closing the connection", err)))
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Debug("closing idle connection", "idle", s.cfg.IdleTimeout)
		c.WriteJSON(Fail(callback.CodeLimit, fmt.Errorf("daemon: no request for %v; closing the idle connection (dial again)", s.cfg.IdleTimeout)))
	}
	// EOF, a line cut short by EOF, or a reset: the client is gone.
}

// handleLine parses one request line and runs its op. It returns the
// response to write (nil after Hijack) and whether to close the
// connection after it.
func (s *Server) handleLine(c *Conn, line []byte) (resp *callback.Response, closeConn bool) {
	c.reqID = 0
	req, unknown, rerr := parseRequest(line)
	if rerr != nil {
		// One warning per connection: a client looping on bad lines must
		// not flood the log.
		if c.badLines++; c.badLines == 1 {
			c.log.Warn("bad request line", "err", rerr.msg, "closing", rerr.close)
		} else {
			c.log.Debug("bad request line", "err", rerr.msg, "closing", rerr.close, "bad_lines", c.badLines)
		}
		return rerr.response(), rerr.close
	}
	c.reqID = req.ID
	if len(unknown) > 0 {
		c.log.Debug("request fields ignored: this daemon does not know them", "op", req.Op, "fields", unknown)
	}
	resp = s.dispatch(c, req)
	if resp != nil {
		resp.V, resp.ID = callback.ProtocolVersion, req.ID
	}
	return resp, false
}

func (s *Server) dispatch(c *Conn, req *callback.Request) *callback.Response {
	if req.V < 0 || req.V > callback.ProtocolVersion {
		return Fail(callback.CodeUnsupported, fmt.Errorf("daemon: protocol version %d not supported (this daemon speaks %d)", req.V, callback.ProtocolVersion))
	}
	if req.Op == "" {
		return Invalid("op", errors.New("daemon: no op in the request"))
	}
	op, ok := s.ops[req.Op]
	if !ok {
		return Fail(callback.CodeUnsupported, fmt.Errorf("daemon: unknown op %q: this daemon (protocol %d) does not support it", req.Op, callback.ProtocolVersion))
	}
	if op.Mutating {
		if err := c.Permitted(); err != nil {
			c.log.Warn("permission denied", "op", req.Op)
			return Fail(callback.CodePermission, fmt.Errorf("%w (op %s)", err, req.Op))
		}
	}
	return op.Handler(s.ctx, c, req)
}
