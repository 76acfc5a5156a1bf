package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestTimeouts(t *testing.T) {
	tests := []struct {
		args []string
		want map[string]float64
	}{
		{[]string{"--json"}, map[string]float64{"io_timeout": 10, "renewal_fail": 80, "host_dead": 140, "acquire_held": 160, "set_bitmap": 60}},
		{[]string{"--json", "-o", "1"}, map[string]float64{"io_timeout": 1, "renewal_interval": 2.5, "host_dead": 68, "acquire_held": 70, "fence_complete": 71.5}},
		{[]string{"--json", "-o", "1", "--watchdog-timeout", "10s"}, map[string]float64{"host_dead": 18, "fence_failed_after": 15}},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if st := run(context.Background(), append([]string{"timeouts"}, tt.args...), &env{stdout: &out, stderr: &errb}); st != 0 {
			t.Fatalf("%v: status %d: %s", tt.args, st, errb.String())
		}
		var rows []timeoutRow
		if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, r := range rows {
			got[r.Name] = r.Seconds
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("%v: %s = %g, want %g", tt.args, k, got[k], v)
			}
		}
	}
	var out, errb bytes.Buffer
	if st := run(context.Background(), []string{"timeouts", "-o", "0"}, &env{stdout: &out, stderr: &errb}); st != 2 || !strings.Contains(errb.String(), "io_timeout 0") {
		t.Fatalf("-o 0: status %d, %q", st, errb.String())
	}
	out.Reset()
	if st := run(context.Background(), []string{"timeouts"}, &env{stdout: &out, stderr: &errb}); st != 0 || !strings.Contains(out.String(), "host_dead") {
		t.Fatalf("table: %d %q", st, out.String())
	}
}
