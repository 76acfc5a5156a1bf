// Command sanlock-msg sends messages between hosts that share a block
// device, through a sanlock-compatible lockspace, and fences hosts through
// their watchdog. See man/sanlock-msg.8 and `sanlock-msg help`.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// verb is one sub-command.
type verb struct {
	summary string
	// run executes the verb with its arguments (the verb name removed).
	run func(ctx context.Context, env *env, args []string) int
}

// env is what a verb may touch: its streams and the environment.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// term reports whether stderr is a terminal, and its width; nil means
	// not a terminal (tests). Long waits draw a progress line there.
	term func() (width int, ok bool)
}

// stderrTerm is env.term for the process's real stderr: a terminal if it
// answers TCGETS, 80 columns wide if it does not say.
func stderrTerm() (int, bool) {
	fd := int(os.Stderr.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return 0, false
	}
	if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		return int(ws.Col), true
	}
	return 80, true
}

func verbs() map[string]verb {
	return map[string]verb{
		"init":          {"write a new lockspace area (like sanlock direct init)", runInit},
		"dump":          {"list the used host sectors of a lockspace, straight from disk", runDump},
		"read":          {"show one host's message and ack table, straight from disk", runRead},
		"version":       {"print the version", runVersion},
		"daemon":        {"run the daemon in the foreground", runDaemon},
		"add-lockspace": {"join a lockspace with a host id (blocks until joined)", runAddLockspace},
		"rem-lockspace": {"leave a lockspace, releasing the host id", runRemLockspace},
		"status":        {"show the daemon's lockspaces and their renewal health", runStatus},
		"host-status":   {"show every host of a lockspace as this daemon sees it", runHostStatus},
		"shutdown":      {"stop the daemon", runShutdown},
		"send":          {"send a message to one or more hosts", runSend},
		"listen":        {"print the messages that arrive for a lockspace", runListen},
		"reset":         {"fence a host: WD_RESET, wait for RESETTING, watch it die", runReset},
		"timeouts":      {"print every timeout derived from io_timeout and the watchdog timeout", runTimeouts},
		"metrics":       {"print the daemon's counters for Prometheus (node_exporter textfile)", runMetrics},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, term: stderrTerm})
	stop()
	os.Exit(code)
}

// run dispatches to a verb and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	vs := verbs()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if v, ok := vs[args[1]]; ok {
				return v.run(ctx, e, []string{"--help"})
			}
		}
		usage(e.stdout, vs)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-V" {
		return runVersion(ctx, e, nil)
	}
	v, ok := vs[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "sanlock-msg: unknown command %q (run 'sanlock-msg help')\n", args[0])
		return 2
	}
	return v.run(ctx, e, args[1:])
}

func usage(w io.Writer, vs map[string]verb) {
	fmt.Fprintf(w, "usage: sanlock-msg COMMAND [OPTIONS]\n\nCommands:\n")
	names := make([]string, 0, len(vs))
	for n := range vs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, vs[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'sanlock-msg COMMAND --help' for a command's options. Manual: man sanlock-msg.\n")
}

func runVersion(ctx context.Context, e *env, args []string) int {
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(e.stdout, "usage: sanlock-msg version\n\nPrints the sanlock-msg version and the on-disk formats it speaks.")
		return 0
	}
	fmt.Fprintf(e.stdout, "sanlock-msg %s (sanlock delta lease format 3.4, message extension v1)\n", version)
	return 0
}

// fail prints "sanlock-msg VERB: err" and returns status 1.
func fail(e *env, verb string, err error) int {
	msg := err.Error()
	msg = strings.TrimSpace(msg)
	fmt.Fprintf(e.stderr, "sanlock-msg %s: %s\n", verb, msg)
	return 1
}
