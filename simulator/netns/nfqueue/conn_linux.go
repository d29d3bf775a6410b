//go:build linux

package nfqueue

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Socket options the syscall package does not name (linux/socket.h,
// linux/netlink.h).
const (
	solNetlink = 270 // SOL_NETLINK
)

// requestTimeout bounds the wait for the kernel's answer to a
// configuration request (it answers at once; this is a safety net).
const requestTimeout = 5 * time.Second

// maxBatch bounds the packets one Receive call hands over, so a flood
// cannot keep the caller from releasing the packets it holds.
const maxBatch = 256

// maxVerdictsPerSend bounds one sendto: 1024 verdicts are 32 KiB.
const maxVerdictsPerSend = 1024

// Conn is a netlink socket bound to one queue. Receive is for one
// goroutine at a time; SetVerdicts, SetReadDeadline, Errors and Close
// may be called from any goroutine. A nil or closed Conn is not usable.
type Conn struct {
	queue uint16
	f     *os.File
	rc    syscall.RawConn
	seq   atomic.Uint32
	buf   []byte // Receive's, one reader

	wmu  sync.Mutex
	wbuf []byte

	errs atomic.Uint64
}

// Open creates a netlink socket in the calling thread's network
// namespace, binds queue and configures it (copy mode packet, cfg's copy
// range, queue length and fail-open flag). Route packets to the queue
// (an NFQUEUE rule) only after Open returns: the kernel drops (or, with
// the rule's --queue-bypass, passes) packets sent to an unbound queue.
// It fails with EBUSY when another socket already holds the queue.
func Open(queue uint16, cfg Config) (*Conn, error) {
	cfg = cfg.normalize()
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, syscall.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nfqueue: netlink socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("nfqueue: bind netlink socket: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, cfg.ReadBuffer); err != nil {
		// Without CAP_NET_ADMIN: the plain option, capped by rmem_max.
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, cfg.ReadBuffer)
	}
	// An overrun then costs the packets it costs (the kernel counts them
	// as user_dropped) instead of also failing the next read with ENOBUFS.
	_ = syscall.SetsockoptInt(fd, solNetlink, syscall.NETLINK_NO_ENOBUFS, 1)

	f := os.NewFile(uintptr(fd), "nfqueue")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("nfqueue: the netlink socket is not pollable: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("nfqueue: %w", err)
	}
	c := &Conn{queue: queue, f: f, rc: rc, buf: make([]byte, 64<<10)}
	if err := c.request(func(seq uint32) []byte { return bindMsg(seq, queue) }); err != nil {
		f.Close()
		if errors.Is(err, syscall.EBUSY) {
			return nil, fmt.Errorf("nfqueue: bind queue %d: another socket holds it: %w", queue, err)
		}
		return nil, fmt.Errorf("nfqueue: bind queue %d: %w", queue, err)
	}
	if err := c.request(func(seq uint32) []byte { return paramsMsg(seq, queue, cfg) }); err != nil {
		f.Close()
		return nil, fmt.Errorf("nfqueue: configure queue %d (copy range %d, length %d): %w", queue, cfg.CopyRange, cfg.MaxLen, err)
	}
	return c, nil
}

// request sends one configuration message and waits for its ack.
// Packets read meanwhile (none, when the caller routes packets only after
// Open) are accepted at once, so they do not wait forever.
func (c *Conn) request(msg func(seq uint32) []byte) error {
	seq := c.seq.Add(1)
	if err := c.send(msg(seq)); err != nil {
		return err
	}
	if err := c.f.SetReadDeadline(time.Now().Add(requestTimeout)); err != nil {
		return err
	}
	defer c.f.SetReadDeadline(time.Time{})
	var (
		done  bool
		errno int
		stray []Verdict
	)
	for !done {
		var perr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), c.buf, 0)
			for errors.Is(err, syscall.EINTR) {
				n, _, err = syscall.Recvfrom(int(fd), c.buf, 0)
			}
			switch {
			case errors.Is(err, syscall.EAGAIN):
				return false // nothing yet: wait until readable
			case err != nil:
				perr = err
				return true
			}
			perr = parse(c.buf[:n], func(p Packet) {
				stray = append(stray, Verdict{ID: p.ID})
			}, func(s uint32, e int) {
				if s == seq {
					done, errno = true, e
				} else if e != 0 {
					c.errs.Add(1)
				}
			})
			return true
		})
		if err == nil {
			err = perr
		}
		if err != nil {
			return fmt.Errorf("waiting for the kernel's answer: %w", err)
		}
		if len(stray) > 0 {
			if err := c.SetVerdicts(stray); err != nil {
				return err
			}
			stray = stray[:0]
		}
	}
	if errno != 0 {
		return syscall.Errno(errno)
	}
	return nil
}

// SetReadDeadline sets when a waiting Receive gives up: a zero t means
// never; a t in the past wakes a Receive that is waiting now. Safe to
// call from any goroutine.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// Receive waits until packets are queued or the read deadline passes,
// then calls fn for each packet ready, in queue order, up to 256 per
// call (a batch: as many as the socket holds, read without waiting
// again). It returns how many it handed over: 0 and a nil error when the
// deadline came first. Payload slices are reused after fn returns. Kernel
// error messages (a verdict for a packet id it does not know) are counted
// in Errors. After Close it returns an error that wraps os.ErrClosed.
func (c *Conn) Receive(fn func(Packet)) (int, error) {
	n := 0
	var perr error
	err := c.rc.Read(func(fd uintptr) bool {
		for n < maxBatch {
			m, _, err := syscall.Recvfrom(int(fd), c.buf, 0)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				return n > 0
			case errors.Is(err, syscall.ENOBUFS):
				continue // an overrun: the kernel counted the packets it lost
			case err != nil:
				perr = err
				return true
			}
			if err := parse(c.buf[:m], func(p Packet) { n++; fn(p) }, func(_ uint32, e int) {
				if e != 0 {
					c.errs.Add(1)
				}
			}); err != nil {
				perr = err
				return true
			}
		}
		return true
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, nil
		}
		return n, fmt.Errorf("nfqueue: queue %d: read: %w", c.queue, err)
	}
	if perr != nil {
		return n, fmt.Errorf("nfqueue: queue %d: read: %w", c.queue, perr)
	}
	return n, nil
}

// SetVerdicts tells the kernel the fate of packets, in order, with as few
// system calls as it can (up to 1024 verdicts per sendto). The kernel
// acts on each verdict as it reads it: an accepted packet continues
// through the network stack before the next verdict is read.
func (c *Conn) SetVerdicts(vs []Verdict) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(vs) > 0 {
		k := min(len(vs), maxVerdictsPerSend)
		b := c.wbuf[:0]
		for _, v := range vs[:k] {
			b = appendVerdict(b, c.seq.Add(1), c.queue, v)
		}
		c.wbuf = b
		if err := c.send(b); err != nil {
			return fmt.Errorf("nfqueue: queue %d: verdicts: %w", c.queue, err)
		}
		vs = vs[k:]
	}
	return nil
}

// send writes b to the kernel.
func (c *Conn) send(b []byte) error {
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), b, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK})
		return !errors.Is(serr, syscall.EAGAIN) && !errors.Is(serr, syscall.EINTR)
	})
	if err != nil {
		return err
	}
	return serr
}

// Errors counts the error messages the kernel sent back (other than
// answers to Open's own requests).
func (c *Conn) Errors() uint64 { return c.errs.Load() }

// Close closes the socket, which unbinds the queue; the kernel drops the
// packets still waiting for a verdict. A Receive in progress returns.
func (c *Conn) Close() error { return c.f.Close() }
