// Package faultdisk serves a disk image through the kernel's FUSE driver
// and injects storage faults into it on command: hung reads or writes,
// EIO, slow I/O, torn writes. It is the real-kernel counterpart of
// delta.FaultDevice: the faults are the same delta.Fault values (the FUSE
// file is a delta.FaultDevice over an in-memory image), but the processes
// that suffer them are real ones, sanlock-msg and sanlock daemons doing
// O_DIRECT|O_SYNC I/O through system calls, not code in the test.
//
// # How it works
//
// A Disk is a FUSE file system with two files:
//
//   - disk.img (Disk.Path), the image. Every open gets FOPEN_DIRECT_IO, so
//     every read and write of every process, buffered or O_DIRECT, goes to
//     this package's handler: there is no page cache that could hide a
//     fault or let two daemons see different contents. Each write request
//     is applied to memory at once, as one sector write of a disk is.
//   - ctl (Disk.CtlPath), the control file: `echo 'hang write' > ctl`
//     injects a fault, `cat ctl` shows the faults and counters (see
//     Disk.Control for the commands). Tests call the same Control, or
//     Inject, Heal and Release directly.
//
// The server runs in the calling process (the test binary); the daemons are
// separate processes that open Disk.Path.
//
// # O_DIRECT: FOPEN_DIRECT_IO, not a loop device
//
// sanlock opens lockspace paths with O_DIRECT and does its I/O with Linux
// AIO (io_submit, then io_getevents with its own timeout); our daemon uses
// pread/pwrite with O_DIRECT|O_SYNC from goroutines it may abandon. Both
// work on the FUSE file directly: the kernel accepts O_DIRECT on a FUSE
// file, and FOPEN_DIRECT_IO sends each request straight to us. The mount
// also asks for FUSE_ASYNC_DIO, so that io_submit only queues sanlock's
// requests and returns, as on a real disk: without it the kernel runs AIO
// on FUSE synchronously, and a hung read would block sanlock inside
// io_submit, where its I/O timeout cannot run.
//
// A loop device over Disk.Path also works (testimg.Loop; Disk.Loop adds the
// cleanup order it needs), and is the way to get a block device, with
// 4096-byte logical sectors for example. It is not the default because a
// process waiting on a hung loop device is in uninterruptible sleep that
// not even SIGKILL ends, whereas a process waiting on the FUSE file
// directly can be killed (below), which keeps test cleanup simple.
//
// # Hangs, cleanup and crashes
//
// A hung request blocks its handler until Release or Heal; the process
// that made it sleeps in the kernel. The kernel only lets such a process
// die once its request is answered, so while a request hangs the handler
// checks, every 100 ms and whenever the kernel sends an interrupt, whether
// the requesting thread has SIGKILL pending or is gone; if so it answers
// EINTR at once and the process can exit. The I/O itself stays queued "in
// the disk" and still lands when the hang is released, as a real disk's
// queued write may land after its host died.
//
// Mount registers Close with t.Cleanup: Close heals (every fault removed,
// every hung I/O released), unmounts, and if the mount is still busy after
// 10 s (a process the test failed to stop still has the image open) fails
// the test naming that process, detaches the mount lazily and aborts the
// FUSE connection through /sys/fs/fuse/connections/N/abort (mounting
// fusectl if needed), which fails every pending and later request of that
// connection. Tests that
// start processes on the disk must end its hangs before stopping them:
// register t.Cleanup(d.Heal) after starting them (cleanups run last in,
// first out).
//
// A test binary that crashes cannot leave processes hung: the kernel
// aborts a FUSE connection when its server's /dev/fuse descriptor closes,
// which happens when the process exits however it exits, and every
// pending and later request then fails with ENOTCONN. (That holds only if
// no child process inherited the descriptor: go-fuse opens it without
// O_CLOEXEC when it mounts directly, so New sets it under the fork lock
// before any daemon can be started.) What remains is a
// dead mount ("Transport endpoint is not connected"). Each mount is named
// faultdisk-PID after the serving process, and the next Mount (in any test
// binary) detaches the dead mounts of processes that no longer run.
//
// # Prerequisites
//
// /dev/fuse and either root (the mount(2) system call; no fusermount
// needed) or a fusermount binary. Mount skips a test without them, or
// fails it under CI=true (testimg.Unavailable).
package faultdisk
