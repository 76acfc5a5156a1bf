package callback_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/leader"
)

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
	// Output:
	// 1 1 LIVE sanlock-msg example-1
	// 2 1 LIVE sanlock-msg example-2
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

// Read the daemon's status: its watchdog and the lockspaces it holds.
func ExampleClient_Status() {
	ctx := context.Background()
	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("watchdog:", st.Watchdog.Device)
	for _, ls := range st.Lockspaces {
		fmt.Printf("%s: host %d, %s\n", ls.Name, ls.HostID, ls.State) // ls.Health: ok, late, warn...
	}
	// Output:
	// watchdog: none
	// LS: host 1, joined
}

// Send an application message to host 2 without waiting: Send returns
// once the daemon has queued it.
func ExampleClient_Send() {
	ctx := context.Background()
	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	r, err := c.Send(ctx, callback.SendRequest{
		Lockspace: "LS",
		Targets:   []uint64{2},
		Code:      leader.EventUser0, // "user0"; leader.ParseCodes parses names
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("queued:", r.Seq > 0, "done:", r.Done)
	// Output:
	// queued: true done: false
}

// Send a message to host 2 and wait until it is acked, with the outcome
// for each target.
func ExampleClient_Send_wait() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := callback.Dial(ctx, callback.ResolveRunDir("", os.Getenv))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	data := uint64(42)
	r, err := c.Send(ctx, callback.SendRequest{
		Lockspace: "LS",
		Targets:   []uint64{2},
		Code:      leader.EventUser0,
		Data:      &data,
		Wait:      true,
	})
	switch {
	case errors.Is(err, callback.ErrNotJoined):
		log.Fatal("the daemon has not joined LS: ", err)
	case errors.Is(err, callback.ErrInvalid):
		log.Fatal("refused (target not live, seq too low, ...): ", err)
	case err != nil:
		log.Fatal(err)
	}
	for _, t := range r.Targets {
		fmt.Println("host", t.HostID, t.Outcome, t.Status) // e.g. acked delivered
	}
	if !r.OK {
		log.Fatal(r.Error) // no-listener, timeout, target-dead, ...
	}
	// Output:
	// host 2 acked delivered
}

// Receive the messages of a lockspace in an event loop that polls the
// registration's file descriptor, as VM managers poll sanlock's. Here host
// 2 answers a "user15" message with a "user14" one carrying the same data.
func ExampleRegister() {
	ctx := context.Background()
	runDir := callback.ResolveRunDir("", os.Getenv)
	reg, err := callback.Register(ctx, runDir, "LS")
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	fd, err := reg.Fd()
	if err != nil {
		log.Fatal(err)
	}

	// Ask host 2 for an answer.
	c, err := callback.Dial(ctx, runDir)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	data := uint64(7)
	if _, err := c.Send(ctx, callback.SendRequest{Lockspace: "LS", Targets: []uint64{2},
		Code: leader.EventUser0 << 15, Data: &data, Wait: true}); err != nil {
		log.Fatal(err)
	}

	for {
		if !reg.Buffered() {
			// Other fds of the event loop would go in this set too.
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, 60_000); err != nil && !errors.Is(err, unix.EINTR) {
				log.Fatal(err)
			}
			if fds[0].Revents == 0 {
				continue
			}
		}
		rec, err := reg.Next(ctx) // the daemon writes whole lines: no long wait
		if errors.Is(err, io.EOF) {
			return // the daemon closed the registration
		} else if err != nil {
			log.Fatal(err)
		}
		switch rec.Type {
		case callback.RecordMessage:
			fmt.Printf("from host %d generation %d: code %v data %d\n",
				rec.FromHostID, rec.FromGeneration, rec.Codes, rec.Data)
			return
		case callback.RecordOverflow:
			fmt.Println(rec.Dropped, "messages lost: read faster")
		case callback.RecordEnd:
			fmt.Println("registration ended:", rec.Reason)
			return
		}
	}
	// Output:
	// from host 2 generation 1: code [user14] data 7
}
