package callback

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// dialError explains why connecting to the socket at path failed. EACCES
// is not "no daemon": the daemon may well run, and the user needs to know
// who may connect and what to do.
func dialError(path string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w: cannot connect to the daemon's socket %s: %v; %s",
			ErrPermission, path, err, accessHint(path))
	}
	return fmt.Errorf("%w at %s: %v (is `sanlock-msg daemon` running with this run dir?)", ErrNoDaemon, path, err)
}

// accessHint says who may open path: the owner, group and mode of the
// socket, or of the first directory on its way that this user may not
// search.
func accessHint(path string) string {
	who := fmt.Sprintf("this process runs as uid %d gid %d", os.Getuid(), os.Getgid())
	// The first directory we cannot search hides everything below it.
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	for dir := filepath.Dir(abs); ; {
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		if _, err := os.Stat(dir); errors.Is(err, os.ErrPermission) {
			if st, err := os.Stat(parent); err == nil {
				return fmt.Sprintf("directory %s is %s, and %s; run as root or as a user who may enter it",
					parent, ownership(st), who)
			}
		}
		dir = parent
	}
	st, err := os.Stat(path)
	if err != nil {
		return who
	}
	gname := groupName(st)
	return fmt.Sprintf("the socket is %s, and %s; run as root, as its owner, or as a member of group %s "+
		"(usermod -aG %s USER, then log in again), or start the daemon with another --group or --socket-mode",
		ownership(st), who, gname, gname)
}

// ownership formats "owned by user U, group G, mode 0660".
func ownership(st os.FileInfo) string {
	s := fmt.Sprintf("mode %04o", st.Mode().Perm())
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return s
	}
	uname := strconv.FormatUint(uint64(sys.Uid), 10)
	if u, err := user.LookupId(uname); err == nil {
		uname = fmt.Sprintf("%s (%d)", u.Username, sys.Uid)
	}
	return fmt.Sprintf("owned by user %s, group %s, %s", uname, groupName(st), s)
}

// groupName returns the name of st's group, or its number.
func groupName(st os.FileInfo) string {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return "?"
	}
	gid := strconv.FormatUint(uint64(sys.Gid), 10)
	if g, err := user.LookupGroupId(gid); err == nil {
		return g.Name
	}
	return gid
}
