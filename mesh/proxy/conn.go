package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/telemetry"
)

// conn is an accepted client connection. Reads first drain the few bytes
// that protocol detection peeked, then go straight to the socket; bytes in
// both directions are counted for the tcp_* metrics.
type conn struct {
	*net.TCPConn
	br       *bufio.Reader // detection buffer; nil once drained
	read     atomic.Uint64
	written  atomic.Uint64
	origDst  netip.AddrPort // valid when redirected
	redirect bool
	metrics  *telemetry.TCPConn
	onClose  func()
	closed   atomic.Bool
	failed   atomic.Bool
	// Set once mutual TLS is terminated on this connection.
	tls    bool
	peerID string
	// h1 follows the requests of a connection served as HTTP/1; h2 is
	// set for one served as HTTP/2.
	h1 *h1Scanner
	h2 atomic.Bool
	// inflight counts the connection's requests in flight; idleSince is
	// when it last had none (Unix ns), for eviction at the connection cap.
	inflight  atomic.Int32
	idleSince atomic.Int64
	// active counts the requests being handled on the connection,
	// refused ones included: the streams a flood makes it hold.
	active atomic.Int32

	// client is the share of the client the connection belongs to, once
	// known (inbound only).
	client atomic.Pointer[clientShare]

	// Parking of an idle plaintext HTTP/1 connection (parker): parkIn is
	// the queue of the HTTP/1 server serving it, which it goes back to;
	// parkNext says net/http's wait for the next request was ended to
	// park it; readDeadline is the read deadline net/http last set (Unix
	// ns, 0 for none). parked and parkedFD are guarded by the parker.
	parkIn       atomic.Pointer[queueListener]
	parkNext     atomic.Bool
	readDeadline atomic.Int64
	parked       bool
	parkedFD     int32
}

// parkAfter is how long net/http waits for an HTTP/1 connection's next
// request before the connection is parked: a client that sends at least
// this often stays with net/http, where a request costs no hand-over.
const parkAfter = 100 * time.Millisecond

// errParked ends net/http's wait for the next request on a connection
// being parked. It is a timeout, as net/http's own idle timeout is, so
// that net/http closes the connection quietly (a read error that is not
// a timeout, EOF or a read OpError gets a 400 written first).
type parkedError struct{}

func (parkedError) Error() string   { return "proxy: idle connection parked" }
func (parkedError) Timeout() bool   { return true }
func (parkedError) Temporary() bool { return true }

var errParked net.Error = parkedError{}

// betweenRequests reports whether an HTTP/1 connection has no request
// being handled and no byte of the next one read: net/http is waiting
// for it.
func (c *conn) betweenRequests() bool {
	if c.h1 == nil || c.inflight.Load() != 0 || c.active.Load() != 0 {
		return false
	}
	s := c.h1
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == hsHeadStart && len(s.heads) == 0
}

// readOrPark is net/http's wait for the next request: it reads as asked,
// but if nothing comes within parkAfter (and net/http's own deadline is
// later) it returns errParked, and the Close that follows parks the
// connection instead of closing it.
func (c *conn) readOrPark(p []byte) (int, error) {
	dl := c.readDeadline.Load()
	at := time.Now().Add(parkAfter)
	if dl != 0 && dl <= at.UnixNano() {
		return c.readSocket(p)
	}
	c.TCPConn.SetReadDeadline(at)
	n, err := c.readSocket(p)
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && !c.closed.Load() {
		c.parkNext.Store(true)
		return 0, errParked
	}
	if dl == 0 {
		c.TCPConn.SetReadDeadline(time.Time{})
	} else {
		c.TCPConn.SetReadDeadline(time.Unix(0, dl))
	}
	return n, err
}

// SetReadDeadline notes net/http's deadline, for readOrPark.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(unixNano(t))
	return c.TCPConn.SetReadDeadline(t)
}

// SetDeadline notes the read deadline, for readOrPark.
func (c *conn) SetDeadline(t time.Time) error {
	c.readDeadline.Store(unixNano(t))
	return c.TCPConn.SetDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// tlsConn is a terminated mutual-TLS connection handed on to the HTTP
// servers or to TCP forwarding, and it closes the counted socket under it.
// It embeds the net.Conn interface, not *tls.Conn: net/http must not see
// a ConnectionState method, or it takes the stream for its own TLS and
// its cleartext HTTP/2 server refuses it.
type tlsConn struct {
	net.Conn // a *tls.Conn
	tc       *tls.Conn
	base     *conn
	br       *bufio.Reader // detection buffer (no ALPN); nil once drained
}

// Read drains what detection peeked, then reads the TLS stream.
func (c *tlsConn) Read(p []byte) (int, error) {
	if br := c.br; br != nil {
		if br.Buffered() > 0 {
			return br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// tlsReader reads the TLS stream under a tlsConn, for its detection buffer.
type tlsReader struct{ c *tlsConn }

func (r tlsReader) Read(p []byte) (int, error) { return r.c.Conn.Read(p) }

func (c *tlsConn) Close() error {
	err := c.Conn.Close()
	c.base.Close()
	return err
}

// baseConn is the accepted connection under c, or nil.
func baseConn(c net.Conn) *conn {
	switch v := c.(type) {
	case *conn:
		return v
	case *tlsConn:
		return v.base
	case *h1Conn:
		return baseConn(v.Conn)
	case *h2Conn:
		return v.base
	}
	return nil
}

// rawReader reads from the socket and counts, for the detection buffer.
type rawReader struct{ c *conn }

func (r rawReader) Read(p []byte) (int, error) {
	n, err := r.c.TCPConn.Read(p)
	r.c.read.Add(uint64(n))
	return n, err
}

func (c *conn) Read(p []byte) (int, error) {
	if br := c.br; br != nil {
		if br.Buffered() > 0 {
			return br.Read(p)
		}
		c.br = nil
	}
	// net/http's wait for the next request reads into its 4 KiB buffer;
	// the 1-byte reads are its background reads while a handler runs.
	if len(p) > 1 && c.parkIn.Load() != nil && c.betweenRequests() {
		return c.readOrPark(p)
	}
	return c.readSocket(p)
}

func (c *conn) readSocket(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.read.Add(uint64(n))
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	c.written.Add(uint64(n))
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

func (c *conn) Close() error {
	q := c.parkIn.Load()
	if q != nil && c.parkNext.CompareAndSwap(true, false) && q.park.park(c, q) {
		return nil // net/http let go of it; the parker holds it
	}
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if q != nil {
		q.park.unpark(c)
	}
	err := c.TCPConn.Close()
	c.metrics.Close(c.read.Load(), c.written.Load(), c.failed.Load())
	if c.onClose != nil {
		c.onClose()
	}
	if plant.On(plant.ConnLeak) {
		leakConn()
	}
	return err
}

// leakConn is the planted defect conn-leak (a test build only): a
// goroutine that never ends, holding 4 KiB written to so that its pages
// are resident, for each client connection closed.
func leakConn() {
	held := make([]byte, 4<<10)
	for i := range held {
		held[i] = byte(i)
	}
	go func() {
		var never chan struct{}
		<-never // a nil channel: blocks for good
		runtime.KeepAlive(held)
	}()
}

// upstreamConn is a dialled connection, counted as peer="dst".
type upstreamConn struct {
	net.Conn
	read, written atomic.Uint64
	metrics       *telemetry.TCPConn
	closed        atomic.Bool
	failed        atomic.Bool
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(uint64(n))
	return n, err
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(uint64(n))
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

func (c *upstreamConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := c.Conn.Close()
	c.metrics.Close(c.read.Load(), c.written.Load(), c.failed.Load())
	return err
}

// queueListener hands detected HTTP connections to an http.Server.
type queueListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	// park holds the server's idle HTTP/1 connections, from which they
	// come back to ch.
	park parker
}

func newQueueListener(addr net.Addr) *queueListener {
	return &queueListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *queueListener) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// push gives c to the server, or closes it if the server is gone.
func (q *queueListener) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *queueListener) Close() error {
	q.once.Do(func() {
		close(q.done)
		q.park.close()
	})
	return nil
}

func (q *queueListener) Addr() net.Addr { return q.addr }

// limit is a non-blocking counting semaphore.
type limit struct {
	n   atomic.Int64
	max int64
}

func (l *limit) acquire() bool {
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return false
	}
	return true
}

func (l *limit) release() { l.n.Add(-1) }
