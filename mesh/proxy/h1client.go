package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// This file is the proxy's own HTTP/1.1 client for plaintext upstreams.
// net/http's Transport runs two goroutines per connection, a read loop and
// a write loop, and hands every request and response between them and the
// caller over channels: about a third of what an HTTP hop cost the proxy
// (docs/proxy.md, "Cost per request"). Here the calling goroutine takes an
// idle connection (or dials), writes the request, reads the response head
// and returns; the response body gives the connection back to the pool at
// its clean end. A request with a body is the one exception: its body is
// written by a goroutine of its own while the caller reads the response,
// because an upstream may answer before it has read the whole body (full
// duplex, as net/http does it). What it does not handle goes to net/http:
// upgrades, Expect, CONNECT and any scheme but http.

// h1Transport is a pool of plaintext HTTP/1.1 connections, keyed by
// upstream address, with the limits the net/http pool it replaces had.
// Idle connections hold no goroutine and no buffer.
type h1Transport struct {
	// dial opens a connection; its errors are connectErrors.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// fallback serves the requests this client does not handle.
	fallback http.RoundTripper

	maxIdle, maxIdlePerHost int
	idleTimeout             time.Duration
	maxHeaderBytes          int64

	mu    sync.Mutex
	idle  map[string][]*h1UpConn // per address, oldest first
	nIdle int

	// retried counts requests sent again on a fresh connection after a
	// reused one turned out closed.
	retried atomic.Uint64
}

var _ http.RoundTripper = (*h1Transport)(nil)

// newH1Transport is the plaintext HTTP/1.1 client of one direction, with
// the pool limits of newTransport's.
func newH1Transport(dial func(ctx context.Context, network, addr string) (net.Conn, error), fallback http.RoundTripper) *h1Transport {
	return &h1Transport{
		dial:           dial,
		fallback:       fallback,
		maxIdle:        1024,
		maxIdlePerHost: maxIdlePerHost,
		idleTimeout:    upstreamIdleTimeout,
		maxHeaderBytes: DefaultMaxHeaderBytes,
		idle:           make(map[string][]*h1UpConn),
	}
}

// upstreamIdleTimeout closes an upstream connection unused for this long
// (net/http's IdleConnTimeout in newTransport).
const upstreamIdleTimeout = 90 * time.Second

// handles reports whether req is a plain exchange this client serves.
// Upgrades need the connection itself after a 101, Expect a wait for 100
// Continue before the body: net/http does both.
func (t *h1Transport) handles(req *http.Request) bool {
	return req.URL.Scheme == "http" && req.Method != http.MethodConnect &&
		len(req.Header["Upgrade"]) == 0 && len(req.Header["Expect"]) == 0 &&
		!connectionUpgrade(req.Header["Connection"])
}

func connectionUpgrade(vs []string) bool {
	for _, v := range vs {
		if strings.Contains(strings.ToLower(v), "upgrade") {
			return true
		}
	}
	return false
}

// RoundTrip sends req on an idle connection to req.URL.Host, or a new one,
// and returns the response once its head is read.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		closeRequestBody(req)
		return nil, context.Cause(ctx)
	}
	addr := hostPort(req.URL.Host)
	fresh := false
	for {
		var c *h1UpConn
		if !fresh {
			c = t.take(addr)
		}
		if c == nil {
			nc, err := t.dial(ctx, "tcp", addr)
			if err != nil {
				closeRequestBody(req)
				if ctx.Err() != nil {
					return nil, context.Cause(ctx)
				}
				return nil, err
			}
			c = &h1UpConn{t: t, addr: addr, nc: nc}
			c.abortFn = c.abort // bound once: a method value allocates
		}
		resp, err := c.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		if fresh || !c.reused || !errors.Is(err, errServerClosed) {
			return nil, err
		}
		// The server had closed the connection while it was idle (or
		// closed it on receiving the request, unread): nothing was
		// answered, so a request that may be replayed goes once more,
		// on a new connection, as net/http retries it.
		r, ok := rewind(req)
		if !ok {
			return nil, err
		}
		req, fresh = r, true
		t.retried.Add(1)
	}
}

// errServerClosed is a reused connection that ended before a byte of the
// response: the server closed it while it was idle.
var errServerClosed = errors.New("the upstream closed an idle keep-alive connection before answering")

// rewind returns the request to send again after errServerClosed, when
// that is safe: its body can be had again, and the request is idempotent
// (the server may have seen it), the rule of net/http's Transport.
func rewind(req *http.Request) (*http.Request, bool) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.GetBody == nil {
		return nil, false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		if len(req.Header["Idempotency-Key"]) == 0 && len(req.Header["X-Idempotency-Key"]) == 0 {
			return nil, false
		}
	}
	if !hasBody {
		return req, true
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	r := *req
	r.Body = body
	return &r, true
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// hostPort is addr with the http port added when it names none.
func hostPort(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i < 0 || strings.HasSuffix(addr, "]") {
		return addr + ":80"
	}
	return addr
}

// take returns the newest idle connection to addr that is still open, or
// nil; those idle too long, or that the server closed, are closed.
func (t *h1Transport) take(addr string) *h1UpConn {
	for {
		t.mu.Lock()
		cs := t.idle[addr]
		if len(cs) == 0 {
			t.mu.Unlock()
			return nil
		}
		c := cs[len(cs)-1]
		cs[len(cs)-1] = nil
		t.idle[addr] = cs[:len(cs)-1]
		t.nIdle--
		t.mu.Unlock()
		if time.Since(c.idleAt) < t.idleTimeout && c.alive() {
			return c
		}
		c.nc.Close()
	}
}

// put keeps c as idle, or closes it when the pool is full.
func (t *h1Transport) put(c *h1UpConn) {
	c.idleAt = time.Now()
	c.reused = true
	t.mu.Lock()
	cs := t.idle[c.addr]
	if len(cs) >= t.maxIdlePerHost || t.nIdle >= t.maxIdle {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.addr] = append(cs, c)
	t.nIdle++
	t.mu.Unlock()
}

// closeIdle closes the idle connections unused since before cutoff (all
// of them for the zero time) and those the server closed, and forgets the
// addresses left without any.
func (t *h1Transport) closeIdle(cutoff time.Time) {
	if t == nil {
		return
	}
	var stale []*h1UpConn
	t.mu.Lock()
	for addr, cs := range t.idle {
		kept := cs[:0]
		for _, c := range cs {
			if !cutoff.IsZero() && c.idleAt.After(cutoff) && c.alive() {
				kept = append(kept, c)
			} else {
				stale = append(stale, c)
			}
		}
		clear(cs[len(kept):])
		t.nIdle -= len(cs) - len(kept)
		if len(kept) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = kept
		}
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// h1UpConn is one upstream connection and the state of its exchange in
// progress, if any.
type h1UpConn struct {
	t       *h1Transport
	addr    string
	nc      net.Conn
	idleAt  time.Time
	reused  bool // served an exchange before this one
	raw     syscall.RawConn
	peekFn  func(fd uintptr) bool
	peeked  bool // the last peek found the connection open
	abortFn func()

	// The exchange in progress. br is used by the caller, bw by the
	// writer (the caller, or the body's goroutine).
	br      *bufio.Reader
	bw      *bufio.Writer
	limited bool  // reading the response head: left bounds it
	left    int64 // bytes the response head may still take
	nread   int64 // bytes read in this exchange
	written atomic.Int64
	stop    func() bool // stops the context's AfterFunc
	closeAt bool        // the connection ends with this exchange (Connection: close)
	halves  atomic.Int32
	broken  atomic.Bool
	werr    atomic.Pointer[error] // the body writer's error
}

// Read reads from the connection for br, within the head's limit.
func (c *h1UpConn) Read(p []byte) (int, error) {
	if c.limited {
		if c.left <= 0 {
			return 0, errHeadTooLarge
		}
		if int64(len(p)) > c.left {
			p = p[:c.left]
		}
	}
	n, err := c.nc.Read(p)
	c.nread += int64(n)
	if c.limited {
		c.left -= int64(n)
	}
	return n, err
}

// Write writes to the connection for bw.
func (c *h1UpConn) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	c.written.Add(int64(n))
	return n, err
}

var errHeadTooLarge = errors.New("response head too large")

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// abort ends the exchange from the outside: the request's context is done.
func (c *h1UpConn) abort() {
	c.broken.Store(true)
	c.nc.Close()
}

// roundTrip runs one exchange on c. On error c is closed and forgotten.
func (c *h1UpConn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c.nread, c.limited, c.left = 0, true, c.t.maxHeaderBytes
	c.written.Store(0)
	c.broken.Store(false)
	c.werr.Store(nil)
	c.closeAt = req.Close
	c.stop = nil
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, c.abortFn)
	}
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.bw = writers.Get().(*bufio.Writer)
	c.bw.Reset(c)
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody {
		c.halves.Store(2)
		go c.writeRequest(req)
	} else {
		c.halves.Store(1)
		err := req.Write(c.bw)
		if err == nil {
			err = c.bw.Flush()
		}
		c.bw.Reset(nil)
		writers.Put(c.bw)
		c.bw = nil
		if err != nil {
			c.broken.Store(true)
			if c.reused && c.written.Load() == 0 && ctx.Err() == nil {
				// Nothing went out: the server had closed it.
				err = fmt.Errorf("%w: %w", errServerClosed, err)
			}
			return nil, c.fail(ctx, err)
		}
	}
	resp, err := c.readResponse(req)
	if err != nil {
		c.broken.Store(true)
		c.nc.Close() // unblock the body's writer
		switch w := c.werr.Load(); {
		case errors.Is(err, errHeadTooLarge):
			err = fmt.Errorf("upstream response head exceeds %d bytes", c.t.maxHeaderBytes)
		case c.reused && c.nread == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
			err = fmt.Errorf("%w: %w", errServerClosed, err)
		case w != nil:
			err = *w
		}
		return nil, c.fail(ctx, err)
	}
	c.limited = false
	if resp.Close {
		c.closeAt = true
	}
	if resp.Body == http.NoBody {
		c.release()
		return resp, nil
	}
	resp.Body = &h1UpBody{c: c, rc: resp.Body, ctx: ctx}
	return resp, nil
}

// fail ends the exchange on err, naming the request's context's cause
// when it ended it.
func (c *h1UpConn) fail(ctx context.Context, err error) error {
	c.release()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// writeRequest writes a request that has a body, concurrently with the
// response being read.
func (c *h1UpConn) writeRequest(req *http.Request) {
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	c.bw.Reset(nil)
	writers.Put(c.bw)
	c.bw = nil
	if err != nil {
		err = fmt.Errorf("writing the request to the upstream: %w", err)
		c.werr.Store(&err)
		c.abort() // the upstream waits for the rest: give up on it
	}
	c.release()
}

// readResponse reads the response head, passing informational (1xx)
// responses to the request's trace (ReverseProxy forwards them). They
// share the head's byte limit with the final response.
func (c *h1UpConn) readResponse(req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			return nil, errors.New("upstream switched protocols without an upgrade request")
		}
		if code >= 200 || code < 100 {
			return resp, nil
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// release ends one half of the exchange (the response, or the request's
// body being written); the last one gives the connection back to the pool
// when the exchange ended cleanly, and closes it otherwise.
func (c *h1UpConn) release() {
	if c.halves.Add(-1) != 0 {
		return
	}
	if c.stop != nil && !c.stop() {
		c.broken.Store(true) // the context's AfterFunc closes it
	}
	c.stop = nil
	clean := !c.broken.Load() && !c.closeAt && c.br.Buffered() == 0
	c.br.Reset(nil)
	readers.Put(c.br)
	c.br = nil
	if !clean {
		c.nc.Close()
		return
	}
	c.t.put(c)
}

// h1UpBody is a response body: read to its end, it gives the connection
// back; closed before, or failed, it closes it.
type h1UpBody struct {
	c     *h1UpConn
	rc    io.ReadCloser
	ctx   context.Context
	state atomic.Int32 // 0 reading, 1 read to the end, 2 closed or failed
}

func (b *h1UpBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case 1:
		return 0, io.EOF
	case 2:
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if b.state.CompareAndSwap(0, 1) {
			b.c.release()
		}
	default:
		if b.state.CompareAndSwap(0, 2) {
			b.c.broken.Store(true)
			b.c.release()
		}
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
	}
	return n, err
}

// Close ends the body; before its end, the connection goes with it.
func (b *h1UpBody) Close() error {
	if b.state.CompareAndSwap(0, 2) {
		b.c.broken.Store(true)
		b.c.nc.Close() // a Read in progress ends
		b.c.release()
	}
	return nil
}

var errBodyClosed = errors.New("read on a closed response body")

// alive reports whether an idle connection is still open, and the server
// sent nothing unasked on it. net/http's read loop notices a server
// closing an idle connection at once; without one, a peek at the socket
// does, before the connection is used again.
func (c *h1UpConn) alive() bool {
	if c.raw == nil {
		nc := c.nc
		if uc, ok := nc.(*upstreamConn); ok {
			nc = uc.Conn
		}
		sc, ok := nc.(syscall.Conn)
		if !ok {
			return true
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		c.raw = raw
		c.peekFn = func(fd uintptr) bool {
			c.peeked = peekOpen(fd)
			return true
		}
	}
	if err := c.raw.Read(c.peekFn); err != nil {
		return false
	}
	return c.peeked
}
