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

// Send an application message to host 3 and wait until it is acked.
func ExampleClient_Send() {
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
		Targets:   []uint64{3},
		Code:      leader.EventUser0, // "user0"; leader.ParseCodes parses names
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
		fmt.Println("seq", r.Seq, "host", t.HostID, t.Outcome, t.Status) // e.g. acked delivered
	}
	if !r.OK {
		log.Fatal(r.Error) // no-listener, timeout, target-dead, ...
	}
}

// Receive the messages of a lockspace in an event loop that polls the
// registration's file descriptor, as VM managers poll sanlock's.
func ExampleRegister() {
	ctx := context.Background()
	reg, err := callback.Register(ctx, callback.ResolveRunDir("", os.Getenv), "LS")
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	fd, err := reg.Fd()
	if err != nil {
		log.Fatal(err)
	}
	for {
		if !reg.Buffered() {
			// Other fds of the event loop would go in this set too.
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
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
			fmt.Printf("from host %d generation %d: seq %d code %v data %d\n",
				rec.FromHostID, rec.FromGeneration, rec.Seq, rec.Codes, rec.Data)
		case callback.RecordOverflow:
			fmt.Println(rec.Dropped, "messages lost: read faster")
		case callback.RecordEnd:
			fmt.Println("registration ended:", rec.Reason)
		}
	}
}
