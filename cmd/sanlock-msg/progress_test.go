package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/testimg"
)

func TestProgress_noTerminal(t *testing.T) {
	var errb bytes.Buffer
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	p := newProgress(&env{stderr: &errb}, "add-lockspace", start)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	long := waitInfo{What: "watching host 1", Until: at(70 * time.Second)}

	p.show(at(500*time.Millisecond), long) // within the grace: nothing
	p.show(at(1100*time.Millisecond), long)
	p.show(at(2*time.Second), long) // the same wait: said once
	p.show(at(3*time.Second), waitInfo{What: "short wait", Until: at(4 * time.Second)})
	p.show(at(3*time.Second), waitInfo{What: "no deadline"})
	p.show(at(70*time.Second), waitInfo{What: "verify", Until: at(80 * time.Second)})
	p.clear()
	want := "sanlock-msg add-lockspace: watching host 1 (until 10:01:10, 1m9s from now)\n" +
		"sanlock-msg add-lockspace: verify (until 10:01:20, 10s from now)\n"
	if got := errb.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestProgress_terminal(t *testing.T) {
	var errb bytes.Buffer
	start := time.Now()
	e := &env{stderr: &errb, term: func() (int, bool) { return 40, true }}
	p := newProgress(e, "send", start)
	p.show(start.Add(1500*time.Millisecond), waitInfo{What: "waiting for host 2", Until: start.Add(70 * time.Second)})
	if got, want := errb.String(), "\r\033[Ksend [1m09s left]: waiting for host 2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	errb.Reset()
	p.show(start.Add(2*time.Second), waitInfo{What: strings.Repeat("x", 100)})
	if got := errb.String(); !strings.HasPrefix(got, "\r\033[Ksend [2s]: xxx") || !strings.HasSuffix(got, "…") ||
		len([]rune(got)) != len("\r\033[K")+39 {
		t.Errorf("long line not cut to the width: %q", got)
	}
	errb.Reset()
	p.clear()
	p.clear()
	if got := errb.String(); got != "\r\033[K" {
		t.Errorf("clear wrote %q, want one erase", got)
	}
}

func TestCountdown(t *testing.T) {
	for d, want := range map[time.Duration]string{-time.Second: "0s", 9400 * time.Millisecond: "9s", 68 * time.Second: "1m08s"} {
		if got := countdown(d); got != want {
			t.Errorf("countdown(%v) = %q, want %q", d, got, want)
		}
	}
	if got := hostList([]uint64{2}); got != "host 2" {
		t.Errorf("hostList: %q", got)
	}
	if got := hostList([]uint64{2, 3, 7}); got != "hosts 2, 3 and 7" {
		t.Errorf("hostList: %q", got)
	}
}

// TestAddLockspace_saysWhy: taking over a host id last written under
// another host name waits the previous owner's host_dead; add-lockspace
// says so on stderr instead of staying silent.
func TestAddLockspace_saysWhy(t *testing.T) {
	img := testimg.File(t, 2<<20)
	if _, errOut, code := runCmd(t, "init", "-s", "LS:0:"+img+":0", "-o", "1"); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	runA := filepath.Join(t.TempDir(), "a")
	runB := filepath.Join(t.TempDir(), "b")
	startDaemonVerb(t, runA, "-e", "host-a", "--watchdog-timeout", "2s")
	startDaemonVerb(t, runB, "-e", "host-b", "--watchdog-timeout", "2s")
	if out, errOut, st := runCmd(t, "add-lockspace", "--run-dir", runA, "-s", "LS:1:"+img+":0", "-o", "1"); st != 0 {
		t.Fatalf("add-lockspace: exit %d: %s%s", st, out, errOut)
	}
	t.Cleanup(func() { runCmd(t, "rem-lockspace", "--run-dir", runA, "-s", "LS") })

	var stderr testimg.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"add-lockspace", "--run-dir", runB, "-s", "LS:1:" + img + ":0", "-o", "1"},
			&env{stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(string) string { return "" }})
	}()
	deadline := time.Now().Add(8 * time.Second)
	for !strings.Contains(stderr.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// Cancel the join rather than wait for it to fail busy.
	runCmd(t, "rem-lockspace", "--run-dir", runB, "-s", "LS")
	st := <-done
	got := stderr.String()
	line, _, _ := strings.Cut(got, "\n")
	if !strings.HasPrefix(line, `sanlock-msg add-lockspace: host_id 1 was last written by "host-a" generation 1; watching it for 10s`) ||
		!strings.Contains(line, "s from now)") {
		t.Errorf("stderr %q: want one line naming host-a's lease and the deadline", got)
	}
	if st != 1 || !strings.Contains(got, "cancel") {
		t.Errorf("exit %d, stderr %q: want 1, cancelled", st, got)
	}
}
