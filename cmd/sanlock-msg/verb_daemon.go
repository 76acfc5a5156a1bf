package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

const daemonAbout = `
Runs the sanlock-msg daemon in the foreground (it never forks; run it under
systemd or a shell). It listens on RUN_DIR/sanlock-msg.sock for the client
verbs (add-lockspace, rem-lockspace, status, host-status, shutdown, send,
listen...), holds the host ids it is asked to join, renews them on
sanlock's schedule, and feeds the watchdog only while every lockspace
renews in time. It logs to stderr.

Only root, the daemon's user and members of --group may change its state;
anyone who can open the socket may read status. SIGTERM and SIGINT stop
the daemon when no lockspace is joined; otherwise it refuses and keeps
running (use 'sanlock-msg shutdown --force'). With --watchdog fake:FILE a
watchdog fire makes the daemon exit with status 137 instead of resetting
the host.

Clients are held to --max-conns-per-uid connections each, and users
other than root to --max-conns in all; past a cap a connection gets an
error line and is closed, and the daemon goes on renewing. A connection
that sends no request for --idle-timeout is closed (listeners excepted).`

// pollSetting maps --poll-interval to delta.Config.PollInterval, where 0
// means the default and a negative value disables polls.
func pollSetting(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// envStateDir names the state directory when --state-dir is not given.
const envStateDir = "SANLOCK_MSG_STATE_DIR"

// graceSetting maps --listener-grace to daemon.Config.ListenerGrace, where
// 0 means the default and a negative value none.
func graceSetting(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// runDaemon implements `sanlock-msg daemon`.
func runDaemon(ctx context.Context, e *env, args []string) int {
	c := newCommand("daemon", "[--run-dir DIR] [--state-dir DIR] [-D] [-e HOST_NAME] [--watchdog none|fake:FILE|PATH] [--watchdog-timeout 60s] [--group G] [--socket-mode 0660] [--poll-interval 250ms] [--listener-grace 10s] [--max-conns N] [--max-conns-per-uid N] [--idle-timeout D]", daemonAbout)
	runDir := c.runDirFlag()
	c.fs.BoolP("debug", "D", false, "accepted for sanlock habits; the daemon always runs in the foreground")
	hostName := c.fs.StringP("host-name", "e", "", "host name written into our sectors (default: a new random UUID.nodename at each start, as sanlock; give the same name to reacquire quickly after a crash)")
	wd := c.fs.String("watchdog", "/dev/watchdog", "watchdog: a device path, 'none' (no fencing!) or 'fake:FILE' (tests: events are logged to FILE)")
	wdTimeout := c.fs.Duration("watchdog-timeout", delta.DefaultWatchdogTimeout, "watchdog fire timeout W; must be the same on every host")
	group := c.fs.String("group", "", "group (name or gid) allowed to change the daemon's state; the socket's group (default: the daemon's gid)")
	mode := c.fs.String("socket-mode", "0660", "permission bits of the socket, in octal")
	poll := c.fs.Duration("poll-interval", delta.DefaultPollInterval, "read of our doorbell between renewals (one sector); stretched on a crowded area so reads stay within sanlock's; 0 or negative: renewals only, as sanlock (no doorbells, slow messages)")
	maxConns := c.fs.Int("max-conns", daemon.DefaultMaxConns, "most client connections of all users but root together")
	maxPerUID := c.fs.Int("max-conns-per-uid", daemon.DefaultMaxConnsPerUID, "most client connections of one user, root included (listeners count)")
	idle := c.fs.Duration("idle-timeout", daemon.DefaultIdleTimeout, "close a client connection that sends no request for this long (listeners excepted)")
	stateDir := c.fs.String("state-dir", "", "durable outbox and receive marks (default: $"+envStateDir+", else "+daemon.DefaultStateDir+"); 'none': memory only")
	grace := c.fs.Duration("listener-grace", 10*time.Second, "after a join, how long a message that finds no listener waits on its sender's disk before it is acked no-listener")
	if done, st := c.parse(e, args); done {
		return st
	}
	switch {
	case *maxConns < 1:
		return c.usageError(e, fmt.Sprintf("--max-conns %d: want at least 1", *maxConns))
	case *maxPerUID < 1:
		return c.usageError(e, fmt.Sprintf("--max-conns-per-uid %d: want at least 1", *maxPerUID))
	case *idle < time.Second:
		return c.usageError(e, fmt.Sprintf("--idle-timeout %v: want at least 1s", *idle))
	}
	m, err := strconv.ParseUint(*mode, 8, 32)
	if err != nil || m > 0o777 {
		return c.usageError(e, "--socket-mode "+strconv.Quote(*mode)+": want octal permission bits such as 0660")
	}
	if *wdTimeout < watchdog.MinTimeout {
		return c.usageError(e, "--watchdog-timeout "+wdTimeout.String()+": want at least 1s")
	}
	if *grace < 0 {
		return c.usageError(e, "--listener-grace must not be negative")
	}
	sd := *stateDir
	if sd == "" {
		sd = e.getenv(envStateDir)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := daemon.New(daemon.Config{
		RunDir:          callback.ResolveRunDir(*runDir, e.getenv),
		Group:           *group,
		SocketMode:      os.FileMode(m),
		HostName:        *hostName,
		Watchdog:        *wd,
		WatchdogTimeout: *wdTimeout,
		Logger:          log,
		Version:         version,
		PollInterval:    pollSetting(*poll),
		MaxConns:        *maxConns,
		MaxConnsPerUID:  *maxPerUID,
		IdleTimeout:     *idle,
		StateDir:        sd,
		ListenerGrace:   graceSetting(*grace),
	})
	if err != nil {
		return fail(e, "daemon", err)
	}

	// SIGTERM/SIGINT: exit only if no lockspace is joined, as sanlock.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		for {
			select {
			case s := <-sigs:
				log.Info("signal received", "signal", s.String())
				if err := d.Shutdown(context.Background(), false); errors.Is(err, callback.ErrRefused) {
					log.Warn("refusing to exit while lockspaces are joined", "err", err)
				}
			case <-stopped:
				return
			}
		}
	}()

	err = d.Run(context.Background())
	switch {
	case errors.Is(err, watchdog.ErrFired):
		log.Error("exiting with status 137 as if the host had been reset", "err", err)
		return 137
	case err != nil:
		return fail(e, "daemon", err)
	}
	return exitOK
}
