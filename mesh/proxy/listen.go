package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/detect"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
	"github.com/skiff-mesh/skiff/mesh/proxy/origdst"
	"github.com/skiff-mesh/skiff/mesh/proxy/telemetry"
)

// This file holds the client side of a listener: accepting connections
// within their bounds, detecting each one's protocol and handing it to the
// HTTP/1.1, HTTP/2, TLS or opaque-TCP path. The HTTP request path itself
// is http.go, read top to bottom.

// server is an http.Server fed with detected connections.
type server struct {
	srv   *http.Server
	queue *queueListener
}

func (p *Proxy) newServer(l *listener, h2 bool) *http.Server {
	s := &http.Server{
		Handler:           l,
		ReadHeaderTimeout: p.cfg.HeaderTimeout,
		IdleTimeout:       idleTimeout,
		// The edge enforces maxHeaderListSize on every request
		// (checkRequest); the server's own limit leaves room for what
		// a peer proxy adds on the hop, so a request one proxy
		// accepted is never refused by the next.
		MaxHeaderBytes: maxHeaderListSize + hopHeaderRoom,
		// OPTIONS * goes to the application, like every request, and
		// keeps the scanner's count of requests right.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     p.errLog,
		Protocols:                    new(http.Protocols),
		HTTP2:                        h2ServerConfig(l.dir),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, baseConn(c))
		},
	}
	if h2 {
		s.Protocols.SetUnencryptedHTTP2(true)
		// No idle timer in net/http's HTTP/2 server: closeIdle does
		// its work. The server arms a time.AfterFunc per connection,
		// and once stopped (the connection closed) the timer stays in
		// the runtime's timer heap until its deadline, holding the
		// connection and every stream it queued. Under a flood of
		// short connections (rapid reset) that kept five minutes of
		// closed connections alive: over 200 MB, measured.
		s.IdleTimeout = -1
	} else {
		s.Protocols.SetHTTP1(true)
	}
	return s
}

func (l *listener) acceptLoop() error {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.h1.queue.Close()
				l.h2.queue.Close()
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			l.p.log.Warn("accept failed", "direction", l.dir, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		tc := c.(*net.TCPConn)
		addr := tc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		counted, reason := l.admitConn(addr)
		if reason != "" {
			l.p.metrics.Counter("tcp_rejected_total", `direction="`+l.dir+`",reason="`+reason+`"`).Add(1)
			tc.SetLinger(0)
			tc.Close()
			continue
		}
		go l.serveConn(tc, addr, counted)
	}
}

// serveConn decides what a connection carries and hands it on.
func (l *listener) serveConn(tc *net.TCPConn, addr netip.Addr, counted bool) {
	p := l.p
	tc.SetNoDelay(true)
	c := &conn{TCPConn: tc}
	c.metrics = p.metrics.TCP(telemetry.TCPLabels{Direction: l.dir, Peer: "src", TLS: tlsDisabled})
	c.metrics.Open()
	c.idleSince.Store(time.Now().UnixNano())
	l.table.add(c)
	c.onClose = func() {
		l.table.remove(c)
		if s := c.client.Swap(nil); s != nil {
			l.clients.put(s)
		}
		if counted {
			l.byAddr.give(addr)
		}
		l.conns.release()
	}
	if p.cfg.Transparent {
		if ap, err := origdst.Get(tc); err == nil {
			local, _ := netip.ParseAddrPort(tc.LocalAddr().String())
			if ap != local {
				c.origDst, c.redirect = ap, true
			}
		}
	}
	// The port that says what the traffic is: the one the client meant.
	port := l.port
	if c.redirect {
		port = c.origDst.Port()
	} else if l.dir == dirInbound && p.cfg.InboundForward != "" {
		if _, ps, err := net.SplitHostPort(p.cfg.InboundForward); err == nil {
			if n, err := strconv.Atoi(ps); err == nil {
				port = uint16(n)
			}
		}
	}
	// With an identity, peers speak mutual TLS on the inbound side even
	// to opaque ports: look for a ClientHello first (briefly on opaque
	// ports, whose clients may wait for the server to speak).
	mtls := l.dir == dirInbound && p.cfg.Identity != nil
	k := kind{
		opaque:       l.route != "" || hasPort(p.cfg.OpaquePorts, port),
		declaredHTTP: hasPort(p.cfg.HTTPPorts, port) || hasPort(p.cfg.HTTPPorts, l.port),
	}
	if k.opaque && !mtls {
		l.serveTCP(c, c)
		return
	}
	timeout := k.detectTimeout(p.cfg)
	if k.opaque {
		timeout = opaqueTLSWait
	}
	c.br = bufio.NewReaderSize(rawReader{c}, 64)
	proto, reason, err := detect.Detect(c.br, tc, timeout)
	if mtls && proto == detect.TLS {
		l.serveTLS(c, k)
		return
	}
	if p.cfg.RequireMTLS && l.dir == dirInbound {
		p.plaintextDenied.Add(1)
		p.log.Debug("plaintext connection refused: mutual TLS is required", "remote", tc.RemoteAddr().String())
		c.Close()
		return
	}
	if k.opaque {
		l.serveTCP(c, c)
		return
	}
	l.dispatch(c, c, c.br, k, proto, reason, err)
}

// kind is what a connection's ports say about its traffic.
type kind struct {
	opaque       bool // forwarded as TCP without detection
	declaredHTTP bool // HTTP without the opaque fallback
}

func (k kind) detectTimeout(cfg Config) time.Duration {
	if k.declaredHTTP {
		// No opaque fallback: only HTTP/1 or HTTP/2 is left to tell apart.
		return cfg.HeaderTimeout
	}
	if plant.On(plant.DetectNoTimeout) {
		return 24 * time.Hour // as long as any client waits
	}
	return cfg.DetectTimeout
}

// dispatch hands a detected stream to the server of its protocol, or to
// TCP forwarding. client is c itself or the mutual-TLS stream over it; br
// holds the bytes detection peeked from client.
func (l *listener) dispatch(c *conn, client net.Conn, br *bufio.Reader, k kind, proto detect.Protocol, reason detect.Reason, err error) {
	p := l.p
	// A client that sent the start of an HTTP request and then stalled is
	// an HTTP client (slow, or probing): the HTTP server's header timeout
	// deals with it. Passing its bytes on as opaque TCP would let what it
	// sends later skip the HTTP layer, and with it the removal of
	// identity headers it may not send.
	if reason == detect.ReasonTimeout && br.Buffered() > 0 {
		proto = detect.HTTP1
	}
	switch {
	case proto == detect.HTTP2:
		p.metrics.Counter("protocol_detect_total", `direction="`+l.dir+`",protocol="`+proto.String()+`"`).Add(1)
		l.serveH2(c, client)
	case proto == detect.HTTP1 || k.declaredHTTP:
		p.metrics.Counter("protocol_detect_total", `direction="`+l.dir+`",protocol="`+detect.HTTP1.String()+`"`).Add(1)
		l.serveH1(c, client)
	case proto == detect.TLS:
		// An application's own TLS (mutual TLS from a peer is terminated
		// before dispatch): its bytes pass through untouched, as opaque
		// TCP, counted as TLS rather than as a fallback.
		p.metrics.Counter("protocol_detect_total", `direction="`+l.dir+`",protocol="`+proto.String()+`"`).Add(1)
		l.serveTCP(c, client)
	default:
		p.metrics.Counter("protocol_detect_opaque_total", `direction="`+l.dir+`",reason="`+string(reason)+`"`).Add(1)
		// A client that left (or failed) before sending anything has
		// nothing to forward.
		if (reason == detect.ReasonEOF || err != nil) && br.Buffered() == 0 {
			client.Close()
			return
		}
		l.serveTCP(c, client)
	}
}

// serveH1 hands client to the HTTP/1 server, scanned for what net/http
// accepts but the proxy does not (h1Scanner).
func (l *listener) serveH1(c *conn, client net.Conn) {
	c.h1 = new(h1Scanner)
	if parkSupported && client == net.Conn(c) {
		// Plaintext: when idle, the socket can be watched without
		// net/http's goroutine and buffers (parker).
		c.parkIn.Store(l.h1.queue)
	}
	l.joinClient(c)
	l.h1.queue.push(&h1Conn{Conn: client, scan: c.h1})
}

// serveH2 hands client to the HTTP/2 server.
func (l *listener) serveH2(c *conn, client net.Conn) {
	c.h2.Store(true)
	l.joinClient(c)
	l.h2.queue.push(&h2Conn{Conn: client, base: c, closed: l.resetClosed})
}

// joinClient counts c's requests in its client's share, once the client
// is known (after the handshake, for mutual TLS).
func (l *listener) joinClient(c *conn) {
	if !l.clientShares {
		return
	}
	s := l.clients.get(clientKey(c))
	c.client.Store(s)
	if c.closed.Load() && c.client.CompareAndSwap(s, nil) {
		l.clients.put(s) // closed meanwhile (evicted): its close missed s
	}
}

// serveTLS terminates mutual TLS from a peer, then serves what it carries:
// the protocol its ALPN names; without ALPN, what detection finds in the
// decrypted stream, exactly as for plaintext. (Taking a stream without
// ALPN for opaque bytes let a client with a valid certificate send HTTP
// past the HTTP layer: uncounted, and with identity headers it wrote
// itself reaching the application.)
func (l *listener) serveTLS(c *conn, k kind) {
	p := l.p
	tc := tls.Server(c, p.serverTLS)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DetectTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.mtlsFailures.Add(1)
		p.log.Debug("inbound mTLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.failed.Store(true)
		c.Close()
		return
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) > 0 {
		if id, err := spiffe.FromCertificate(cs.PeerCertificates[0]); err == nil {
			c.peerID = id.String()
		}
	}
	c.tls = true
	w := &tlsConn{Conn: tc, tc: tc, base: c}
	switch {
	case cs.NegotiatedProtocol == "h2":
		l.serveH2(c, w)
	case cs.NegotiatedProtocol == "http/1.1":
		l.serveH1(c, w)
	case k.opaque:
		l.serveTCP(c, w)
	default:
		w.br = bufio.NewReaderSize(tlsReader{w}, 64)
		proto, reason, err := detect.Detect(w.br, tc, k.detectTimeout(p.cfg))
		l.dispatch(c, w, w.br, k, proto, reason, err)
	}
}
