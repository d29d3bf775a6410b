package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultKeepalive is how long a connection may go without receiving a
// frame before the client pings the server, unless [ConnConfig.Keepalive]
// says otherwise. It equals grpc-go's default keepalive enforcement
// (MinTime 5 minutes): pinging more often gets a connection without
// traffic closed by a stock grpc-go server with "too_many_pings".
const DefaultKeepalive = 5 * time.Minute

// ConnConfig configures a [Conn]. The zero value is plaintext HTTP/2
// (h2c, prior knowledge) with the defaults stated on each field.
type ConnConfig struct {
	// TLS, when non-nil, makes the connection HTTP/2 over TLS with this
	// configuration (NextProtos is set to h2). Nil means h2c.
	TLS *tls.Config
	// MaxMessageSize bounds each received message in bytes. Zero means
	// [DefaultMaxMessageSize].
	MaxMessageSize int
	// Keepalive is how long the connection may receive nothing before the
	// client pings the server; without an answer within PingTimeout the
	// connection is closed and its calls fail with Unavailable. Zero means
	// [DefaultKeepalive]; negative disables pings.
	Keepalive time.Duration
	// PingTimeout is how long a ping may go unanswered. Zero means 15 s.
	PingTimeout time.Duration
	// DialTimeout bounds connection establishment. Zero means 5 s.
	DialTimeout time.Duration
}

// Conn is a minimal gRPC client of one server address over the standard
// library's HTTP/2: unary calls ([Conn.Invoke]) and server-streaming
// calls ([Conn.NewStream]), uncompressed, with messages as bytes. Calls
// share HTTP/2 connections, opened on first use and again after a
// failure. A Conn is safe for concurrent use; create it with [NewConn].
//
// While no connection is known to be up (at first, and after a call or a
// stream failed on the transport), one call at a time opens it and the
// others wait for it: the standard library's transport would otherwise
// dial, and handshake, once per call made meanwhile, so a proxy starting
// with hundreds of authorities, or all proxies reconnecting after a
// controller restart, would each make as many TLS handshakes, all but
// one thrown away. If the opening call fails on the transport, the calls
// that waited fail with its error (and retry with their own backoff).
type Conn struct {
	base string // scheme://host:port
	max  int
	tr   *http.Transport
	ua   string
	gate dialGate
}

// dialGate lets one call at a time through while no connection is up.
type dialGate struct {
	mu      sync.Mutex
	up      bool          // a call got a connection: one is open
	pending chan struct{} // closed when the call opening the connection has one, or failed
	err     error         // its transport error, for the calls that waited
}

// roundTrip sends req through the gate (see [Conn]). The opening call
// lets the others go as soon as it has a connection (httptrace's GotConn),
// not when its response arrives: a watch's first response may take long.
func (c *Conn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	g := &c.gate
	for {
		g.mu.Lock()
		if g.up {
			g.mu.Unlock()
			resp, err := c.tr.RoundTrip(req)
			if err != nil && ctx.Err() == nil {
				c.down()
			}
			return resp, err
		}
		if wait := g.pending; wait != nil {
			g.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			g.mu.Lock()
			up, err := g.up, g.err
			g.mu.Unlock()
			if !up && err != nil {
				return nil, err
			}
			continue // up; or the opener gave up for a reason of its own: try again
		}
		done := make(chan struct{})
		g.pending = done
		g.mu.Unlock()
		var once sync.Once
		opened := func(up bool, err error) {
			once.Do(func() {
				g.mu.Lock()
				g.up, g.err, g.pending = up, err, nil
				g.mu.Unlock()
				close(done)
			})
		}
		trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { opened(true, nil) }}
		resp, err := c.tr.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		switch {
		case err == nil:
			opened(true, nil)
		case ctx.Err() != nil:
			// Its own cancellation says nothing of the connection: the
			// waiters try themselves.
			opened(false, nil)
			c.down()
		default:
			opened(false, err)
			c.down() // in case it had a connection, which then failed
		}
		return resp, err
	}
}

// down records that the connection failed: the next call opens one
// through the gate.
func (c *Conn) down() {
	c.gate.mu.Lock()
	c.gate.up = false
	c.gate.mu.Unlock()
}

// NewConn returns a client of the gRPC server at addr (host:port). It does
// not connect: the first call does.
func NewConn(addr string, cfg ConnConfig) *Conn {
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.Keepalive < 0 {
		cfg.Keepalive = 0
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:        d.DialContext,
		DisableCompression: true, // gRPC frames carry their own compression flag
		Protocols:          new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: cfg.Keepalive,
			PingTimeout:     cfg.PingTimeout,
		},
		IdleConnTimeout: 10 * time.Minute,
	}
	scheme := "http://"
	if cfg.TLS != nil {
		scheme = "https://"
		tc := cfg.TLS.Clone()
		tc.NextProtos = []string{"h2"}
		tr.TLSClientConfig = tc
		tr.TLSHandshakeTimeout = cfg.DialTimeout
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return &Conn{base: scheme + addr, max: cfg.MaxMessageSize, tr: tr, ua: "skiff-proxy"}
}

// Close closes the connections that no call is using. Calls in progress
// continue; cancel their contexts to end them, then Close again.
func (c *Conn) Close() { c.tr.CloseIdleConnections() }

// Invoke makes a unary call of method ("/package.Service/Method") with the
// encoded request req and returns the encoded response. A failure is a
// *[Status].
func (c *Conn) Invoke(ctx context.Context, method string, req []byte) ([]byte, error) {
	s, err := c.NewStream(ctx, method, req)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	msg, err := s.Recv()
	if errors.Is(err, io.EOF) {
		return nil, statusf(CodeInternal, "grpc: %s: server ended the call without a response message", method)
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		if err == nil {
			return nil, statusf(CodeInternal, "grpc: %s: server sent more than one response message to a unary call", method)
		}
		return nil, err
	}
	return msg, nil
}

// NewStream starts a server-streaming call of method with the encoded
// request req, and returns once the server has answered with its
// response headers (grpc-go sends them with its first message). A
// failure, including a status the server sent without messages, is a
// *[Status]. The stream ends when ctx is done or [Stream.Close] is
// called; callers must do one of the two.
func (c *Conn) NewStream(ctx context.Context, method string, req []byte) (*Stream, error) {
	body := appendFrame(make([]byte, 0, frameHeaderLen+len(req)), req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+method, bytes.NewReader(body))
	if err != nil {
		return nil, statusf(CodeInternal, "grpc: %s: %v", method, err)
	}
	hreq.ContentLength = int64(len(body))
	h := hreq.Header
	h["Content-Type"] = []string{"application/grpc"}
	h["Te"] = []string{"trailers"}
	h["User-Agent"] = []string{c.ua}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, &Status{Code: CodeDeadlineExceeded, Message: "grpc: " + method + ": deadline exceeded before the call", cause: context.DeadlineExceeded}
		}
		h["Grpc-Timeout"] = []string{encodeTimeout(left)}
	}
	resp, err := c.roundTrip(ctx, hreq)
	if err != nil {
		return nil, transportError(ctx, "grpc: "+method, err)
	}
	if st := responseStatus(resp); st != nil {
		resp.Body.Close()
		return nil, st
	}
	return &Stream{conn: c, ctx: ctx, method: method, resp: resp, fr: frameReader{r: resp.Body, max: c.max}}, nil
}

// responseStatus checks the response headers: an HTTP error or a
// non-gRPC content type becomes a Status as the gRPC spec maps them, and
// a trailers-only response with a non-zero grpc-status becomes that
// status. It returns nil for a response whose messages may follow.
func responseStatus(resp *http.Response) *Status {
	if resp.StatusCode != http.StatusOK {
		code := CodeUnknown
		switch resp.StatusCode {
		case http.StatusBadRequest:
			code = CodeInternal
		case http.StatusUnauthorized:
			code = CodeUnauthenticated
		case http.StatusForbidden:
			code = CodePermissionDenied
		case http.StatusNotFound:
			code = CodeUnimplemented
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			code = CodeUnavailable
		}
		return statusf(code, "grpc: unexpected HTTP status %q from the server", resp.Status)
	}
	if st := headerStatus(resp.Header); st != nil && st.Code != CodeOK {
		return st // trailers-only
	}
	ct := resp.Header.Get("Content-Type")
	if ct != "application/grpc" && !strings.HasPrefix(ct, "application/grpc+") && !strings.HasPrefix(ct, "application/grpc;") {
		return statusf(CodeUnknown, "grpc: server answered with content-type %q, not application/grpc (is it a gRPC server?)", ct)
	}
	return nil
}

// headerStatus reads grpc-status and grpc-message from h; nil when h has
// no grpc-status.
func headerStatus(h http.Header) *Status {
	v, ok := h["Grpc-Status"]
	if !ok || len(v) == 0 {
		return nil
	}
	code, err := strconv.Atoi(v[0])
	if err != nil || code < 0 {
		return statusf(CodeUnknown, "grpc: malformed grpc-status %q", v[0])
	}
	msg := h.Get("Grpc-Message")
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return &Status{Code: code, Message: msg}
}

// encodeTimeout formats d as a grpc-timeout value: at most eight digits
// and a unit, rounded up so the server never gets less time than the
// client allows.
func encodeTimeout(d time.Duration) string {
	const maxDigits = 1e8 - 1
	units := []struct {
		d time.Duration
		u string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}, {time.Hour, "H"}}
	for _, u := range units {
		v := d / u.d
		if d%u.d != 0 {
			v++
		}
		if v <= maxDigits {
			return strconv.FormatInt(int64(v), 10) + u.u
		}
	}
	return strconv.FormatInt(maxDigits, 10) + "H"
}

// Stream is the response side of a server-streaming call.
type Stream struct {
	conn   *Conn
	ctx    context.Context
	method string
	resp   *http.Response
	fr     frameReader
	err    error
}

// Recv returns the next encoded message. At the end of the call it
// returns io.EOF when the server's status is OK, or the status as a
// *[Status]; a broken connection or a malformed frame is a *[Status] too
// (Unavailable, Internal). After an error, Recv returns the same error.
func (s *Stream) Recv() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	msg, err := s.fr.next()
	if err == nil {
		return msg, nil
	}
	s.err = s.finish(err)
	s.resp.Body.Close()
	return nil, s.err
}

func (s *Stream) finish(err error) error {
	if st, ok := errors.AsType[*Status](err); ok {
		return st
	}
	if !errors.Is(err, io.EOF) {
		if s.ctx.Err() == nil {
			s.conn.down() // the connection broke: reconnect through the gate
		}
		return transportError(s.ctx, "grpc: "+s.method, err)
	}
	st := headerStatus(s.resp.Trailer)
	if st == nil {
		st = headerStatus(s.resp.Header) // trailers-only with OK
	}
	if st == nil {
		return statusf(CodeInternal, "grpc: %s: server ended the stream without a grpc-status", s.method)
	}
	if st.Code == CodeOK {
		return io.EOF
	}
	return st
}

// Close ends the call, resetting the stream if the server has not ended
// it. It is safe to call more than once and after Recv failed.
func (s *Stream) Close() {
	if s.err == nil {
		s.err = statusf(CodeCanceled, "grpc: %s: stream closed by the client", s.method)
	}
	s.resp.Body.Close()
}
