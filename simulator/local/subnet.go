package local

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// The range of X in the per-run subnets 127.X.0.0/16. 127.0/16 is left
// alone (127.0.0.1, Debian's 127.0.1.1).
const (
	firstSubnet = 10
	lastSubnet  = 250
)

// subnetLock is an exclusive claim on 127.X.0.0/16 for one Env: an flock
// on a lock file per X under os.TempDir(). The kernel drops the lock when
// the process dies, so a crashed run never blocks the next one.
type subnetLock struct {
	x    int
	path string
	f    *os.File
}

func lockPath(x int) string {
	return filepath.Join(os.TempDir(), "skiff-local-127."+strconv.Itoa(x)+".lock")
}

// allocSubnet claims the first free subnet. A subnet is free when its lock
// is not held and the probe port on 127.X.0.1 can be bound (nothing left
// over from elsewhere listens there).
func allocSubnet(probePort int) (*subnetLock, error) {
	var inUse []string
	for x := firstSubnet; x <= lastSubnet; x++ {
		l, err := tryLock(x)
		if errors.Is(err, errTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort(fmt.Sprintf("127.%d.0.1", x), strconv.Itoa(probePort))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			inUse = append(inUse, addr)
			l.release()
			continue
		}
		ln.Close()
		return l, nil
	}
	msg := fmt.Sprintf("no free loopback subnet for the local environment: every 127.X.0.0/16 with X in %d..%d is held by another running environment (lock files %s)",
		firstSubnet, lastSubnet, filepath.Join(os.TempDir(), "skiff-local-127.*.lock"))
	if len(inUse) > 0 {
		msg += fmt.Sprintf(", or has a port in use (%d such, e.g. %s)", len(inUse), inUse[0])
	}
	return nil, errors.New(msg + "; close other environments (their locks go when their processes end) and try again")
}

// errTaken says a subnet's lock is held elsewhere.
var errTaken = errors.New("subnet taken")

// tryLock takes the lock of 127.X/16 without blocking, or fails with
// errTaken.
func tryLock(x int) (*subnetLock, error) {
	path := lockPath(x)
	for {
		// Read-only is enough for flock, and opens another user's lock
		// file too, so two users exclude each other.
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return nil, errTaken // someone else's, unreadable
			}
			return nil, fmt.Errorf("subnet lock %s: %w", path, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, errTaken
			}
			return nil, fmt.Errorf("subnet lock %s: flock: %w", path, err)
		}
		// The holder before us may have unlinked the file between our open
		// and our flock (release unlinks while holding the lock); then our
		// lock is on an orphan inode and guards nothing. Try again.
		var held, cur syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &cur) == nil &&
			held.Dev == cur.Dev && held.Ino == cur.Ino {
			return &subnetLock{x: x, path: path, f: f}, nil
		}
		f.Close()
	}
}

// prefix is the claimed subnet.
func (l *subnetLock) prefix() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(l.x), 0, 0}), 16)
}

// release unlinks the lock file while still holding the lock (it may be
// another user's, then it stays), then drops the lock.
func (l *subnetLock) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}
