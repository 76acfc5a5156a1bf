package watchdog_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sanlock-msg/sanlock-msg/watchdog"
)

func TestOpenRegularFileIsNotAWatchdog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "foo")
	const content = "lockspace data that must survive"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := watchdog.Open(path, time.Minute)
	if err == nil {
		h.Close()
		t.Fatal("Open(regular file) succeeded")
	}
	if !errors.Is(err, watchdog.ErrNotWatchdog) {
		t.Errorf("Open(regular file) = %v, want ErrNotWatchdog", err)
	}
	want := "watchdog: " + path + " is not a watchdog device (regular file); use --watchdog none or fake:FILE"
	if err.Error() != want {
		t.Errorf("error text:\n%s\nwant:\n%s", err, want)
	}
	// Open must not have written the magic 'V' into the file.
	if b, _ := os.ReadFile(path); string(b) != content {
		t.Errorf("file content changed to %q", b)
	}
}

func TestOpenDevNullIsNotAWatchdog(t *testing.T) {
	h, err := watchdog.Open("/dev/null", time.Minute)
	if err == nil {
		h.Close()
		t.Fatal("Open(/dev/null) succeeded")
	}
	if !errors.Is(err, watchdog.ErrNotWatchdog) || !errors.Is(err, unix.ENOTTY) {
		t.Errorf("Open(/dev/null) = %v, want ErrNotWatchdog and ENOTTY", err)
	}
	if !strings.Contains(err.Error(), "/dev/null is not a watchdog device (ENOTTY)") {
		t.Errorf("error text %q does not explain ENOTTY", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		wantErr error
	}{
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: os.ErrNotExist},
		{name: "directory", path: dir, wantErr: watchdog.ErrNotWatchdog},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := watchdog.Open(tt.path, time.Minute)
			if err == nil {
				h.Close()
				t.Fatalf("Open(%s) succeeded", tt.path)
			}
			if !errors.Is(err, tt.wantErr) || !strings.HasPrefix(err.Error(), "watchdog: ") {
				t.Errorf("Open(%s) = %v, want %v with prefix \"watchdog: \"", tt.path, err, tt.wantErr)
			}
		})
	}
}
