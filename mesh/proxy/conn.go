package proxy

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := c.TCPConn.Close()
	c.metrics.Close(c.read.Load(), c.written.Load(), c.failed.Load())
	if c.onClose != nil {
		c.onClose()
	}
	return err
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
	q.once.Do(func() { close(q.done) })
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
