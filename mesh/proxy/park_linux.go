package proxy

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// parkSupported says idle HTTP/1 connections can be parked.
const parkSupported = true

// parker holds idle plaintext HTTP/1 client connections without a
// goroutine each. net/http serves a kept-alive connection from a goroutine
// that waits for the next request with its 4 KiB bufio.Reader and 4 KiB
// bufio.Writer: about 20 KiB resident per idle connection with the stack
// (loadgen/idleconn). A connection idle for parkAfter is taken back
// instead (conn.Read ends net/http's wait, conn.Close hands the socket
// here): its socket joins an epoll set that one goroutine watches through
// the runtime's poller, and when the client sends again (or closes) it
// goes back to the HTTP/1 server as a new connection. Parked, it costs
// the proxy's own per-connection state and the socket.
//
// The zero value is ready; the epoll set and the goroutine are made at
// the first park.
type parker struct {
	mu      sync.Mutex
	started bool
	closed  bool
	ep      *os.File // the epoll set, in the runtime's poller
	epfd    int
	conns   map[int32]*conn // by socket descriptor
	done    chan struct{}
}

// parkSweep is how often parked connections are checked against the idle
// timeout that net/http applied while it held them.
const parkSweep = 5 * time.Second

// park takes c, whose HTTP/1 server has let go of it, and watches its
// socket; it reports false when it cannot (c closed meanwhile, the parker
// closed, epoll unavailable): c is then the caller's to close.
func (pk *parker) park(c *conn, q *queueListener) bool {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.closed || !pk.startLocked(q) {
		return false
	}
	rc, err := c.TCPConn.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	// Under Control the descriptor cannot be closed and reused; under
	// pk.mu, conn.Close cannot remove c before it is added.
	rc.Control(func(fd uintptr) {
		if c.closed.Load() {
			return
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
		if syscall.EpollCtl(pk.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev) != nil {
			return
		}
		pk.conns[int32(fd)] = c
		c.parked, c.parkedFD = true, int32(fd)
		ok = true
	})
	return ok
}

// unpark forgets c if it is parked; conn.Close calls it before closing the
// socket, so that a descriptor number the kernel reuses is never watched
// for c.
func (pk *parker) unpark(c *conn) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.removeLocked(c)
}

func (pk *parker) removeLocked(c *conn) {
	fd := c.parkedFD
	if !c.parked || pk.conns[fd] != c {
		return
	}
	delete(pk.conns, fd)
	c.parked = false
	syscall.EpollCtl(pk.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
}

// startLocked makes the epoll set and starts the goroutine watching it,
// once.
func (pk *parker) startLocked(q *queueListener) bool {
	if pk.started {
		return pk.ep != nil
	}
	pk.started = true
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	// Non-blocking, so that os.NewFile puts it in the runtime's poller:
	// an epoll set is readable while it has events ready.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return false
	}
	pk.ep, pk.epfd = os.NewFile(uintptr(epfd), "parked-connections"), epfd
	rc, err := pk.ep.SyscallConn()
	if err != nil {
		pk.ep.Close()
		pk.ep = nil
		return false
	}
	pk.conns = make(map[int32]*conn)
	pk.done = make(chan struct{})
	go pk.run(rc, q)
	return true
}

// run hands each parked connection whose client sent (or closed) back to
// the HTTP/1 server, and closes those idle past idleTimeout, until the
// parker is closed.
func (pk *parker) run(rc syscall.RawConn, q *queueListener) {
	defer close(pk.done)
	events := make([]syscall.EpollEvent, 128)
	lastSweep := time.Now()
	for {
		var n int
		pk.ep.SetReadDeadline(time.Now().Add(parkSweep))
		err := rc.Read(func(fd uintptr) bool {
			var werr error
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr != nil {
				n = 0 // EINTR: the loop tries again
				return true
			}
			return n > 0
		})
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return // closed
		}
		woken := make([]*conn, 0, n)
		pk.mu.Lock()
		for _, ev := range events[:n] {
			if c := pk.conns[ev.Fd]; c != nil {
				pk.removeLocked(c)
				woken = append(woken, c)
			}
		}
		pk.mu.Unlock()
		for _, c := range woken {
			// A new connection to the HTTP/1 server, with its scanner:
			// the client's next request is waiting.
			q.push(&h1Conn{Conn: c, scan: c.h1})
		}
		if now := time.Now(); now.Sub(lastSweep) >= parkSweep {
			lastSweep = now
			pk.sweep(now)
		}
	}
}

// sweep closes the parked connections idle for idleTimeout, as net/http
// would have.
func (pk *parker) sweep(now time.Time) {
	cutoff := now.Add(-idleTimeout).UnixNano()
	var old []*conn
	pk.mu.Lock()
	for _, c := range pk.conns {
		if c.idleSince.Load() < cutoff {
			old = append(old, c)
		}
	}
	pk.mu.Unlock()
	for _, c := range old {
		c.Close()
	}
}

// close closes every parked connection and stops watching; connections
// parked later are closed by their caller.
func (pk *parker) close() {
	pk.mu.Lock()
	pk.closed = true
	var all []*conn
	for _, c := range pk.conns {
		all = append(all, c)
	}
	ep, done := pk.ep, pk.done
	pk.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
	if ep != nil {
		ep.Close()
		<-done
	}
}
