package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/state"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// Config configures a Daemon. Zero fields take the defaults documented on
// each. The Config must not change after New.
type Config struct {
	// RunDir holds the socket, the pid file and the watchdog reset marker
	// (default DefaultRunDir). It is created if missing.
	RunDir string
	// Group is the group (name or number) whose members may change the
	// daemon's state; the socket is chowned to it. Default: the daemon's
	// own gid.
	Group string
	// SocketMode is the socket's permission bits (default 0660).
	SocketMode os.FileMode
	// HostName is the host name written into our sectors when
	// add_lockspace gives none (sanlock's -e). Default: a new random
	// "UUID.nodename" at each start, as sanlock, so that a restarted daemon
	// waits for its old lease to expire unless it is given the same name.
	HostName string
	// Watchdog is the watchdog spec: "none", "fake:FILE" or a device path
	// (default "/dev/watchdog"); see watchdog.OpenSpec.
	Watchdog string
	// WatchdogTimeout is W, the watchdog fire timeout, also used by every
	// lockspace's host_dead arithmetic (default 60 s, as sanlock).
	WatchdogTimeout time.Duration
	// Clock is the time source (default the real clock).
	Clock clock.Clock
	// Logger receives the daemon's log (default slog.Default()).
	Logger *slog.Logger
	// OpenDevice opens a lockspace path (default delta.OpenFile read-write).
	OpenDevice func(path string) (delta.Device, error)
	// Version is reported by the status op.
	Version string
	// PollInterval is every lockspace's idle message poll (delta.Config;
	// default delta.DefaultPollInterval; negative: renewals only, as
	// sanlock, at the cost of message latency).
	PollInterval time.Duration
	// Lockspace, if set, adjusts each lockspace's delta.Config just before
	// it joins (tests use it to change poll intervals).
	Lockspace func(*delta.Config)
	// IdleTimeout closes client connections that send no request for this
	// long (registrations excepted; default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxConns caps the client connections of all users but root, and
	// MaxConnsPerUID those of one uid (defaults DefaultMaxConns and
	// DefaultMaxConnsPerUID). See ServerConfig.
	MaxConns, MaxConnsPerUID int
	// StateDir holds the durable outbox and receive marks of every
	// lockspace (package state; default DefaultStateDir). "none" keeps
	// them in memory only: a crash then loses queued sends.
	StateDir string
	// ListenerGrace is how long after a join a message that finds no
	// listener stays on its sender's disk instead of being acked
	// "no-listener" (hostmsg.Config.ListenerGrace; default 10 s, negative:
	// none).
	ListenerGrace time.Duration
	// BootID identifies this boot for the reset marker (default: the
	// kernel's, watchdog.CurrentBootID).
	BootID string
}

// DefaultStateDir is the default state directory.
const DefaultStateDir = "/var/lib/sanlock-msg"

// NoStateDir as Config.StateDir keeps no durable state.
const NoStateDir = "none"

func (c Config) withDefaults() Config {
	if c.RunDir == "" {
		c.RunDir = callback.DefaultRunDir
	}
	if c.SocketMode == 0 {
		c.SocketMode = 0o660
	}
	if c.HostName == "" {
		c.HostName = delta.DefaultHostName()
	}
	if c.Watchdog == "" {
		c.Watchdog = "/dev/watchdog"
	}
	if c.WatchdogTimeout <= 0 {
		c.WatchdogTimeout = delta.DefaultWatchdogTimeout
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.OpenDevice == nil {
		c.OpenDevice = func(path string) (delta.Device, error) { return delta.OpenFile(path, false) }
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.BootID == "" {
		c.BootID, _ = watchdog.CurrentBootID()
	}
	return c
}

// Daemon holds host ids in lockspaces, feeds the watchdog while they renew,
// and serves clients on RunDir/sanlock-msg.sock.
//
// Lifecycle: New validates the Config; Run starts everything and returns
// when the daemon stops: after a shutdown op or Shutdown, when Run's ctx
// ends (a forced shutdown), or when a fake watchdog fires (the simulated
// reset; Run then returns an error wrapping watchdog.ErrFired).
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	clk    clock.Clock
	gid    uint32
	bootID string

	ready chan struct{} // closed once the socket listens
	done  chan struct{} // closed when Run must return

	// Set up by Run, before ready.
	ctx     context.Context // cancelled when the daemon stops
	cancel  context.CancelFunc
	pidFile *os.File
	wdev    watchdog.Device
	keeper  *watchdog.Keeper
	srv     *Server
	store   *state.Store // nil without a state directory

	finishOnce sync.Once
	runErr     error
	wg         sync.WaitGroup // join and watch goroutines

	mu       sync.Mutex
	members  map[string]*member
	stopping bool

	// resetPending says why this host must reset (a WD_RESET accepted now
	// or before a restart in this boot); it refuses to join lockspaces.
	// Its own lock: messengers set it while holding theirs, and d.mu is
	// taken before a messenger's.
	resetMu      sync.Mutex
	resetPending string

	// held are the lockspaces whose expiry the watchdog guards, as
	// RUN_DIR/lockspaces-held records them (watchdog.WriteHeld): added at
	// a join's first renewal, removed by a clean release only.
	heldMu sync.Mutex
	held   map[string]bool
}

// checkHeld turns a held file of this boot (watchdog.WriteHeld), left by a
// daemon that was killed or crashed while the watchdog guarded its
// lockspaces, into a pending reset: its peers will consider this host dead
// when its watchdog should have fired, so a new daemon must not feed it.
// A held file of an earlier boot is cleared (the host did reset).
func (d *Daemon) checkHeld() error {
	held, err := watchdog.LoadHeld(d.cfg.RunDir)
	if err != nil {
		return fmt.Errorf("daemon: %w; refusing to start rather than feed a host that may have to reset", err)
	}
	if held == nil {
		return nil
	}
	if held.ThisBoot(d.bootID) {
		reason := fmt.Sprintf("the previous daemon (pid %d) stopped without releasing lockspaces %s (killed, crashed, or a lockspace had failed): its peers will consider this host dead when its watchdog would have fired, so the watchdog must fire",
			held.PID, strings.Join(held.Lockspaces, ", "))
		if err := watchdog.WriteMarkerBoot(d.cfg.RunDir, reason, d.bootID); err != nil {
			return fmt.Errorf("daemon: %w; refusing to start rather than feed a host that must reset", err)
		}
	} else {
		d.log.Warn("lockspaces held before an earlier boot: the host did reset; clearing the record",
			"lockspaces", held.Lockspaces, "held_boot_id", held.BootID, "boot_id", d.bootID)
	}
	if err := watchdog.ClearHeld(d.cfg.RunDir); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	return nil
}

// holdLockspace records, at a join's first renewal, that the watchdog
// guards lockspace name (nothing to record without a watchdog). It runs in
// the lockspace loop once per join: a write of a small file in the run
// directory (a tmpfs).
func (d *Daemon) holdLockspace(name string) {
	if _, none := d.wdev.(watchdog.None); none {
		return
	}
	d.heldMu.Lock()
	defer d.heldMu.Unlock()
	if d.held[name] {
		return
	}
	if d.held == nil {
		d.held = make(map[string]bool)
	}
	d.held[name] = true
	d.writeHeldLocked()
}

// releaseHeld forgets lockspace name after its clean release.
func (d *Daemon) releaseHeld(name string) {
	d.heldMu.Lock()
	defer d.heldMu.Unlock()
	if !d.held[name] {
		return
	}
	delete(d.held, name)
	d.writeHeldLocked()
}

func (d *Daemon) writeHeldLocked() {
	var err error
	if len(d.held) == 0 {
		err = watchdog.ClearHeld(d.cfg.RunDir)
	} else {
		names := make([]string, 0, len(d.held))
		for n := range d.held {
			names = append(names, n)
		}
		sort.Strings(names)
		err = watchdog.WriteHeld(d.cfg.RunDir, os.Getpid(), names, d.bootID)
	}
	if err != nil {
		d.log.Error("cannot record which lockspaces the watchdog guards; a daemon restarted after a crash could feed a host that must reset",
			"err", err)
	}
}

// setResetPending latches a reset: no lockspace may be joined any more.
func (d *Daemon) setResetPending(reason string) {
	d.resetMu.Lock()
	defer d.resetMu.Unlock()
	if d.resetPending == "" {
		d.resetPending = reason
	}
}

// pendingReset returns why this host must reset, or "".
func (d *Daemon) pendingReset() string {
	d.resetMu.Lock()
	defer d.resetMu.Unlock()
	return d.resetPending
}

// member is one lockspace of the daemon.
type member struct {
	spec     delta.Spec
	hostName string
	io       time.Duration
	cancel   context.CancelFunc // ends the join
	joined   chan struct{}      // closed when the join ends
	joinErr  error              // set before joined is closed

	// Guarded by Daemon.mu.
	state string
	since time.Time
	ls    *delta.Lockspace
	dev   delta.Device
	err   error // why the lockspace failed
	// wait is the join's current wait (delta.Config.OnAcquireWait).
	waitWhy   string
	waitUntil time.Time

	msg *messenger // the message side; set before the join starts
}

// New returns a Daemon for cfg. It resolves the group but has no side
// effects; Run starts the daemon.
func New(cfg Config) (*Daemon, error) {
	cfg = cfg.withDefaults()
	gid, err := lookupGroup(cfg.Group)
	if err != nil {
		return nil, err
	}
	if len(cfg.HostName) > leader.MaxHostName {
		return nil, fmt.Errorf("daemon: host name %q is %d bytes, at most %d", cfg.HostName, len(cfg.HostName), leader.MaxHostName)
	}
	return &Daemon{cfg: cfg, log: cfg.Logger, clk: cfg.Clock, gid: gid, bootID: cfg.BootID,
		ready: make(chan struct{}), done: make(chan struct{}), members: make(map[string]*member)}, nil
}

// lookupGroup resolves a group name or number; "" is our own gid.
func lookupGroup(g string) (uint32, error) {
	if g == "" {
		return uint32(os.Getgid()), nil
	}
	if n, err := strconv.ParseUint(g, 10, 32); err == nil {
		return uint32(n), nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("daemon: group %q: %w", g, err)
	}
	n, err := strconv.ParseUint(gr.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("daemon: group %q has gid %q", g, gr.Gid)
	}
	return uint32(n), nil
}

// Ready is closed once the daemon listens on its socket.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// SocketPath returns the daemon's socket path.
func (d *Daemon) SocketPath() string { return callback.SocketPath(d.cfg.RunDir) }

// Run starts the daemon and serves until it stops; see Daemon. If ctx ends,
// Run shuts down with force (every lockspace released).
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.start(); err != nil {
		d.cleanupStart()
		return err
	}
	d.log.Info("daemon started", "pid", os.Getpid(), "version", d.cfg.Version, "run_dir", d.cfg.RunDir,
		"socket", d.srv.Path(), "socket_mode", fmt.Sprintf("%#o", d.cfg.SocketMode), "group", d.gid,
		"host_name", d.cfg.HostName, "watchdog", d.wdev.String(), "watchdog_timeout", d.cfg.WatchdogTimeout)
	close(d.ready)
	if _, err := sdNotify(notifyReady); err != nil {
		d.log.Warn("cannot notify the service manager", "err", err)
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		d.log.Info("stopping: context ended; releasing every lockspace")
		if err := d.Shutdown(context.Background(), true); err != nil {
			d.log.Error("shutdown", "err", err)
		}
		<-d.done
	}
	d.wg.Wait()
	return d.runErr
}

// start sets up the run directory, the pid lock, the watchdog and the
// socket.
func (d *Daemon) start() error {
	if err := os.MkdirAll(d.cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("daemon: run directory: %w", err)
	}
	f, err := lockPIDFile(filepath.Join(d.cfg.RunDir, callback.PIDName))
	if err != nil {
		return err
	}
	d.pidFile = f
	d.ctx, d.cancel = context.WithCancel(context.Background())

	if d.cfg.StateDir != NoStateDir {
		st, err := state.Open(d.cfg.StateDir)
		if err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		d.store = st
	} else {
		d.log.Warn("NO STATE DIRECTORY (--state-dir none): sends are kept in memory only; a daemon crash loses the queued ones, and a restarted receiver may deliver again what it acked just before")
	}

	if err := d.checkHeld(); err != nil {
		return err
	}
	pol := watchdog.NewPolicy()
	marker, err := watchdog.LoadMarker(d.cfg.RunDir)
	if err != nil {
		return fmt.Errorf("daemon: %w; refusing to start rather than feed a host that may have to reset", err)
	}
	switch {
	case marker != nil && !marker.ThisBoot(d.bootID):
		d.log.Warn("reset marker from an earlier boot: the reset happened; clearing it",
			"reason", marker.Reason, "marker_boot_id", marker.BootID, "boot_id", d.bootID, "written", marker.Time)
		if err := watchdog.ClearMarker(d.cfg.RunDir); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	case marker != nil:
		pol.Reset("pending from before restart: " + marker.Reason)
		d.setResetPending(marker.Reason)
		d.log.Error("RESET PENDING: a reset was requested before this daemon restarted, in this boot; the watchdog will never be fed again, the host will reset, and no lockspace may be joined",
			"reason", marker.Reason, "marker", filepath.Join(d.cfg.RunDir, watchdog.MarkerName))
	}
	dev, err := watchdog.OpenSpec(d.cfg.Watchdog, d.cfg.WatchdogTimeout, d.clk)
	if err != nil {
		if errors.Is(err, watchdog.ErrNotWatchdog) {
			return fmt.Errorf("daemon: %w; use --watchdog none (no fencing) or --watchdog fake:FILE (tests)", err)
		}
		return fmt.Errorf("daemon: cannot open the watchdog: %w", err)
	}
	d.wdev = dev
	switch w := dev.(type) {
	case watchdog.None:
		d.log.Warn("WATCHDOG DISABLED (--watchdog none): this host is NOT fenced; if its renewals fail or it is told to reset, nothing resets it, yet peers will consider it dead after host_dead")
	case *watchdog.Fake:
		w.OnFire = d.crash
		d.log.Warn("fake watchdog: a fire exits the daemon (status 137) instead of resetting the host", "file", strings.TrimPrefix(w.String(), "fake:"))
	}
	// Feed at least four times per fire timeout.
	d.keeper = watchdog.NewKeeper(dev, pol, d.clk, min(watchdog.DefaultInterval, d.cfg.WatchdogTimeout/4), d.log)
	d.keeper.Start()

	srv, err := Listen(ServerConfig{Path: callback.SocketPath(d.cfg.RunDir), Mode: d.cfg.SocketMode,
		UID: uint32(os.Getuid()), GID: d.gid, Logger: d.log,
		IdleTimeout: d.cfg.IdleTimeout, MaxConns: d.cfg.MaxConns, MaxConnsPerUID: d.cfg.MaxConnsPerUID})
	if err != nil {
		return err
	}
	d.srv = srv
	srv.Handle(callback.OpAddLockspace, Op{Handler: d.opAddLockspace, Mutating: true})
	srv.Handle(callback.OpRemLockspace, Op{Handler: d.opRemLockspace, Mutating: true})
	srv.Handle(callback.OpStatus, Op{Handler: d.opStatus})
	srv.Handle(callback.OpHostStatus, Op{Handler: d.opHostStatus})
	srv.Handle(callback.OpShutdown, Op{Handler: d.opShutdown, Mutating: true})
	d.registerMessageOps(srv)
	srv.Serve()
	return nil
}

// cleanupStart undoes a failed start.
func (d *Daemon) cleanupStart() {
	if d.keeper != nil {
		d.keeper.Stop(true)
	} else if d.wdev != nil {
		d.wdev.Close()
	}
	if d.cancel != nil {
		d.cancel()
	}
	if d.pidFile != nil {
		d.pidFile.Close()
	}
	if d.store != nil {
		d.store.Close()
	}
}

// Shutdown stops the daemon. Without force it refuses, with an error
// wrapping ErrRefused, while lockspaces are joined or joining; with force
// it releases every lockspace first (cancelling joins). The watchdog is
// disarmed only if every lockspace was released cleanly. Shutdown must not
// be called from an op handler; it returns once Run is about to return.
func (d *Daemon) Shutdown(ctx context.Context, force bool) error {
	select {
	case <-d.done:
		return nil // stopped already (a fake watchdog fired)
	default:
	}
	err := d.stopLockspaces(ctx, force)
	if errors.Is(err, callback.ErrRefused) {
		return err
	}
	d.finish(nil)
	return err
}

// stopLockspaces refuses (without force) or releases every lockspace and
// marks the daemon stopping, so no new lockspace is added.
func (d *Daemon) stopLockspaces(ctx context.Context, force bool) error {
	d.mu.Lock()
	var names []string
	for n := range d.members {
		names = append(names, n)
	}
	sort.Strings(names)
	if !force && len(names) > 0 {
		d.mu.Unlock()
		return fmt.Errorf("%w: lockspaces joined: %s; remove them with rem-lockspace or use shutdown --force",
			callback.ErrRefused, strings.Join(names, ", "))
	}
	d.stopping = true
	ms := make([]*member, 0, len(names))
	for _, n := range names {
		ms = append(ms, d.members[n])
	}
	d.mu.Unlock()
	var errs []error
	for _, m := range ms {
		if _, err := d.remove(ctx, m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// finish stops the server and the watchdog keeper and makes Run return
// with err. It runs once.
func (d *Daemon) finish(err error) {
	d.finishOnce.Do(func() {
		if _, nerr := sdNotify(notifyStopping); nerr != nil {
			d.log.Warn("cannot notify the service manager", "err", nerr)
		}
		d.cancel()
		d.srv.Shutdown()
		if err == nil {
			if serr := d.keeper.Stop(true); serr != nil {
				d.log.Error("watchdog left armed", "err", serr)
				d.abandonFake()
			}
		} else {
			d.keeper.Stop(false)
			d.abandonFake()
		}
		d.pidFile.Close()
		if d.store != nil {
			d.store.Close()
		}
		d.runErr = err
		if err == nil {
			d.log.Info("daemon stopped")
		}
		close(d.done)
	})
}

// abandonFake makes a fake watchdog left armed do what the exit of the
// process does to it: nothing of the daemon may run once Run returned
// (a real device goes on counting and resets the host).
func (d *Daemon) abandonFake() {
	if f, ok := d.wdev.(*watchdog.Fake); ok {
		f.Abandon()
	}
}

// crash simulates the host reset when a fake watchdog fires: every
// lockspace stops at once, without release, and Run returns an error
// wrapping watchdog.ErrFired (the command exits with status 137).
func (d *Daemon) crash() {
	d.log.Error("FAKE WATCHDOG FIRED: simulating a host reset; stopping all lockspace I/O now and exiting",
		"decision", d.keeper.Status().String())
	d.halt(fmt.Errorf("daemon: simulated host reset: %w", watchdog.ErrFired))
}

// halt stops every lockspace at once, without release and without ending
// their sends (their journals keep them unfinished, as after a kill), and
// makes Run return err.
func (d *Daemon) halt(err error) {
	d.mu.Lock()
	d.stopping = true
	ms := make([]*member, 0, len(d.members))
	for _, m := range d.members {
		ms = append(ms, m)
	}
	d.mu.Unlock()
	d.cancel()
	for _, m := range ms {
		m.cancel()
		<-m.joined
		d.mu.Lock()
		ls := m.ls
		d.mu.Unlock()
		if ls != nil {
			ls.Close()
		}
		m.msg.closeState()
	}
	d.finish(err)
}

// ioTimeoutOf validates a requested io_timeout.
func ioTimeoutOf(p *int) (time.Duration, error) {
	if p == nil {
		return delta.DefaultIOTimeout, nil
	}
	if *p < 1 || *p > 255 {
		return 0, fmt.Errorf("daemon: io_timeout %d: must be 1..255 seconds", *p)
	}
	return time.Duration(*p) * time.Second, nil
}

func (d *Daemon) opAddLockspace(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	spec, err := delta.ParseSpec(req.Spec)
	if err != nil {
		return Invalid("spec", fmt.Errorf("daemon: add_lockspace: %w", err))
	}
	if spec.HostID < 1 || spec.HostID > leader.MaxHostID {
		return Invalid("spec", fmt.Errorf("daemon: add_lockspace %s: host_id %d out of range 1..%d", spec.Name, spec.HostID, leader.MaxHostID))
	}
	iot, err := ioTimeoutOf(req.IOTimeout)
	if err != nil {
		return Invalid("io_timeout", err)
	}
	hostName := req.HostName
	if hostName == "" {
		hostName = d.cfg.HostName
	}
	if len(hostName) > leader.MaxHostName {
		return Invalid("host_name", fmt.Errorf("daemon: add_lockspace %s: host name %q is %d bytes, at most %d",
			spec.Name, hostName, len(hostName), leader.MaxHostName))
	}
	m, resp := d.startJoin(spec, iot, hostName, c.Peer())
	if resp != nil {
		return resp
	}
	select {
	case <-m.joined:
	case <-ctx.Done():
		return Fail(callback.CodeCancelled, fmt.Errorf("daemon: add_lockspace %s: daemon stopping", spec.Name))
	}
	if err := m.joinErr; err != nil {
		resp := Fail(joinCode(err), fmt.Errorf("daemon: add_lockspace %s: %w", spec, err))
		if errors.Is(err, leader.ErrHostID) { // past the area's max_hosts
			resp.Field = "spec"
		}
		return resp
	}
	d.mu.Lock()
	st := d.lockspaceStatusLocked(m)
	d.mu.Unlock()
	return &callback.Response{OK: true, Lockspace: &st}
}

// joinCode classifies a join error.
func joinCode(err error) string {
	switch {
	case errors.Is(err, delta.ErrHostIDBusy):
		return callback.CodeBusy
	case errors.Is(err, context.Canceled):
		return callback.CodeCancelled
	case errors.Is(err, leader.ErrMagic), errors.Is(err, leader.ErrVersion), errors.Is(err, leader.ErrName),
		errors.Is(err, leader.ErrChecksum), errors.Is(err, leader.ErrSectorSize), errors.Is(err, leader.ErrGeometry),
		errors.Is(err, leader.ErrHostID), errors.Is(err, leader.ErrNameTooLong), errors.Is(err, delta.ErrMisaligned),
		errors.Is(err, delta.ErrDeviceTooSmall), errors.Is(err, delta.ErrNotDevice), errors.Is(err, fs.ErrNotExist):
		return callback.CodeInvalid
	}
	return callback.CodeIO
}

// startJoin registers a joining member and starts its join, or returns the
// failure response.
func (d *Daemon) startJoin(spec delta.Spec, iot time.Duration, hostName string, peer Peer) (*member, *callback.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return nil, Fail(callback.CodeRefused, fmt.Errorf("daemon: add_lockspace %s: daemon is shutting down", spec.Name))
	}
	if why := d.pendingReset(); why != "" {
		return nil, Fail(callback.CodeRefused, fmt.Errorf("daemon: add_lockspace %s: this host must reset (%s); it joins no lockspace, so that peers never see a doomed host LIVE",
			spec.Name, why))
	}
	if old := d.members[spec.Name]; old != nil {
		return nil, Fail(callback.CodeExists, fmt.Errorf("daemon: add_lockspace %s: lockspace %s already %s as %s",
			spec, spec.Name, old.state, old.spec))
	}
	msg := d.newMessenger(spec.Name, spec.HostID, iot)
	if d.store != nil {
		if err := msg.openState(d.store); err != nil {
			return nil, Fail(callback.CodeIO, fmt.Errorf("daemon: add_lockspace %s: %w", spec.Name, err))
		}
	}
	ctx, cancel := context.WithCancel(d.ctx)
	m := &member{spec: spec, hostName: hostName, io: iot, cancel: cancel, joined: make(chan struct{}),
		state: callback.StateJoining, since: d.clk.Now(), msg: msg}
	d.members[spec.Name] = m
	d.log.Info("adding lockspace", "lockspace", spec.Name, "host_id", spec.HostID, "path", spec.Path,
		"offset", spec.Offset, "io_timeout", iot, "host_name", hostName, "by", peer.String())
	d.wg.Add(1)
	go d.join(ctx, m)
	return m, nil
}

// join acquires m's host id and starts watching the lockspace.
func (d *Daemon) join(ctx context.Context, m *member) {
	defer d.wg.Done()
	name := m.spec.Name
	var ls *delta.Lockspace
	dev, err := d.cfg.OpenDevice(m.spec.Path)
	if err == nil {
		cfg := delta.Config{
			Name: name, HostID: m.spec.HostID, Offset: m.spec.Offset, HostName: m.hostName,
			IOTimeout: m.io, WatchdogTimeout: d.cfg.WatchdogTimeout, Clock: d.clk, Logger: d.log,
			PollInterval: d.cfg.PollInterval,
			Messenger:    m.msg,
			OnRenewal: func(ev delta.RenewalEvent) {
				if ev.OK {
					d.holdLockspace(name)
					d.keeper.SetExpiry(name, ev.Expiry)
				}
			},
			OnAcquireWait: func(why string, until time.Time) {
				d.mu.Lock()
				m.waitWhy, m.waitUntil = why, until
				d.mu.Unlock()
			},
		}
		if d.cfg.Lockspace != nil {
			d.cfg.Lockspace(&cfg)
		}
		ls, err = delta.Join(ctx, delta.NewIO(dev, d.clk), cfg)
		if err != nil {
			dev.Close()
		}
	}
	log := d.log.With("lockspace", name, "host_id", m.spec.HostID)
	d.mu.Lock()
	if err != nil {
		delete(d.members, name)
		m.joinErr = err
	} else {
		m.ls, m.dev, m.state, m.since = ls, dev, callback.StateJoined, d.clk.Now()
		m.msg.setLockspace(ls)
	}
	d.mu.Unlock()
	if err != nil {
		// Listeners that registered while it joined learn why it ended.
		m.msg.stop(fmt.Sprintf("add_lockspace failed: %v", err))
		m.msg.closeState()
	}
	close(m.joined)
	if err != nil {
		log.Warn("add_lockspace failed", "err", err)
		return
	}
	log.Info("lockspace joined", "generation", ls.Generation())
	d.wg.Add(1)
	go d.watch(m, ls)
}

// watch marks m failed if its loop stops with an error. The watchdog
// expiry of a failed lockspace stays: the host must reset.
func (d *Daemon) watch(m *member, ls *delta.Lockspace) {
	defer d.wg.Done()
	<-ls.Done()
	err := ls.Err()
	if err == nil {
		return
	}
	d.mu.Lock()
	if m.state == callback.StateJoined {
		m.state, m.err = callback.StateFailed, err
	}
	d.mu.Unlock()
	// Its messages can go nowhere now: end the sends and the listeners.
	m.msg.stop(fmt.Sprintf("lockspace failed: %v", err))
	d.log.Error("lockspace failed; its watchdog expiry stays, so the host resets unless the watchdog is none",
		"lockspace", m.spec.Name, "host_id", m.spec.HostID, "err", err, "watchdog", d.wdev.String())
}

func (d *Daemon) opRemLockspace(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	name, hostID := req.Name, uint64(0)
	if req.Spec != "" {
		name = req.Spec
		if strings.Contains(req.Spec, ":") {
			spec, err := delta.ParseSpec(req.Spec)
			if err != nil {
				return Invalid("spec", fmt.Errorf("daemon: rem_lockspace: %w", err))
			}
			name, hostID = spec.Name, spec.HostID
		}
	}
	if name == "" {
		return Invalid("name", errors.New("daemon: rem_lockspace: no lockspace named"))
	}
	d.mu.Lock()
	m := d.members[name]
	switch {
	case m == nil:
		d.mu.Unlock()
		return Fail(callback.CodeNotJoined, fmt.Errorf("daemon: rem_lockspace: lockspace %s is not joined", name))
	case hostID != 0 && hostID != m.spec.HostID:
		d.mu.Unlock()
		return Fail(callback.CodeInvalid, fmt.Errorf("daemon: rem_lockspace: lockspace %s is joined with host_id %d, not %d",
			name, m.spec.HostID, hostID))
	case m.state == callback.StateRemoving:
		d.mu.Unlock()
		return Fail(callback.CodeRefused, fmt.Errorf("daemon: rem_lockspace: lockspace %s is already being removed", name))
	}
	d.mu.Unlock()
	d.log.Info("removing lockspace", "lockspace", name, "host_id", m.spec.HostID, "by", c.Peer().String())
	warn, err := d.remove(ctx, m)
	if err != nil {
		return Fail("", err)
	}
	return &callback.Response{OK: true, Warning: warn}
}

// remove ends member m: cancels its join, or releases its lease, and
// forgets it. A failed lockspace is forgotten with a warning and keeps its
// watchdog expiry. A release that fails forgets the lockspace too (its
// loop has stopped) and returns an error wrapping ErrIO.
func (d *Daemon) remove(ctx context.Context, m *member) (warning string, err error) {
	name := m.spec.Name
	d.mu.Lock()
	prev := m.state
	m.state = callback.StateRemoving
	d.mu.Unlock()
	if prev == callback.StateJoining {
		m.cancel()
		<-m.joined
	}
	d.mu.Lock()
	ls, dev, failure := m.ls, m.dev, m.err
	d.mu.Unlock()
	if ls == nil { // the join failed or was cancelled, and forgot m
		d.log.Info("join cancelled", "lockspace", name, "host_id", m.spec.HostID)
		return "", nil
	}
	forget := func() {
		d.mu.Lock()
		if d.members[name] == m {
			delete(d.members, name)
		}
		d.mu.Unlock()
		m.cancel()
		dev.Close()
		d.lockspaceGone(m, "lockspace removed")
	}
	if failure == nil {
		failure = ls.Err()
	}
	if failure != nil {
		ls.Close()
		forget()
		if _, none := d.wdev.(watchdog.None); none {
			return fmt.Sprintf("lockspace %s had failed (%v); removed without release, its lease expires", name, failure), nil
		}
		return fmt.Sprintf("lockspace %s had failed (%v); removed without release; its watchdog expiry is kept, so this host will reset", name, failure), nil
	}
	if err := ls.Release(ctx); err != nil {
		forget()
		d.log.Error("release failed; the lease expires and the watchdog expiry is kept", "lockspace", name, "err", err)
		return "", fmt.Errorf("%w: rem_lockspace %s: %v; lockspace removed, its lease left to expire and its watchdog expiry kept", callback.ErrIO, name, err)
	}
	d.keeper.Remove(name)
	d.releaseHeld(name)
	forget()
	d.log.Info("lockspace removed", "lockspace", name, "host_id", m.spec.HostID)
	return "", nil
}

func (d *Daemon) opStatus(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	dec := d.keeper.Status()
	st := &callback.DaemonStatus{
		PID: os.Getpid(), Version: d.cfg.Version, RunDir: d.cfg.RunDir, HostName: d.cfg.HostName,
		Watchdog: callback.WatchdogStatus{Device: d.wdev.String(), TimeoutSec: d.wdev.Timeout().Seconds(),
			Feeding: dec.Feed, Reset: dec.Reset, Decision: dec.String()},
		Lockspaces: []callback.LockspaceStatus{},
	}
	st.Connections, st.ConnectionsRefused = d.srv.Stats()
	d.mu.Lock()
	for _, m := range d.members {
		st.Lockspaces = append(st.Lockspaces, d.lockspaceStatusLocked(m))
	}
	d.mu.Unlock()
	sort.Slice(st.Lockspaces, func(i, j int) bool { return st.Lockspaces[i].Name < st.Lockspaces[j].Name })
	return &callback.Response{OK: true, Status: st}
}

// lockspaceStatusLocked describes m. Callers hold d.mu.
func (d *Daemon) lockspaceStatusLocked(m *member) callback.LockspaceStatus {
	s := callback.LockspaceStatus{
		Name: m.spec.Name, HostID: m.spec.HostID, HostName: m.hostName, Path: m.spec.Path, Offset: m.spec.Offset,
		State: m.state, IOTimeout: int(m.io / time.Second), Since: m.since,
	}
	if m.err != nil {
		s.Error = m.err.Error()
	}
	now := d.clk.Now()
	if m.state == callback.StateJoining && m.waitUntil.After(now) {
		s.Wait = &callback.WaitStatus{Reason: m.waitWhy, Until: m.waitUntil, LeftSec: m.waitUntil.Sub(now).Seconds()}
	}
	if m.ls == nil {
		return s
	}
	ls := m.ls.Status()
	s.Generation, s.Health = ls.Generation, string(ls.Health)
	s.SectorSize, s.AlignSize, s.MaxHosts = ls.SectorSize, ls.AlignSize, ls.MaxHosts
	s.LastRenewal, s.LastRenewalAge, s.Expiry = ls.LastRenewal, now.Sub(ls.LastRenewal).Seconds(), ls.Expiry
	s.Renewals, s.RenewFails, s.Reads, s.FullScans, s.Writes = ls.Renewals, ls.RenewFails, ls.Reads, ls.FullScans, ls.Writes
	s.ReadBytes, s.WriteBytes, s.IOTimeouts, s.IOErrors = ls.IO.ReadBytes, ls.IO.WriteBytes, ls.IO.Timeouts, ls.IO.Errors
	s.MaxReadSec, s.MaxWriteSec, s.PollSec = ls.IO.MaxRead.Seconds(), ls.IO.MaxWrite.Seconds(), ls.PollEvery.Seconds()
	s.IOReads, s.IOWrites, s.ReadSec, s.WriteSec = ls.IO.Reads, ls.IO.Writes, ls.IO.ReadTime.Seconds(), ls.IO.WriteTime.Seconds()
	s.LastReadSec, s.LastWriteSec = ls.IO.LastRead.Seconds(), ls.IO.LastWrite.Seconds()
	s.Messages = m.msg.status()
	b := ls.Doorbell
	s.Doorbell = &callback.DoorbellStatus{Index: b.Index, Polls: b.Polls, PollErrors: b.PollErrors, Bad: b.Bad, Foreign: b.Foreign,
		RingsWritten: b.RingsWritten, RingsRefused: b.RingsRefused, Recreated: b.Recreated, RingErrors: b.RingErrors,
		TargetedReads: b.TargetedReads, TargetedBytes: b.TargetedBytes, Scans: b.Scans}
	rs := m.msg.ringStats()
	s.Doorbell.RingsReceived, s.Doorbell.Gaps, s.Doorbell.TargetsRung = rs.RingsReceived, rs.Gaps, rs.RingsSent
	if ls.Err != nil && s.Error == "" {
		s.Error = ls.Err.Error()
	}
	return s
}

func (d *Daemon) opHostStatus(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	name := req.Name
	if name == "" && req.Spec != "" {
		name, _, _ = strings.Cut(req.Spec, ":")
	}
	d.mu.Lock()
	m := d.members[name]
	var ls *delta.Lockspace
	if m != nil {
		ls = m.ls
	}
	d.mu.Unlock()
	if m == nil {
		return Fail(callback.CodeNotJoined, fmt.Errorf("daemon: host_status: lockspace %q is not joined", name))
	}
	if ls == nil {
		return Fail(callback.CodeNotJoined, fmt.Errorf("daemon: host_status: lockspace %s is still joining", name))
	}
	now := d.clk.Now()
	hosts := []callback.HostStatus{}
	for _, h := range ls.Hosts() {
		hs := callback.HostStatus{
			HostID: h.HostID, OwnerID: h.OwnerID, Generation: h.Generation, Timestamp: h.Timestamp,
			State: h.State.String(), HostName: h.Name, IOTimeout: int(h.IOTimeout),
			Self: h.HostID == ls.HostID(), LastChange: h.LastLive, DeadAt: h.DeadAt, BadExt: h.BadExt,
			WatchdogSec: int(h.Watchdog),
		}
		switch {
		case h.State == delta.StateFree:
		case h.Messenger:
			hs.Runs = "sanlock-msg"
		default:
			hs.Runs = "sanlock"
		}
		if hs.Self {
			hs.Runs, hs.DeadAt = "sanlock-msg", time.Time{}
		}
		if !h.LastLive.IsZero() {
			hs.LastChangeAge = now.Sub(h.LastLive).Seconds()
		}
		if h.Bad != nil {
			hs.Bad = h.Bad.Error()
		}
		hosts = append(hosts, hs)
	}
	return &callback.Response{OK: true, Hosts: hosts}
}

func (d *Daemon) opShutdown(ctx context.Context, c *Conn, req *callback.Request) *callback.Response {
	d.log.Info("shutdown requested", "force", req.Force, "by", c.Peer().String())
	err := d.stopLockspaces(ctx, req.Force)
	if errors.Is(err, callback.ErrRefused) {
		d.log.Info("shutdown refused", "err", err)
		return Fail(callback.CodeRefused, err)
	}
	if err != nil {
		d.log.Error("shutdown: some lockspaces were not released cleanly", "err", err)
	}
	c.AfterReply(func() { go d.finish(nil) })
	resp := &callback.Response{OK: true, PID: os.Getpid()}
	if err != nil {
		resp.Warning = err.Error()
	}
	return resp
}
