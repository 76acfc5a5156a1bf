package callback_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"sanlock-msg/callback"
)

// Run a daemon in the foreground until a client shuts it down.
func ExampleDaemon_Run() {
	d, err := callback.New(callback.Config{
		RunDir:   callback.ResolveRunDir("", os.Getenv),
		Watchdog: "/dev/watchdog",
		HostName: "host-a", // the same name after a crash: fast reacquire
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := d.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Join a lockspace and show the renewal health.
func ExampleClient_AddLockspace() {
	ctx := context.Background()
	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
	if err != nil {
		log.Fatal(err) // wraps callback.ErrNoDaemon when no daemon runs
	}
	defer c.Close()
	ls, err := c.AddLockspace(ctx, "LS:2:/dev/sdb:0", callback.AddOptions{IOTimeout: 10 * time.Second})
	switch {
	case errors.Is(err, callback.ErrBusy):
		log.Fatal("host id 2 is held by a live host: ", err)
	case errors.Is(err, callback.ErrExists):
		log.Fatal("already joined")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("joined", ls.Name, "as host", ls.HostID, "generation", ls.Generation)
}

// List the hosts of a lockspace.
func ExampleClient_HostStatus() {
	ctx := context.Background()
	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	hosts, err := c.HostStatus(ctx, "LS")
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range hosts {
		fmt.Println(h.HostID, h.Generation, h.State, h.Runs, h.HostName)
	}
}

// Stop a daemon, waiting until its process is gone.
func ExampleClient_Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Shutdown(ctx, false, true); errors.Is(err, callback.ErrRefused) {
		log.Fatal("lockspaces are still joined: ", err)
	} else if err != nil {
		log.Fatal(err)
	}
}
