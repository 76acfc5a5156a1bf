package callback_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/daemon"
	"github.com/sanlock-msg/sanlock-msg/delta"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

// TestMain runs the examples against two real daemons in this process:
// host 1, whose run directory the examples find in $SANLOCK_MSG_RUN_DIR,
// and host 2, which listens and answers a user15 message with a user14
// one carrying the same data. They share lockspace LS on a memory device,
// at io_timeout 1. (Only these tests link the daemon: package callback
// itself does not.)
func TestMain(m *testing.M) {
	code, err := runWithDaemons(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "callback examples:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithDaemons(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "callback-examples")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	dev := delta.NewMemDevice(1<<20, 0)
	geo, err := leader.DefaultGeometry(512)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := delta.Init(ctx, delta.NewIO(dev, clock.Real{}), delta.InitOptions{Name: "LS", Geometry: geo, IOTimeout: time.Second}); err != nil {
		return 0, err
	}
	open := func(path string) (delta.Device, error) { return dev, nil }

	var runDirs []string
	for i := 1; i <= 2; i++ {
		rd := filepath.Join(dir, fmt.Sprintf("host%d", i))
		d, err := daemon.New(daemon.Config{RunDir: rd, Watchdog: "none", HostName: fmt.Sprintf("example-%d", i),
			OpenDevice: open, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return 0, err
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(context.Background()) }()
		defer func() {
			d.Shutdown(context.Background(), true)
			<-done
		}()
		select {
		case <-d.Ready():
		case err := <-done:
			return 0, err
		}
		runDirs = append(runDirs, rd)
	}
	errc := make(chan error, 2)
	for i, rd := range runDirs {
		go func() {
			c, err := callback.Dial(ctx, rd)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			// A loaded machine (the whole suite with -race on two cores)
			// can make a memory read miss io_timeout 1 s: try again.
			for try := 1; ; try++ {
				_, err = c.AddLockspace(ctx, fmt.Sprintf("LS:%d:mem:0", i+1), callback.AddOptions{IOTimeout: time.Second})
				if err == nil || !errors.Is(err, callback.ErrIO) || try == 3 {
					break
				}
			}
			errc <- err
		}()
	}
	for range runDirs {
		if err := <-errc; err != nil {
			return 0, err
		}
	}
	for i, rd := range runDirs {
		if err := waitLive(ctx, rd, uint64(2-i)); err != nil {
			return 0, err
		}
	}
	if err := answer(ctx, runDirs[1]); err != nil {
		return 0, err
	}
	os.Setenv(callback.EnvRunDir, runDirs[0])
	return m.Run(), nil
}

// waitLive waits until the daemon of runDir sees host id LIVE.
func waitLive(ctx context.Context, runDir string, id uint64) error {
	c, err := callback.Dial(ctx, runDir)
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		hosts, err := c.HostStatus(ctx, "LS")
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.HostID == id && h.State == "LIVE" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %d not LIVE from %s: %w", id, runDir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// answer makes the daemon of runDir answer each user15 message with a
// user14 one carrying the same data, until the registration ends.
func answer(ctx context.Context, runDir string) error {
	reg, err := callback.Register(ctx, runDir, "LS")
	if err != nil {
		return err
	}
	c, err := callback.Dial(ctx, runDir)
	if err != nil {
		reg.Close()
		return err
	}
	go func() {
		defer reg.Close()
		defer c.Close()
		for {
			rec, err := reg.Next(context.Background())
			if err != nil {
				return
			}
			if rec.Type == callback.RecordMessage && rec.Code&(leader.EventUser0<<15) != 0 {
				data := rec.Data
				c.Send(context.Background(), callback.SendRequest{Lockspace: "LS", Targets: []uint64{rec.FromHostID},
					Code: leader.EventUser0 << 14, Data: &data})
			}
		}
	}()
	return nil
}
