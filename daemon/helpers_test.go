package daemon_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// devices is a set of in-memory lockspace devices by path, shared by the
// daemons of a test.
type devices struct {
	mu   sync.Mutex
	devs map[string]delta.Device
}

func newDevices() *devices { return &devices{devs: make(map[string]delta.Device)} }

// add registers dev under path.
func (ds *devices) add(path string, dev delta.Device) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.devs[path] = dev
}

// open is a Config.OpenDevice.
func (ds *devices) open(path string) (delta.Device, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	d, ok := ds.devs[path]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	return d, nil
}

// lockspace makes a 512-byte-sector lockspace called name on a new memory
// device registered as path.
func (ds *devices) lockspace(t testing.TB, path, name string) *delta.MemDevice {
	t.Helper()
	dev := delta.NewMemDevice(1<<20, 0)
	geo, err := leader.DefaultGeometry(512)
	if err != nil {
		t.Fatal(err)
	}
	err = delta.Init(context.Background(), delta.NewIO(dev, clock.Real{}),
		delta.InitOptions{Name: name, Geometry: geo, IOTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ds.add(path, dev)
	return dev
}

// testDaemon is a running daemon and its run directory.
type testDaemon struct {
	*daemon.Daemon
	dir    string
	done   chan struct{} // closed when Run returned
	runErr error         // Run's result, once done is closed
}

// startDaemon runs a daemon on ds in a new run directory; mutate may
// change its Config. The daemon is shut down with force at cleanup.
func startDaemon(t testing.TB, ds *devices, mutate func(*daemon.Config)) *testDaemon {
	t.Helper()
	cfg := daemon.Config{
		RunDir:          t.TempDir(),
		StateDir:        t.TempDir(),
		Watchdog:        "none",
		WatchdogTimeout: time.Second,
		OpenDevice:      ds.open,
		Version:         "test",
		Logger:          testLogger(t),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	td := &testDaemon{Daemon: d, dir: cfg.RunDir, done: make(chan struct{})}
	go func() {
		td.runErr = d.Run(context.Background())
		close(td.done)
	}()
	select {
	case <-d.Ready():
	case <-td.done:
		t.Fatalf("daemon did not start: %v", td.runErr)
	}
	t.Cleanup(func() {
		d.Shutdown(context.Background(), true)
		select {
		case <-td.done:
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return td
}

// dial connects to td.
func (td *testDaemon) dial(t testing.TB) *callback.Client {
	t.Helper()
	c, err := callback.Dial(context.Background(), td.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testLogger logs through t, so a failing test shows the daemon's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// ctxT returns a context that ends with the test, bounded by d.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wantCode checks that err wraps sentinel and carries code.
func wantCode(t testing.TB, err error, sentinel error, code string) {
	t.Helper()
	var e *callback.Error
	if !errors.Is(err, sentinel) || !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got error %v, want %v (code %q)", err, sentinel, code)
	}
}

func ptr[T any](v T) *T { return &v }
