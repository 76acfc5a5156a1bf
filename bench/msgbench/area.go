package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sanlock-msg/sanlock-msg/leader"
)

// benchEnv is what every part of the bench shares.
type benchEnv struct {
	bin      string // the sanlock-msg binary
	tmp      string // run directories and logs
	imageDir string // lockspace images (must accept O_DIRECT)
}

// geometry is a lockspace area's shape; 4096-byte sectors live on a loop
// device (root), 512-byte ones in a plain file.
type geometry struct{ ss, align int }

var (
	geo512 = geometry{512, leader.MiB}
	geo4K  = geometry{4096, 8 * leader.MiB}
)

func (g geometry) String() string { return fmt.Sprintf("%d/%s", g.ss, leader.AlignString(g.align)) }

// initArgs are the geometry flags of `sanlock direct init` and
// `sanlock-msg init` alike.
func (g geometry) initArgs() []string {
	return []string{"-Z", fmt.Sprint(g.ss), "-A", leader.AlignString(g.align)}
}

// maxHosts is the area's max_hosts.
func (g geometry) maxHosts() int {
	lg, err := leader.NewGeometry(g.ss, g.align)
	if err != nil {
		return 0
	}
	return lg.MaxHosts
}

// parseGeometry parses SECTOR/ALIGN, e.g. 4096/8M.
func parseGeometry(s string) (geometry, error) {
	ss, al, ok := strings.Cut(strings.TrimSpace(s), "/")
	var g geometry
	if _, err := fmt.Sscan(ss, &g.ss); !ok || err != nil {
		return g, fmt.Errorf("geometry %q: want SECTOR/ALIGN, e.g. 512/1M", s)
	}
	a, err := leader.ParseAlign(al)
	if err != nil {
		return g, fmt.Errorf("geometry %q: %w", s, err)
	}
	g.align = a
	if _, err := leader.NewGeometry(g.ss, g.align); err != nil {
		return g, fmt.Errorf("geometry %q: %w", s, err)
	}
	return g, nil
}

// area is one lockspace area: an image file of the area's size, and for
// 4096-byte sectors a loop device over it with 4096-byte logical sectors.
type area struct {
	geo   geometry
	image string
	loop  string // empty for 512-byte sectors
}

// path is what the daemons open.
func (a *area) path() string {
	if a.loop != "" {
		return a.loop
	}
	return a.image
}

// newArea creates an empty area named name under the image directory;
// remove (or the bench's cleanup) removes it.
func newArea(ctx context.Context, e *benchEnv, name string, g geometry) (*area, error) {
	img, err := newImage(e.imageDir, name, int64(g.align))
	if err != nil {
		return nil, err
	}
	a := &area{geo: g, image: img}
	if g.ss == 512 {
		return a, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%d-byte sectors need a loop device, and root", g.ss)
	}
	out, err := runCmd(ctx, 30*time.Second, nil, "losetup", "-f", "--show", "--sector-size", fmt.Sprint(g.ss), img)
	if err != nil {
		return nil, err
	}
	a.loop = strings.TrimSpace(out)
	loop := a.loop
	reg.atCleanup(func() { detachLoop(loop) })
	return a, nil
}

// remove detaches the loop device and removes the image.
func (a *area) remove() {
	if a == nil {
		return
	}
	if a.loop != "" {
		detachLoop(a.loop)
		a.loop = ""
	}
	os.Remove(a.image)
}

// detachLoop detaches a loop device the bench attached, once.
func detachLoop(dev string) {
	if _, err := os.Stat(dev); err != nil {
		return
	}
	b, err := os.ReadFile("/sys/block/" + filepath.Base(dev) + "/loop/backing_file")
	if err != nil || !strings.Contains(string(b), "msgbench-") {
		return // not attached any more, or no longer ours
	}
	if _, err := runCmd(context.Background(), 30*time.Second, nil, "losetup", "-d", dev); err != nil {
		logf("cleanup: %v", err)
	}
}

// newImage creates an empty file of size bytes under dir, removed at
// exit.
func newImage(dir, name string, size int64) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("msgbench-%d-%s.img", os.Getpid(), name))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	reg.removeLater(path)
	defer f.Close()
	return path, f.Truncate(size)
}
