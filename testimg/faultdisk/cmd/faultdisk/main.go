//go:build linux

// Command faultdisk serves a fault-injecting disk image on a directory
// until it is interrupted, so that a human can drive faults from a shell:
//
//	mkdir /tmp/fd && go run ./testimg/faultdisk/cmd/faultdisk -size 2M /tmp/fd &
//	sanlock-msg init -o 1 -s LS:0:/tmp/fd/disk.img:0
//	echo 'hang write' > /tmp/fd/ctl; cat /tmp/fd/ctl; echo heal > /tmp/fd/ctl
//
// On SIGINT or SIGTERM it heals the disk and unmounts it. See package
// faultdisk for the commands and how the disk works.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/sanlock-msg/sanlock-msg/testimg/faultdisk"
)

func main() {
	size := flag.String("size", "2M", "image size in bytes, or with a K, M or G suffix")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: faultdisk [-size 2M] DIR\n\nServes DIR/%s and DIR/%s until interrupted.\n\n%s\n",
			faultdisk.ImageName, faultdisk.CtlName, faultdisk.CtlHelp)
		flag.PrintDefaults()
	}
	flag.Parse()
	n, err := parseSize(*size)
	if flag.NArg() != 1 || err != nil {
		if err != nil {
			fmt.Fprintln(os.Stderr, "faultdisk:", err)
		}
		flag.Usage()
		os.Exit(2)
	}
	d, err := faultdisk.New(flag.Arg(0), n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultdisk:", err)
		os.Exit(1)
	}
	fmt.Printf("serving %s (%d bytes); control: %s\n", d.Path, n, d.CtlPath)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := d.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suf, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(s, suf) {
			s, mult = strings.TrimSuffix(s, suf), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad -size %q", s)
	}
	return n * mult, nil
}
