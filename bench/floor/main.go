// Command floor is the CPU floor of an idle daemon on this machine: a Go
// program that only wakes up at a fixed rate (a time.Ticker) and, with
// --pread, reads one sector with O_DIRECT at each tick, as a sanlock-msg
// daemon polls its doorbell. msgbench runs it next to the daemons and
// measures its CPU the same way (bench/README.md, "Idle CPU").
//
//	go run ./bench/floor [--hz 4] [--pread FILE] [--sector 512]
//
// It runs until killed.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	hz := flag.Float64("hz", 4, "wake-ups per second")
	path := flag.String("pread", "", "read one sector of this file or device with O_DIRECT at each tick")
	sector := flag.Int("sector", 512, "bytes per read (the sector size)")
	flag.Parse()
	if *hz <= 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	fd := -1
	var buf []byte
	if *path != "" {
		var err error
		fd, err = unix.Open(*path, unix.O_RDONLY|unix.O_DIRECT, 0)
		if err != nil {
			fmt.Fprintf(os.Stderr, "floor: open %s: %v\n", *path, err)
			os.Exit(1)
		}
		// O_DIRECT wants an aligned buffer.
		raw := make([]byte, *sector+4096)
		off := (4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)) % 4096
		buf = raw[off : off+*sector]
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / *hz))
	for range t.C {
		if fd >= 0 {
			if _, err := unix.Pread(fd, buf, 0); err != nil {
				fmt.Fprintf(os.Stderr, "floor: pread: %v\n", err)
				os.Exit(1)
			}
		}
	}
}
