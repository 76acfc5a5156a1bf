package pidlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pid")
	f, err := Lock(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Errorf("pid file holds %q", b)
	}
	_, err = Lock(path, 0o600)
	if !errors.Is(err, ErrHeld) || Holder(err) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("second Lock: %v (holder %q), want ErrHeld naming our pid", err, Holder(err))
	}
	f.Close()
	f, err = Lock(path, 0o600)
	if err != nil {
		t.Fatalf("Lock after the holder closed: %v", err)
	}
	f.Close()
}
