package watchdog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

func TestMarkerRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		want   string
	}{
		{name: "plain", reason: "WD_RESET from host 3 gen 7 in ls1", want: "WD_RESET from host 3 gen 7 in ls1"},
		{name: "empty", reason: "", want: ""},
		{name: "newlines flattened", reason: "line1\nline2\r\nreason=fake", want: "line1 line2  reason=fake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := watchdog.WriteMarker(dir, "an older reset"); err != nil {
				t.Fatalf("WriteMarker: %v", err)
			}
			if err := watchdog.WriteMarker(dir, tt.reason); err != nil {
				t.Fatalf("WriteMarker over an existing marker: %v", err)
			}
			reason, ok, err := watchdog.ReadMarker(dir)
			if err != nil || !ok || reason != tt.want {
				t.Errorf("ReadMarker = %q, %v, %v; want %q, true, nil", reason, ok, err, tt.want)
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || ents[0].Name() != watchdog.MarkerName {
				t.Errorf("directory holds %v, want only %s", ents, watchdog.MarkerName)
			}
			b, _ := os.ReadFile(filepath.Join(dir, watchdog.MarkerName))
			if !strings.Contains(string(b), "\ntime=") {
				t.Errorf("marker %q lacks the time", b)
			}
		})
	}
}

func TestReadMarker(t *testing.T) {
	tests := []struct {
		name       string
		content    *string // nil: no marker
		wantOK     bool
		wantReason string
	}{
		{name: "no marker", content: nil, wantOK: false},
		{name: "empty marker still counts", content: ptr(""), wantOK: true, wantReason: "reset marker present, reason unreadable"},
		{name: "garbage still counts", content: ptr("\x00\x01"), wantOK: true, wantReason: "reset marker present, reason unreadable"},
		{name: "reason", content: ptr("time=x\nreason=r\n"), wantOK: true, wantReason: "r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != nil {
				if err := os.WriteFile(filepath.Join(dir, watchdog.MarkerName), []byte(*tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			reason, ok, err := watchdog.ReadMarker(dir)
			if err != nil || ok != tt.wantOK || reason != tt.wantReason {
				t.Errorf("ReadMarker = %q, %v, %v; want %q, %v, nil", reason, ok, err, tt.wantReason, tt.wantOK)
			}
		})
	}
}

func TestMarkerErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	if err := watchdog.WriteMarker(missing, "x"); err == nil || !strings.HasPrefix(err.Error(), "watchdog: ") {
		t.Errorf("WriteMarker into a missing directory = %v, want a watchdog: error", err)
	}
	// A marker that cannot be read is an error, not "no marker".
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, watchdog.MarkerName), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := watchdog.ReadMarker(dir); err == nil {
		t.Errorf("ReadMarker of a directory marker = ok %v, nil error; want an error", ok)
	}
}

func ptr(s string) *string { return &s }

// TestMarkerBoot: the marker names the boot it must end; a daemon of a
// later boot sees that the reset happened and clears it.
func TestMarkerBoot(t *testing.T) {
	boot, err := watchdog.CurrentBootID()
	if err != nil || len(boot) < 32 {
		t.Fatalf("CurrentBootID = %q, %v", boot, err)
	}
	dir := t.TempDir()
	if err := watchdog.WriteMarker(dir, "WD_RESET from host 1"); err != nil {
		t.Fatal(err)
	}
	m, err := watchdog.LoadMarker(dir)
	if err != nil || m == nil || m.BootID != boot || m.Reason != "WD_RESET from host 1" || m.Time.IsZero() {
		t.Fatalf("LoadMarker = %+v, %v; want this boot %s", m, err, boot)
	}
	if !m.ThisBoot(boot) || m.ThisBoot("another-boot") {
		t.Errorf("ThisBoot(this) = %v, ThisBoot(another) = %v", m.ThisBoot(boot), m.ThisBoot("another-boot"))
	}
	// A marker without a boot id (older daemons) counts for every boot.
	if err := os.WriteFile(filepath.Join(dir, watchdog.MarkerName), []byte("reason=old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if m, _ := watchdog.LoadMarker(dir); m == nil || !m.ThisBoot("another-boot") {
		t.Errorf("marker without boot id: %+v, want pending in every boot", m)
	}
	if err := watchdog.ClearMarker(dir); err != nil {
		t.Fatal(err)
	}
	if m, err := watchdog.LoadMarker(dir); m != nil || err != nil {
		t.Errorf("after ClearMarker: %+v, %v", m, err)
	}
	if err := watchdog.ClearMarker(dir); err != nil {
		t.Errorf("ClearMarker without a marker: %v", err)
	}
}
