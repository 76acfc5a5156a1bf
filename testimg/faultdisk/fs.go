//go:build linux

package faultdisk

import (
	"context"
	"errors"
	"io"
	"log"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Mount names: the source is faultdisk-PID (PID: the serving process), the
// type fuse.faultdisk.
const (
	fsNamePrefix = "faultdisk-"
	subtype      = "faultdisk"
)

// discardLogger silences go-fuse: a request answered after its process
// died is expected here, and the log would only say so.
var discardLogger = log.New(io.Discard, "", 0)

// rootNode is the mount's directory: disk.img and ctl.
type rootNode struct {
	fs.Inode
	d *Disk
}

var _ = (fs.NodeOnAdder)((*rootNode)(nil))

func (r *rootNode) OnAdd(ctx context.Context) {
	img := r.NewPersistentInode(ctx, &imageNode{d: r.d}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild(ImageName, img, false)
	ctl := r.NewPersistentInode(ctx, &ctlNode{d: r.d}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 3})
	r.AddChild(CtlName, ctl, false)
}

// imageNode is disk.img.
type imageNode struct {
	fs.Inode
	d *Disk
}

var (
	_ = (fs.NodeOpener)((*imageNode)(nil))
	_ = (fs.NodeReader)((*imageNode)(nil))
	_ = (fs.NodeWriter)((*imageNode)(nil))
	_ = (fs.NodeGetattrer)((*imageNode)(nil))
	_ = (fs.NodeSetattrer)((*imageNode)(nil))
	_ = (fs.NodeFsyncer)((*imageNode)(nil))
	_ = (fs.NodeFlusher)((*imageNode)(nil))
)

// Open answers FOPEN_DIRECT_IO: every read and write comes to us, none is
// served from the page cache (see the package doc). FOPEN_PARALLEL_DIRECT_WRITES
// lets writes to different sectors be in flight together, as on a disk:
// without it the kernel holds the file's inode lock for the whole of each
// write, so one slow or hung write would stall every other host's.
func (n *imageNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_PARALLEL_DIRECT_WRITES, 0
}

func (n *imageNode) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := n.d.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	buf := make([]byte, min(int64(len(dest)), size-off))
	k, err := n.d.io(ctx, "read", buf, off)
	if err != nil && !(errors.Is(err, io.ErrUnexpectedEOF) && k > 0) {
		return nil, errno(err)
	}
	return fuse.ReadResultData(buf[:k]), 0
}

func (n *imageNode) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	// go-fuse reuses data once we return, and an abandoned request's I/O
	// goes on after that.
	p := append([]byte(nil), data...)
	k, err := n.d.io(ctx, "write", p, off)
	if err != nil && !(errors.Is(err, io.ErrShortWrite) && k > 0) {
		// A torn write fails with EIO although part of it landed.
		return 0, errno(err)
	}
	return uint32(k), 0
}

func (n *imageNode) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(n.d.Size())
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 4096
	out.Nlink = 1
	return 0
}

// Setattr accepts and ignores changes (a truncate to the same size, touch):
// the image keeps its size.
func (n *imageNode) Setattr(ctx context.Context, fh fs.FileHandle, _ *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return n.Getattr(ctx, fh, out)
}

// Fsync succeeds: every write is applied when it is answered.
func (n *imageNode) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno { return 0 }

func (n *imageNode) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno { return 0 }

// ctlNode is the control file: reads show the state, each line written is
// a command (Disk.Control).
type ctlNode struct {
	fs.Inode
	d *Disk
}

var (
	_ = (fs.NodeOpener)((*ctlNode)(nil))
	_ = (fs.NodeReader)((*ctlNode)(nil))
	_ = (fs.NodeWriter)((*ctlNode)(nil))
	_ = (fs.NodeGetattrer)((*ctlNode)(nil))
	_ = (fs.NodeSetattrer)((*ctlNode)(nil))
	_ = (fs.NodeFlusher)((*ctlNode)(nil))
)

func (c *ctlNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (c *ctlNode) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	s := c.d.String()
	if off >= int64(len(s)) {
		return fuse.ReadResultData(nil), 0
	}
	s = s[off:]
	return fuse.ReadResultData([]byte(s[:min(len(s), len(dest))])), 0
}

// Write runs each line as a command. A bad line fails the write with
// EINVAL; the reason is in the state that reading ctl shows.
func (c *ctlNode) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	for line := range strings.Lines(string(data)) {
		if err := c.d.Control(line); err != nil {
			c.d.setCtlErr(err)
			return 0, syscall.EINVAL
		}
	}
	c.d.setCtlErr(nil)
	return uint32(len(data)), 0
}

func (c *ctlNode) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	out.Nlink = 1
	return 0
}

// Setattr accepts the truncate of `echo cmd > ctl`.
func (c *ctlNode) Setattr(ctx context.Context, fh fs.FileHandle, _ *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return c.Getattr(ctx, fh, out)
}

func (c *ctlNode) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno { return 0 }
