package testimg

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// Binary builds ./cmd/sanlock-msg once per test binary and returns the path
// of the executable. It is built with the go command found in PATH (or
// /usr/local/go/bin/go) into os.TempDir()/sanlock-msg-bin-PID; directories
// left by earlier test processes that no longer run are removed.
func Binary(t testing.TB) string {
	t.Helper()
	binaryOnce.Do(func() { binaryPath, binaryErr = build() })
	if binaryErr != nil {
		t.Fatalf("testimg: build sanlock-msg: %v", binaryErr)
	}
	return binaryPath
}

func build() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the sanlock-msg module")
	}
	removeStaleBuilds()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("sanlock-msg-bin-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sanlock-msg")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/sanlock-msg")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// removeStaleBuilds removes the build directories of test processes that
// have exited.
func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "sanlock-msg-bin-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "sanlock-msg-bin-"))
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.RemoveAll(d)
	}
}
