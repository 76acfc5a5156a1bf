package daemon_test

import (
	"context"
	"log"
	"os"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/daemon"
)

// Run a daemon in the foreground until a client shuts it down.
func ExampleDaemon_Run() {
	d, err := daemon.New(daemon.Config{
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
