package watchdog_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sanlock-msg/sanlock-msg/clock"
	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

func TestOpenSpec(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeFile := filepath.Join(dir, "fake.log")

	tests := []struct {
		name       string
		spec       string
		wantString string // for success
		wantErr    error  // for failure, with errors.Is; nil = any error
		wantText   string // substring of the error text
	}{
		// Success.
		{name: "none", spec: "none", wantString: "none"},
		{name: "fake", spec: "fake:" + fakeFile, wantString: "fake:" + fakeFile},

		// Failure.
		{name: "empty", spec: "", wantText: "want none, fake:FILE or a device path"},
		{name: "fake without file", spec: "fake:", wantText: "want fake:FILE"},
		{name: "missing path", spec: filepath.Join(dir, "nope"), wantErr: os.ErrNotExist},
		{name: "regular file", spec: regular, wantErr: watchdog.ErrNotWatchdog, wantText: "use --watchdog none or fake:FILE"},
	}
	if runtime.GOOS != "linux" {
		// Open is only implemented on Linux; elsewhere it says so.
		tests[len(tests)-1].wantErr, tests[len(tests)-1].wantText = errors.ErrUnsupported, "not supported on "+runtime.GOOS
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, err := watchdog.OpenSpec(tt.spec, 30*time.Second, clock.NewFake(t0))
			if tt.wantString != "" {
				if err != nil {
					t.Fatalf("OpenSpec(%q): %v", tt.spec, err)
				}
				defer dev.Close()
				if got := dev.String(); got != tt.wantString {
					t.Errorf("String() = %q, want %q", got, tt.wantString)
				}
				return
			}
			if err == nil {
				dev.Close()
				t.Fatalf("OpenSpec(%q) succeeded, want an error", tt.spec)
			}
			if dev != nil {
				t.Errorf("OpenSpec(%q) returned device %v with its error", tt.spec, dev)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("OpenSpec(%q) = %v, want %v", tt.spec, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "watchdog: ") || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("OpenSpec(%q) error %q, want prefix \"watchdog: \" and %q", tt.spec, err, tt.wantText)
			}
		})
	}
}

func TestNone(t *testing.T) {
	var d watchdog.Device = watchdog.None{}
	if err := d.Keepalive(); err != nil {
		t.Errorf("Keepalive: %v", err)
	}
	if got, err := d.SetTimeout(time.Second); got != 0 || err != nil {
		t.Errorf("SetTimeout = %v, %v; want 0, nil", got, err)
	}
	if d.Timeout() != 0 || d.Close() != nil || d.Close() != nil || d.String() != "none" {
		t.Errorf("None is not a no-op")
	}
}
