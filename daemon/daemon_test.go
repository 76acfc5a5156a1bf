package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
	"github.com/sanlock-msg/sanlock-msg/testimg"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

func TestDaemon_addStatusRem(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	dev := ds.lockspace(t, "img", "LS")
	td := startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-a" })
	c := td.dial(t)
	ctx := ctxT(t, time.Minute)

	start := time.Now()
	ls, err := c.AddLockspace(ctx, "LS:3:img:0", callback.AddOptions{IOTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joined in %v", time.Since(start))
	if ls.Name != "LS" || ls.HostID != 3 || ls.Generation != 1 || ls.State != callback.StateJoined ||
		ls.HostName != "host-a" || ls.IOTimeout != 1 || ls.SectorSize != 512 || ls.MaxHosts != 2000 {
		t.Errorf("got %+v, want LS host 3 generation 1 joined as host-a, io_timeout 1, 512/2000", ls)
	}

	// Two renewals (2·io + 0.5 s each) must show up in status.
	time.Sleep(5500 * time.Millisecond)
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.RunDir != td.dir || st.Version != "test" || st.Watchdog.Device != "none" || !st.Watchdog.Feeding {
		t.Errorf("got daemon status %+v", st)
	}
	if len(st.Lockspaces) != 1 {
		t.Fatalf("got %d lockspaces, want 1", len(st.Lockspaces))
	}
	s := st.Lockspaces[0]
	if s.Health != "ok" || s.Renewals < 2 || s.RenewFails != 0 || s.LastRenewalAge > 3 || s.Writes < 2 || s.ReadBytes == 0 {
		t.Errorf("got lockspace status %+v, want healthy with >= 2 renewals", s)
	}
	if s.IOReads < s.Reads || s.IOWrites < s.Writes || s.ReadSec <= 0 || s.WriteSec <= 0 ||
		s.LastReadSec > s.MaxReadSec || s.LastWriteSec > s.MaxWriteSec || s.ReadSec < s.MaxReadSec {
		t.Errorf("got I/O latency counters %+v, want every read and write counted with its latency", s)
	}
	if got, want := s.Expiry.Sub(s.LastRenewal), 8*time.Second; got != want {
		t.Errorf("expiry - last renewal = %v, want %v", got, want)
	}

	hosts, err := c.HostStatus(ctx, "LS")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].HostID != 3 || hosts[0].State != "LIVE" || !hosts[0].Self ||
		hosts[0].Runs != "sanlock-msg" || hosts[0].Generation != 1 || hosts[0].HostName != "host-a" {
		t.Errorf("got hosts %+v, want only host 3 LIVE, ourselves", hosts)
	}
	if _, err := c.HostStatus(ctx, "nope"); err == nil {
		t.Error("host_status of an unknown lockspace succeeded")
	} else {
		wantCode(t, err, callback.ErrNotJoined, callback.CodeNotJoined)
	}

	if _, err := c.RemLockspace(ctx, "LS:4:img:0"); err == nil {
		t.Error("rem_lockspace with the wrong host_id succeeded")
	} else {
		wantCode(t, err, callback.ErrInvalid, callback.CodeInvalid)
	}
	if w, err := c.RemLockspace(ctx, "LS:3:img:0"); err != nil || w != "" {
		t.Fatalf("rem_lockspace: warning %q, err %v", w, err)
	}
	r, err := leader.DecodeRecord(dev.Bytes(2*512, 512))
	if err != nil {
		t.Fatal(err)
	}
	if r.Timestamp != 0 || r.OwnerID != 3 || r.OwnerGeneration != 1 {
		t.Errorf("after release: timestamp %d owner %d generation %d, want 0, 3, 1", r.Timestamp, r.OwnerID, r.OwnerGeneration)
	}
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Lockspaces) != 0 {
		t.Errorf("after rem: %d lockspaces, want 0", len(st.Lockspaces))
	}
	if _, err := c.RemLockspace(ctx, "LS"); err == nil {
		t.Error("second rem_lockspace succeeded")
	} else {
		wantCode(t, err, callback.ErrNotJoined, callback.CodeNotJoined)
	}

	// Rejoin: the generation goes up.
	ls, err = c.AddLockspace(ctx, "LS:3:img:0", callback.AddOptions{IOTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if ls.Generation != 2 {
		t.Errorf("rejoin: generation %d, want 2", ls.Generation)
	}
}

func TestDaemon_addBadInput(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	ds.add("zeros", delta.NewMemDevice(1<<20, 0))
	td := startDaemon(t, ds, nil)
	c := td.dial(t)
	ctx := ctxT(t, time.Minute)

	tests := []struct {
		name string
		req  callback.Request
		want error
	}{
		{"no spec", callback.Request{Op: callback.OpAddLockspace}, callback.ErrInvalid},
		{"bad spec", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:x:img:0"}, callback.ErrInvalid},
		{"host_id 0", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:0:img:0"}, callback.ErrInvalid},
		{"host_id 2001", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:2001:img:0"}, callback.ErrInvalid},
		{"io_timeout 0", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:1:img:0", IOTimeout: ptr(0)}, callback.ErrInvalid},
		{"io_timeout 256", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:1:img:0", IOTimeout: ptr(256)}, callback.ErrInvalid},
		{"host name too long", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:1:img:0", HostName: strings.Repeat("x", 48)}, callback.ErrInvalid},
		{"not a lockspace", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:1:zeros:0", IOTimeout: ptr(1)}, callback.ErrInvalid},
		{"name mismatch", callback.Request{Op: callback.OpAddLockspace, Spec: "OTHER:1:img:0", IOTimeout: ptr(1)}, callback.ErrInvalid},
		{"no such path", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:1:missing:0", IOTimeout: ptr(1)}, callback.ErrInvalid},
		{"offset past the end", callback.Request{Op: callback.OpAddLockspace, Spec: "LS:1:img:2M", IOTimeout: ptr(1)}, callback.ErrInvalid},
		{"unknown op", callback.Request{Op: "frobnicate"}, callback.ErrUnsupported},
		{"protocol version", callback.Request{V: 99, Op: callback.OpStatus}, callback.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Do(ctx, tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}
	// The daemon is unchanged: nothing joined, still answering.
	st, err := c.Status(ctx)
	if err != nil || len(st.Lockspaces) != 0 {
		t.Fatalf("status after bad input: %+v, %v", st, err)
	}
}

func TestDaemon_secondAdd(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	td := startDaemon(t, ds, nil)
	ctx := ctxT(t, time.Minute)
	c1, c2 := td.dial(t), td.dial(t)

	// Second add while the first is joining.
	errc := make(chan error, 1)
	go func() {
		_, err := c1.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second})
		errc <- err
	}()
	waitState(t, c2, "LS", callback.StateJoining)
	_, err := c2.AddLockspace(ctx, "LS:2:img:0", callback.AddOptions{IOTimeout: time.Second})
	wantCode(t, err, callback.ErrExists, callback.CodeExists)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// And once joined.
	_, err = c2.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second})
	wantCode(t, err, callback.ErrExists, callback.CodeExists)
}

// waitState waits until lockspace name is in state.
func waitState(t *testing.T, c *callback.Client, name, state string) callback.LockspaceStatus {
	t.Helper()
	return waitStateFor(t, c, name, state, 20*time.Second)
}

// TestDaemon_busy: a host id renewed by another daemon is not taken: the
// add fails with ErrBusy after the acquire wait (8·io + W = 9 s here).
// A rem_lockspace during that wait cancels the join.
func TestDaemon_busy(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	a := startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-a" })
	b := startDaemon(t, ds, func(c *daemon.Config) { c.HostName = "host-b" })
	ctx := ctxT(t, time.Minute)
	if _, err := a.dial(t).AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	t.Run("busy", func(t *testing.T) {
		t.Parallel()
		// Parallel subtests may wait for a slot: each has its own deadline.
		ctx := ctxT(t, time.Minute)
		start := time.Now()
		_, err := b.dial(t).AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second})
		wantCode(t, err, callback.ErrBusy, callback.CodeBusy)
		if !strings.Contains(err.Error(), `"host-a", generation 1`) {
			t.Errorf("error %q does not name the holder and its generation", err)
		}
		if took := time.Since(start); took < 9*time.Second {
			t.Errorf("busy after %v, want after the 9 s acquire wait", took)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx := ctxT(t, time.Minute)
		c := startDaemon(t, ds, nil)
		errc := make(chan error, 1)
		go func() {
			_, err := c.dial(t).AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second})
			errc <- err
		}()
		cl := c.dial(t)
		waitState(t, cl, "LS", callback.StateJoining)
		time.Sleep(500 * time.Millisecond) // into the acquire wait
		// status says what the join waits for, and until when.
		st, err := cl.Status(ctx)
		if err != nil || len(st.Lockspaces) != 1 {
			t.Fatalf("status while joining: %+v, %v", st, err)
		}
		if w := st.Lockspaces[0].Wait; w == nil || !strings.Contains(w.Reason, `"host-a" generation 1`) ||
			w.LeftSec <= 0 || w.LeftSec > 9 || w.Until.Before(time.Now()) {
			t.Errorf("status while joining has wait %+v, want host-a's lease watched for up to 9 s", w)
		}
		if _, err := cl.RemLockspace(ctx, "LS"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, <-errc, callback.ErrCancelled, callback.CodeCancelled)
		st, err = cl.Status(ctx)
		if err != nil || len(st.Lockspaces) != 0 {
			t.Fatalf("status after cancel: %+v, %v", st, err)
		}
	})
}

// TestDaemon_failed: a lockspace whose storage fails stays listed as
// failed, keeps the watchdog from being fed, and rem_lockspace forgets it
// with a warning.
func TestDaemon_failed(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	mem := ds.lockspace(t, "img", "LS")
	fd := delta.NewFaultDevice(mem)
	ds.add("img", fd)
	wdFile := filepath.Join(t.TempDir(), "wd")
	td := startDaemon(t, ds, func(c *daemon.Config) {
		c.Watchdog = "fake:" + wdFile
		c.WatchdogTimeout = 60 * time.Second
	})
	c := td.dial(t)
	ctx := ctxT(t, time.Minute)
	if _, err := c.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	fd.Inject(delta.Fault{Kind: delta.FaultEIO})
	ls := waitStateFor(t, c, "LS", callback.StateFailed, 15*time.Second)
	if ls.Health != "failed" || !strings.Contains(ls.Error, "renewal failed") {
		t.Errorf("got %+v, want health failed and the reason", ls)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Watchdog.Feeding || !strings.Contains(st.Watchdog.Decision, `"LS" expired`) {
		t.Errorf("watchdog %+v, want not feeding because LS expired", st.Watchdog)
	}
	w, err := c.RemLockspace(ctx, "LS")
	if err != nil || !strings.Contains(w, "watchdog expiry is kept") {
		t.Fatalf("rem of a failed lockspace: warning %q, err %v", w, err)
	}
	st, err = c.Status(ctx)
	if err != nil || len(st.Lockspaces) != 0 || st.Watchdog.Feeding {
		t.Fatalf("after rem: %+v, %v; want no lockspace and still not feeding", st, err)
	}
	// The daemon exits leaving its watchdog armed (the host must reset),
	// and nothing of it runs afterwards: the fake says it was abandoned
	// armed, and never fires after the test.
	if err := td.Shutdown(ctx, true); err != nil {
		t.Fatal(err)
	}
	<-td.done
	evs := testimg.ReadWatchdog(t, wdFile)
	if last := evs[len(evs)-1].What; last != "abandon" {
		t.Errorf("watchdog events %v, want the last one abandon (left armed)", evs)
	}
	for _, e := range evs {
		if e.What == "close" || e.What == "fire" {
			t.Errorf("watchdog events %v, want no close (disarm) and no fire", evs)
		}
	}
}

func waitStateFor(t *testing.T, c *callback.Client, name, state string, d time.Duration) callback.LockspaceStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, ls := range st.Lockspaces {
			if ls.Name == name && ls.State == state {
				return ls
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("lockspace %s not %s after %v: %+v", name, state, d, st.Lockspaces)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDaemon_shutdown(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	dev := ds.lockspace(t, "img", "LS")
	wdFile := filepath.Join(t.TempDir(), "wd")
	td := startDaemon(t, ds, func(c *daemon.Config) {
		c.Watchdog = "fake:" + wdFile
		c.WatchdogTimeout = 10 * time.Second
	})
	c := td.dial(t)
	ctx := ctxT(t, time.Minute)
	if _, err := c.AddLockspace(ctx, "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	err := c.Shutdown(ctx, false, true)
	wantCode(t, err, callback.ErrRefused, callback.CodeRefused)
	if !strings.Contains(err.Error(), "LS") {
		t.Errorf("refusal %q does not name the lockspace", err)
	}
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("daemon not answering after a refused shutdown: %v", err)
	}
	if err := c.Shutdown(ctx, true, true); err != nil {
		t.Fatal(err)
	}
	select {
	case <-td.done:
		if td.runErr != nil {
			t.Fatalf("Run returned %v", td.runErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
	if _, err := os.Stat(filepath.Join(td.dir, callback.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after shutdown: %v", err)
	}
	if _, err := callback.Dial(ctx, td.dir); !errors.Is(err, callback.ErrNoDaemon) {
		t.Errorf("dial after shutdown: %v, want ErrNoDaemon", err)
	}
	r, _ := leader.DecodeRecord(dev.Bytes(0, 512))
	if r.Timestamp != 0 || r.OwnerGeneration != 1 {
		t.Errorf("host 1 after shutdown --force: timestamp %d generation %d, want released", r.Timestamp, r.OwnerGeneration)
	}
	b, err := os.ReadFile(wdFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "close ") || strings.Contains(string(b), "fire") {
		t.Errorf("watchdog file ends with %q, want a disarming close and no fire:\n%s", last, b)
	}
}

func TestDaemon_runDirExclusive(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	td := startDaemon(t, ds, nil)
	d, err := daemon.New(daemon.Config{RunDir: td.dir, StateDir: t.TempDir(), Watchdog: "none", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("second daemon on one run dir: %v, want refusal", err)
	}
	if _, err := td.dial(t).Status(context.Background()); err != nil {
		t.Fatalf("first daemon broken by the second: %v", err)
	}
}

func TestDaemon_staleSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: callback.SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves the socket file, with nobody listening
	td := startDaemon(t, newDevices(), func(c *daemon.Config) { c.RunDir = dir })
	if _, err := td.dial(t).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDaemon_badWatchdog(t *testing.T) {
	t.Parallel()
	notWD := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notWD, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Config{RunDir: t.TempDir(), StateDir: t.TempDir(), Watchdog: notWD, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	if !errors.Is(err, watchdog.ErrNotWatchdog) || !strings.Contains(err.Error(), "--watchdog none") {
		t.Fatalf("got %v, want ErrNotWatchdog suggesting --watchdog none", err)
	}
}

// TestDaemon_resetPending: a reset marker of this boot left in the run dir
// means the watchdog is never fed and no lockspace may be joined (peers
// must not see a doomed host LIVE); the fake fires and Run returns
// ErrFired (the command exits 137).
func TestDaemon_resetPending(t *testing.T) {
	t.Parallel()
	ds := newDevices()
	ds.lockspace(t, "img", "LS")
	dir := t.TempDir()
	if err := watchdog.WriteMarker(dir, "WD_RESET from host 3"); err != nil {
		t.Fatal(err)
	}
	wdFile := filepath.Join(t.TempDir(), "wd")
	d := startDaemon(t, ds, func(c *daemon.Config) {
		c.RunDir, c.Watchdog, c.WatchdogTimeout = dir, "fake:"+wdFile, 3*time.Second
	})
	c := d.dial(t)
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Watchdog.Feeding || !st.Watchdog.Reset || !strings.Contains(st.Watchdog.Decision, "WD_RESET from host 3") {
		t.Errorf("watchdog %+v, want a latched reset", st.Watchdog)
	}
	_, err = c.AddLockspace(context.Background(), "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second})
	if !errors.Is(err, callback.ErrRefused) || !strings.Contains(err.Error(), "must reset") {
		t.Fatalf("add_lockspace with a reset pending: %v, want refused", err)
	}
	select {
	case <-d.done:
		if !errors.Is(d.runErr, watchdog.ErrFired) {
			t.Fatalf("Run returned %v, want ErrFired", d.runErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the fake watchdog did not fire")
	}
	b, _ := os.ReadFile(wdFile)
	if !strings.Contains(string(b), "fire") || strings.Contains(string(b), "keepalive") {
		t.Errorf("watchdog file:\n%s\nwant a fire and no keepalive", b)
	}
}

func TestDial_noDaemon(t *testing.T) {
	dir := t.TempDir()
	_, err := callback.Dial(context.Background(), dir)
	if !errors.Is(err, callback.ErrNoDaemon) || !strings.Contains(err.Error(), "no daemon at "+callback.SocketPath(dir)) {
		t.Fatalf("got %v, want ErrNoDaemon naming the socket", err)
	}
}

// TestDaemon_killedHolding: a daemon killed (as kill -9) while its watchdog
// guards a lockspace leaves RUN_DIR/lockspaces-held, and the next daemon on
// that run directory must not feed the watchdog: its peers will consider
// the host dead when the old keepalives run out. A daemon that released
// its lockspace cleanly before it was killed leaves nothing: the next one
// feeds and joins as usual.
func TestDaemon_killedHolding(t *testing.T) {
	t.Parallel()
	for _, clean := range []bool{false, true} {
		t.Run(fmt.Sprintf("released=%v", clean), func(t *testing.T) {
			t.Parallel()
			ds := newDevices()
			ds.lockspace(t, "img", "LS")
			dir := t.TempDir()
			start := func() (*testDaemon, *callback.Client) {
				td := startDaemon(t, ds, func(c *daemon.Config) {
					c.RunDir, c.HostName = dir, "host-a"
					c.Watchdog, c.WatchdogTimeout = "fake:"+filepath.Join(t.TempDir(), "wd"), 3*time.Second
				})
				return td, td.dial(t)
			}
			d, c := start()
			if _, err := c.AddLockspace(ctxT(t, time.Minute), "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
				t.Fatal(err)
			}
			if clean {
				if _, err := c.RemLockspace(ctxT(t, time.Minute), "LS"); err != nil {
					t.Fatal(err)
				}
			}
			d.Kill()
			<-d.done

			d2, c2 := start()
			st, err := c2.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if clean {
				if !st.Watchdog.Feeding || st.Watchdog.Reset {
					t.Fatalf("after a clean release: watchdog %+v, want feeding", st.Watchdog)
				}
				if _, err := c2.AddLockspace(ctxT(t, time.Minute), "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); err != nil {
					t.Fatal(err)
				}
				if err := d2.Shutdown(context.Background(), true); err != nil {
					t.Fatal(err)
				}
				<-d2.done
				return
			}
			if st.Watchdog.Feeding || !st.Watchdog.Reset || !strings.Contains(st.Watchdog.Decision, "without releasing lockspaces LS") {
				t.Fatalf("after a kill holding LS: watchdog %+v, want a latched reset naming LS", st.Watchdog)
			}
			if _, err := c2.AddLockspace(ctxT(t, time.Minute), "LS:1:img:0", callback.AddOptions{IOTimeout: time.Second}); !errors.Is(err, callback.ErrRefused) {
				t.Fatalf("add_lockspace with a reset pending: %v, want refused", err)
			}
			select {
			case <-d2.done:
				if !errors.Is(d2.runErr, watchdog.ErrFired) {
					t.Fatalf("Run returned %v, want ErrFired", d2.runErr)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the fake watchdog did not fire")
			}
		})
	}
}
