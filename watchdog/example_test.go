package watchdog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

// A Keeper feeds a fake watchdog every second while lockspace ls1 renews,
// and stops at its expiry; the fake fires one timeout after the last
// keepalive.
func ExampleKeeper() {
	dir, err := os.MkdirTemp("", "watchdog-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "wd.log")

	clk := clock.NewFake(time.Unix(1732640000, 0).UTC())
	dev, err := watchdog.OpenSpec("fake:"+file, 5*time.Second, clk)
	if err != nil {
		panic(err)
	}
	defer dev.Close()

	k := watchdog.NewKeeper(dev, watchdog.NewPolicy(), clk, time.Second, nil)
	// Last successful renewal at 1732640000 with io_timeout 0.25 s: expiry 2 s later.
	k.SetExpiry("ls1", clk.Now().Add(8*250*time.Millisecond))
	k.Start()
	clk.Advance(time.Minute)
	fmt.Println(k.Status())

	b, err := os.ReadFile(file)
	if err != nil {
		panic(err)
	}
	fmt.Print(string(b))
	// Output:
	// lockspace "ls1" expired at 2024-11-26T16:53:22.000Z (no successful renewal within renewal_fail)
	// open timeout=5 t=1732640000.000
	// keepalive t=1732640000.000
	// keepalive t=1732640001.000
	// fire t=1732640006.000
}
