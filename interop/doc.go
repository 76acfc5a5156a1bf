// Package interop holds the interoperability tests between sanlock-msg and
// the real sanlock 3.8 (Debian packages sanlock, python3-sanlock,
// sanlk-reset). It has no code of its own: everything is in _test.go files.
//
// The tests run the sanlock-msg binary (built once by testimg.Binary) and
// real `sanlock direct` commands and daemons (testimg.StartSanlock), on
// image files and on loop devices with 512- and 4096-byte logical sectors,
// and on a FUSE disk that injects hangs, EIO, slow I/O and torn writes
// (testimg/faultdisk; faults_test.go, whose -faults.long flag runs every
// variant).
// They need root for the loop devices; on a laptop without root or without
// the sanlock packages they skip, and under CI=true they fail instead.
//
// Every daemon runs with io_timeout 1, so a join takes about 3 s; tests
// that wait for daemons run in parallel.
package interop
