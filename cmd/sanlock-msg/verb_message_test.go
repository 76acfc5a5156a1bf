package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/callback"
	"github.com/sanlock-msg/sanlock-msg/testimg"
)

// TestMessageVerbs: listen --wait --manual-ack started before its host
// joins gets the messages, with their ids, and acks them; send prints the
// id; result tells a message's fate by id; usage errors exit 2.
func TestMessageVerbs(t *testing.T) {
	img := testimg.File(t, 2<<20)
	if _, errOut, code := runCmd(t, "init", "-s", "LS:0:"+img+":0", "-o", "1"); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	run1, run2 := filepath.Join(t.TempDir(), "r1"), filepath.Join(t.TempDir(), "r2")
	startDaemonVerb(t, run1, "-e", "host-1")
	startDaemonVerb(t, run2, "-e", "host-2")

	// listen before host 2 joins: it waits for the lockspace.
	var lout testimg.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	listened := make(chan int, 1)
	go func() {
		listened <- run(ctx, []string{"listen", "--run-dir", run2, "-s", "LS", "--wait", "--manual-ack", "--json", "--count", "2"},
			&env{stdout: &lout, stderr: &lout, getenv: func(string) string { return "" }})
	}()
	time.Sleep(300 * time.Millisecond)
	for i, d := range []string{run1, run2} {
		if out, errOut, st := runCmd(t, "add-lockspace", "--run-dir", d, "-s", "LS:"+string(rune('1'+i))+":"+img+":0", "-o", "1"); st != 0 {
			t.Fatalf("add-lockspace: %s%s", out, errOut)
		}
	}
	waitLive(t, run1, 2)

	out, errOut, st := runCmd(t, "send", "--run-dir", run1, "-s", "LS", "-i", "2", "-c", "user0", "--data", "7", "--wait")
	if st != 0 || !strings.HasPrefix(out, "seq 1 id 1:1:1\n") || !strings.Contains(out, "host 2 generation 1: acked delivered") {
		t.Fatalf("send --wait: exit %d: %s%s", st, out, errOut)
	}
	out, errOut, st = runCmd(t, "send", "--run-dir", run1, "-s", "LS", "-i", "2", "-c", "user1", "--json")
	var sj sendJSON
	if st != 0 || json.Unmarshal([]byte(out), &sj) != nil || sj.ID != "1:1:2" || sj.Lockspace != "LS" {
		t.Fatalf("send --json: exit %d: %s%s", st, out, errOut)
	}
	select {
	case code := <-listened:
		if code != 0 {
			t.Fatalf("listen exited %d: %s", code, lout.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("listen did not get 2 messages:\n%s", lout.String())
	}
	dec := json.NewDecoder(strings.NewReader(lout.String()))
	for i, want := range []string{"1:1:1", "1:1:2"} {
		var rec callback.Record
		if err := dec.Decode(&rec); err != nil || rec.ID != want || !rec.AckNeeded || rec.Redelivered {
			t.Fatalf("listen record %d: %+v, %v; want %s needing an ack\n%s", i, rec, err, want, lout.String())
		}
	}
	// listen acked 1:1:2 after printing it: the send ends delivered.
	out, errOut, st = runCmd(t, "result", "--run-dir", run1, "--wait", "-s", "LS", "1:1:2")
	if st != 0 || !strings.Contains(out, "1:1:2 done\nhost 2 generation 1: acked delivered") {
		t.Fatalf("result --wait 1:1:2: exit %d: %s%s", st, out, errOut)
	}
	out, errOut, st = runCmd(t, "result", "--run-dir", run1, "--json", "1:1:1")
	var r callback.SendReply
	if st != 0 || json.Unmarshal([]byte(out), &r) != nil || r.State != "done" || !r.OK || r.ID != "1:1:1" {
		t.Fatalf("result --json 1:1:1: exit %d: %s%s", st, out, errOut)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"seq 0", []string{"send", "-s", "LS", "-i", "2", "-c", "user0", "--seq", "0"}, 2, "--seq 0"},
		{"seq past the window", []string{"send", "-s", "LS", "-i", "2", "-c", "user0", "--seq", "9999999"}, 1, "too far ahead"},
		{"host twice", []string{"send", "-s", "LS", "-i", "2,2", "-c", "user0"}, 2, "given twice"},
		{"unknown id", []string{"result", "-s", "LS", "1:1:99"}, 1, "no message 1:1:99"},
		{"bad id", []string{"result", "1:x:1"}, 2, "HOST:GENERATION:SEQ"},
		{"no id", []string{"result"}, 2, "one message ID"},
		{"reset -g with two hosts", []string{"reset", "-s", "LS", "-i", "2,3", "-g", "1"}, 2, "one -i"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, st := runCmd(t, append(tt.args, "--run-dir", run1)...)
			if st != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", st, errOut, tt.code, tt.want)
			}
		})
	}
}

// waitLive waits until the daemon of runDir sees host id LIVE in LS.
func waitLive(t *testing.T, runDir string, id uint64) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		c, err := callback.Dial(context.Background(), runDir)
		if err == nil {
			hs, err := c.HostStatus(context.Background(), "LS")
			c.Close()
			for _, h := range hs {
				if err == nil && h.HostID == id && h.State == "LIVE" {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("host %d never LIVE", id)
}
