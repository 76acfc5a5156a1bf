package hostmsg

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt scenarios")

// TestScenarios runs the text scenarios in testdata/. Each block is a
// command, a "----" line and the expected output, ended by a blank line;
// lines starting with # are comments. With -rewrite the expected output is
// replaced by what the commands print.
//
// Commands:
//
//	join ID [native] [durable] [grace=D]
//	                          start host ID (again: a new generation,
//	                          inheriting the acks in its sector); durable:
//	                          it keeps a durable outbox and receive marks
//	                          from now on, and later joins resend; grace:
//	                          Config.ListenerGrace (default none)
//	kill ID                   stop host ID without releasing (a crash)
//	pause ID DURATION         host ID does no I/O for a while (a stall)
//	listeners ID N            set host ID's listener count
//	room ID N                 set host ID's listener room (-1: no limit)
//	manual ID on|off          deliveries wait for "ack" (manual-ack listener)
//	ack ID all|H:O:S          ack host ID's unacked deliveries
//	return ID all             give back host ID's unacked deliveries (the
//	                          listener went away)
//	fail-writes ID on|off     every write of host ID fails
//	send FROM to=A,B code=C [gen=N|cur] [data=N] [seq=N] [timeout=D] [priv]
//	set-event FROM to=ID code=C data=N [gen=N]   plain sanlock set_event
//	corrupt ID OFFSET         flip a byte of host ID's sector on disk
//	run DURATION              advance simulated time, print what happened
//	quiet                     run until no send is pending (≤ 10 min)
//	acks ID                   print host ID's ack table as on disk
//	stats ID                  print host ID's Stats
//	doorbells D [verbose]     doorbell mode with D doorbells (before any join)
//	ring-faults lost=P torn=P ring writes lost / torn with probability P
//	bell ID corrupt|foreign|zero   damage host ID's doorbell sector
//	rings ID                  print host ID's RingStats and its doorbell
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out strings.Builder
	ss := 512
	if strings.Contains(file, "4k") {
		ss = 4096
	}
	s := newSim(1, ss)
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: command %q not followed by ----", file, i+1, line)
		}
		cmdLine := i + 1
		i += 2
		var want []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		got := s.exec(t, line)
		if !*rewrite && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\n--- got:\n%s\n--- want:\n%s", file, cmdLine, line, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		out.WriteString(line + "\n----\n")
		for _, g := range got {
			out.WriteString(g + "\n")
		}
		if i < len(lines) {
			out.WriteString("\n")
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *sim) exec(t *testing.T, line string) []string {
	t.Helper()
	f := strings.Fields(line)
	args := map[string]string{}
	var pos []string
	for _, a := range f[1:] {
		if k, v, ok := strings.Cut(a, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	num := func(s string) uint64 {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("%q: bad number %q", line, s)
		}
		return n
	}
	host := func(i int) *simHost {
		if i >= len(pos) {
			t.Fatalf("%q: missing host id", line)
		}
		h := s.hosts[num(pos[i])]
		if h == nil {
			t.Fatalf("%q: no host %s", line, pos[i])
		}
		return h
	}
	code := func() uint64 {
		c, err := leader.ParseCodes(args["code"])
		if err != nil {
			if n, nerr := strconv.ParseUint(args["code"], 0, 64); nerr == nil {
				return n // code 0 and other raw values the CLI refuses
			}
			t.Fatalf("%q: %v", line, err)
		}
		return c
	}
	mark := len(s.log)
	var out []string
	switch f[0] {
	case "join":
		id := num(pos[0])
		if h := s.hosts[id]; h != nil || slices.Contains(pos, "durable") || args["grace"] != "" {
			if h == nil {
				h = &simHost{id: id, delivered: map[uint64][]Delivery{}, results: map[uint64][]Result{}, listeners: 1,
					grace: -1, room: -1}
				s.hosts[id] = h
				h.gen = 0
			}
			h.durable = h.durable || slices.Contains(pos, "durable")
			if g, ok := args["grace"]; ok {
				h.grace, _ = time.ParseDuration(g)
			}
		}
		s.join(id, slices.Contains(pos, "native"))
	case "room":
		h := host(0)
		n, err := strconv.Atoi(pos[1])
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		h.room = n
		h.m.SetRoom(n)
	case "manual":
		host(0).manual = pos[1] == "on"
	case "fail-writes":
		host(0).failWrites = pos[1] == "on"
	case "ack", "return":
		h := host(0)
		var keep []MsgID
		for _, id := range h.unacked {
			if pos[1] != "all" && pos[1] != id.String() {
				keep = append(keep, id)
				continue
			}
			var err error
			if f[0] == "ack" {
				err = h.m.Ack(s.now, id, leader.StatusDelivered)
			} else {
				err = h.m.Return(s.now, id)
			}
			s.logf("host %d %s %s: %v", h.id, f[0], id, err)
		}
		h.unacked = keep
	case "kill":
		s.kill(host(0))
	case "pause":
		h := host(0)
		d, err := time.ParseDuration(pos[1])
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		h.nextPoll = s.now.Add(d)
		h.nextRen = h.nextPoll
		if h.db != nil {
			h.db.nextDB = h.nextPoll
		}
		s.logf("host %d paused for %v", h.id, d)
	case "listeners":
		h := host(0)
		h.listeners = int(num(pos[1]))
		h.m.SetListeners(h.listeners)
	case "send":
		h := host(0)
		msg := Message{Code: code()}
		for _, to := range strings.Split(args["to"], ",") {
			msg.Targets = append(msg.Targets, num(to))
		}
		switch g := args["gen"]; g {
		case "":
		case "cur":
			msg.TargetGeneration = s.hosts[msg.Targets[0]].gen
		default:
			msg.TargetGeneration = num(g)
		}
		if d, ok := args["data"]; ok {
			msg.Data, msg.HasData = num(d), true
		}
		if q, ok := args["seq"]; ok {
			msg.Seq = num(q)
		}
		if d, ok := args["timeout"]; ok {
			msg.Timeout, _ = time.ParseDuration(d)
		}
		msg.Privileged = slices.Contains(pos, "priv")
		_, _ = s.send(h, msg)
	case "set-event":
		h := host(0)
		var gen uint64
		if g, ok := args["gen"]; ok {
			gen = num(g)
		}
		s.setEvent(h, num(args["to"]), gen, code(), num(args["data"]))
	case "corrupt":
		h := host(0)
		s.disk[h.id][num(pos[1])] ^= 0x10
		s.logf("corrupt host %d byte %s", h.id, pos[1])
	case "run":
		d, err := time.ParseDuration(pos[0])
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		s.run(d)
	case "quiet":
		if !s.quiet(10 * time.Minute) {
			out = append(out, "STILL BUSY after 10m")
		}
	case "acks":
		sec, _ := leader.DecodeSector(s.disk[host(0).id])
		switch {
		case sec.ExtErr != nil:
			out = append(out, fmt.Sprintf("extension: %v", sec.ExtErr))
		case sec.Ext == nil:
			out = append(out, "no extension")
		default:
			out = append(out, fmt.Sprintf("seq %d flags %#x targets %v", sec.Ext.Seq, sec.Ext.Flags, sec.Bitmap.Hosts()))
			for _, a := range sec.Ext.Acks {
				out = append(out, fmt.Sprintf("ack host %d gen16 %d seq %d %s", a.HostID, a.Gen16, a.Seq, a.Status))
			}
		}
	case "doorbells":
		s.enableDoorbells(int(num(pos[0])))
		s.bells.verbose = len(pos) > 1 && pos[1] == "verbose"
	case "ring-faults":
		for k, v := range args {
			p, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			switch k {
			case "lost":
				s.bells.lost = p
			case "torn":
				s.bells.torn = p
			default:
				t.Fatalf("%q: unknown fault %q", line, k)
			}
		}
	case "bell":
		if err := s.damageBell(host(0).id, pos[1]); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	case "rings":
		h := host(0)
		out = append(out, fmt.Sprintf("%+v", h.m.RingStats()))
		db, err := leader.DecodeDoorbell(s.bellSector(s.bellIndex(h.id)))
		if err != nil {
			out = append(out, fmt.Sprintf("doorbell: %v", err))
			break
		}
		out = append(out, fmt.Sprintf("doorbell counter %d, %d entries", db.Counter, len(db.Rings)))
		for _, r := range db.Rings {
			out = append(out, fmt.Sprintf("ring from %d/%d counter %d mask %#x", r.From, r.FromGen, r.Counter, r.Mask))
		}
	case "stats":
		st := host(0).m.Stats()
		out = append(out, fmt.Sprintf("%+v", st))
	default:
		t.Fatalf("unknown command %q", line)
	}
	return append(s.log[mark:], out...)
}
