// Package proxy is Skiff's data plane: the sidecar that sits next to every
// workload. It has an outbound listener (the application's requests, sent
// explicitly or redirected by iptables), an inbound listener (requests from
// peers, forwarded to the application), protocol detection on both,
// latency-aware balancing, bounded resources and an admin server.
//
// Inbound and outbound share one listener type: they differ only in how a
// request finds its destination (outboundTransport, inboundTransport).
package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/detect"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
	"github.com/skiff-mesh/skiff/mesh/proxy/origdst"
	"github.com/skiff-mesh/skiff/mesh/proxy/telemetry"
)

const (
	dirInbound  = "inbound"
	dirOutbound = "outbound"
)

// Values of the tls label: mutual TLS, or why not.
const (
	tlsTrue       = "true"
	tlsDisabled   = "disabled"    // this proxy has no identity
	tlsNotMeshed  = "not_meshed"  // the peer is not a Skiff proxy
	tlsNoIdentity = "no_identity" // discovery gave no identity to check
)

// Proxy is a running sidecar. Build it with New, serve with Run.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	errLog  *log.Logger
	metrics *telemetry.Registry
	buffers *bufferPool
	dialer  net.Dialer

	// Connection pools per direction, so upstream connections carry the
	// right direction label; tlsOut carries mutual TLS to meshed peers.
	out, in, tlsOut pools
	serverTLS       *tls.Config     // inbound mTLS, with ALPN; nil without identity
	peers           *peerIdentities // what meshed endpoints must prove; nil without identity
	mtlsFailures    *atomic.Uint64  // inbound handshakes that failed
	plaintextDenied *atomic.Uint64  // inbound connections refused in strict mode

	destinations *destinations
	listeners    []*listener
	admin        net.Listener
	ready        atomic.Bool

	connectRetries *atomic.Uint64
	failovers      *atomic.Uint64
	routeCounters  sync.Map // route name -> *routeCounters
	overload       *overload
	// active counts requests being handled (ServeHTTP), at most
	// maxActive before the busiest connections are closed.
	active         atomic.Int64
	maxActive      int64
	floodClosed    *atomic.Uint64
	identityErrors map[string]*atomic.Uint64 // by identityErrorLabel

	tcpMu    sync.Mutex
	tcpConns map[*conn]struct{}
}

// listener is one accepting socket (inbound, outbound, or a TCP route).
type listener struct {
	p        *Proxy
	dir      string
	ln       net.Listener
	port     uint16
	route    string // authority of a TCP route listener; empty otherwise
	conns    limit
	table    connTable
	evicted  *atomic.Uint64
	inflight limit
	// clientShares applies the per-client shares of the in-flight and
	// connection caps: inbound, where clients are many; outbound the one
	// client is the application. Per-connection shares apply to both.
	clientShares   bool
	clients        clients
	byAddr         addrConns
	rejected       *atomic.Uint64
	rejectedConn   *atomic.Uint64
	rejectedClient *atomic.Uint64
	resetClosed    *atomic.Uint64 // connections closed for rapid reset
	planted        atomic.Uint64  // requests seen by the fail-some defect (test builds)
	// Detected connections go to the server of their protocol. One server
	// for both would peek 24 bytes for the HTTP/2 preface and so stall on
	// any shorter HTTP/1 request.
	h1, h2 server
	rp     *httputil.ReverseProxy
}

// New validates cfg and binds every listener, so that addresses chosen by
// the OS (port 0) are known before Run.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	plantDefects(&cfg)
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Logger,
		errLog:   slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		metrics:  telemetry.New(),
		buffers:  &bufferPool{},
		dialer:   net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second, Control: markControl(cfg.SocketMark)},
		tcpConns: make(map[*conn]struct{}),
	}
	p.connectRetries = p.metrics.Counter("outbound_connect_retries_total", "")
	p.failovers = p.metrics.Counter("outbound_failover_total", "")
	p.mtlsFailures = p.metrics.Counter("inbound_tls_handshake_failures_total", "")
	p.plaintextDenied = p.metrics.Counter("inbound_tcp_authz_deny_total", `reason="plaintext"`)
	if cfg.Identity != nil {
		p.peers = newPeerIdentities(p.log)
		p.identityErrors = make(map[string]*atomic.Uint64)
		for _, reason := range []string{"invalid", "conflict", "unknown"} {
			p.identityErrors[reason] = p.metrics.Counter("outbound_identity_errors_total", `reason="`+reason+`"`)
		}
	}
	p.floodClosed = p.metrics.Counter("tcp_flood_closed_total", "")
	p.overload = newOverload(cfg.MemoryBudget)
	p.overload.shedPeriods = p.metrics.Counter("memory_shedding_periods_total", "")
	p.overload.closed = p.metrics.Counter("memory_shed_connections_total", "")
	p.metrics.Gauge("memory_runtime_in_use_bytes", func() float64 { return float64(p.overload.inUse.Load()) })
	p.metrics.Gauge("memory_budget_bytes", func() float64 { return float64(cfg.MemoryBudget) })
	if cfg.Routes != nil {
		p.metrics.Gauge("outbound_route_config_version", func() float64 { return float64(cfg.Routes.Version()) })
		p.metrics.Gauge("outbound_route_config_rejected", func() float64 { return float64(cfg.Routes.Rejected()) })
	}
	evicted := p.metrics.Counter("outbound_authorities_evicted_total", "")
	p.destinations = newDestinations(cfg.Endpoints, cfg.Balance, p.peers, cfg.AuthorityIdleTimeout, cfg.MaxAuthorities, p.log, evicted)
	p.destinations.policy = cfg.Policy
	if cfg.Routes != nil {
		p.destinations.seed = cfg.Routes.SeedValue()
	}
	if st, ok := cfg.Policy.(interface {
		Updates() uint64
		Rejected() uint64
	}); ok {
		p.metrics.Gauge("outbound_policy_updates", func() float64 { return float64(st.Updates()) })
		p.metrics.Gauge("outbound_policy_rejected", func() float64 { return float64(st.Rejected()) })
	}
	p.metrics.Gauge("outbound_authorities", func() float64 { return float64(p.destinations.len()) })
	p.metrics.GaugeFamily("outbound_http_balancer_endpoints", func(emit func(string, float64)) { p.endpointStates(false, emit) })
	p.metrics.GaugeFamily("outbound_http_endpoint_state", func(emit func(string, float64)) { p.endpointStates(true, emit) })
	p.out = pools{h1: p.newTransport(dirOutbound, false), h2: p.newTransport(dirOutbound, true)}
	p.in = pools{h1: p.newTransport(dirInbound, false), h2: p.newTransport(dirInbound, true)}
	if cfg.Identity != nil {
		p.tlsOut = pools{h1: p.newTLSTransport("http/1.1"), h2: p.newTLSTransport("h2")}
		p.serverTLS = cfg.Identity.ServerTLSConfig()
		p.serverTLS.NextProtos = []string{"h2", "http/1.1"}
	}

	bind := func(addr, dir, route string) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", dir, err)
		}
		l := &listener{p: p, dir: dir, ln: ln, route: route}
		l.port = uint16(ln.Addr().(*net.TCPAddr).Port)
		l.conns.max = int64(cfg.MaxConnections)
		l.inflight.max = int64(cfg.MaxInFlight)
		l.clientShares = dir == dirInbound
		l.rejected = p.metrics.Counter("request_rejected_total", `direction="`+dir+`",reason="in_flight_limit"`)
		l.rejectedConn = p.metrics.Counter("request_rejected_total", `direction="`+dir+`",reason="connection_share"`)
		l.rejectedClient = p.metrics.Counter("request_rejected_total", `direction="`+dir+`",reason="client_share"`)
		l.evicted = p.metrics.Counter("tcp_evicted_total", `direction="`+dir+`",reason="connection_limit"`)
		l.resetClosed = p.metrics.Counter("tcp_evicted_total", `direction="`+dir+`",reason="rapid_reset"`)
		var rt http.RoundTripper = outboundTransport{l}
		if dir == dirInbound {
			rt = inboundTransport{l}
		}
		l.rp = l.newReverseProxy(rt)
		l.h1 = server{p.newServer(l, false), newQueueListener(ln.Addr())}
		l.h2 = server{p.newServer(l, true), newQueueListener(ln.Addr())}
		p.listeners = append(p.listeners, l)
		return nil
	}
	var err error
	if cfg.OutboundAddr != "-" {
		err = bind(cfg.OutboundAddr, dirOutbound, "")
	}
	if err == nil && cfg.InboundAddr != "-" {
		err = bind(cfg.InboundAddr, dirInbound, "")
	}
	for _, r := range cfg.TCPRoutes {
		if err == nil {
			err = bind(r.Addr, dirOutbound, r.Authority)
		}
	}
	if err == nil && cfg.AdminAddr != "-" {
		p.admin, err = net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			err = fmt.Errorf("admin listener: %w", err)
		}
	}
	if err != nil {
		p.closeListeners()
		return nil, err
	}
	p.maxActive = int64(activeFactor * cfg.MaxInFlight * max(len(p.listeners), 1))
	p.metrics.Gauge("proxy_in_flight_requests", func() float64 {
		var n int64
		for _, l := range p.listeners {
			n += l.inflight.n.Load()
		}
		return float64(n)
	})
	return p, nil
}

// Addr returns the bound address of the "inbound", "outbound" or "admin"
// listener, or nil.
func (p *Proxy) Addr(name string) net.Addr {
	if name == "admin" {
		if p.admin == nil {
			return nil
		}
		return p.admin.Addr()
	}
	for _, l := range p.listeners {
		if l.dir == name && l.route == "" {
			return l.ln.Addr()
		}
	}
	return nil
}

// Metrics returns the proxy's registry.
func (p *Proxy) Metrics() *telemetry.Registry { return p.metrics }

func (p *Proxy) closeListeners() {
	for _, l := range p.listeners {
		l.ln.Close()
	}
	if p.admin != nil {
		p.admin.Close()
	}
}

// maxIdlePerHost bounds the idle upstream connections kept per endpoint.
// Each HTTP/1.1 connection costs two goroutines and 8 KiB of buffers; with
// 256 the pool grew to the peak concurrency of 32 client connections (31
// upstream, 0.7 MB) and kept it, for nothing: at the rates a sidecar sees,
// a few warm connections serve the load, and a burst beyond them opens
// connections that close after use (to a local app, about 0.1 ms each).
const maxIdlePerHost = 4

// pools are the upstream connection pools of one direction.
type pools struct{ h1, h2 *http.Transport }

func (ps pools) closeIdle() {
	if ps.h1 == nil {
		return
	}
	ps.h1.CloseIdleConnections()
	ps.h2.CloseIdleConnections()
}

// newTLSTransport is a pool of mutual-TLS connections to meshed peers,
// negotiating alpn: "h2" multiplexes everything but upgrades, which go
// as "http/1.1". Requests must use the https scheme to reach DialTLSContext.
func (p *Proxy) newTLSTransport(alpn string) *http.Transport {
	t := p.newTransport(dirOutbound, alpn == "h2")
	t.DialContext = nil
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return p.dialTLS(ctx, network, addr, alpn)
	}
	t.Protocols = new(http.Protocols)
	if alpn == "h2" {
		t.Protocols.SetHTTP2(true)
	} else {
		t.Protocols.SetHTTP1(true)
	}
	return t
}

// dialTLS connects to a meshed peer and completes mutual TLS, checking the
// peer proves the identity discovery gave for its address. An endpoint
// whose identity cannot be used fails here, closed: it is never reached in
// plaintext instead. A failed handshake is a connectError: nothing was sent.
func (p *Proxy) dialTLS(ctx context.Context, network, addr, alpn string) (net.Conn, error) {
	id, err := p.peers.lookup(addr)
	if err != nil {
		p.identityErrors[identityErrorLabel(err)].Add(1)
		p.log.Debug("meshed endpoint not dialled: no usable identity", "addr", addr, "err", err)
		return nil, &connectError{addr: addr, err: err}
	}
	raw, err := p.dialLabelled(ctx, dirOutbound, network, addr, tlsTrue)
	if err != nil {
		return nil, err
	}
	cfg := p.cfg.Identity.ClientTLSConfig(id)
	if alpn != "" {
		cfg.NextProtos = []string{alpn}
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		p.log.Warn("mTLS handshake with a peer failed", "addr", addr, "expected", id.String(), "err", err)
		return nil, &connectError{addr: addr, err: fmt.Errorf("mTLS handshake: %w", err)}
	}
	return tc, nil
}

// mtlsTo reports whether an endpoint is reached over mutual TLS: every
// meshed endpoint discovery gives an identity for, usable or not (an
// unusable one fails in dialTLS).
func (p *Proxy) mtlsTo(ep *endpoint.Endpoint) bool {
	return p.cfg.Identity != nil && ep.Meshed && ep.Identity != "" && !plant.On(plant.MTLSOff)
}

// plantDefects applies the planted defect of a test build (internal/plant)
// to the configuration; in a release build it does nothing.
func plantDefects(cfg *Config) {
	switch {
	case plant.On(plant.EWMAOff):
		cfg.Balance.RoundRobin = true
	case plant.On(plant.FailoverOff):
		cfg.Failover = nil
	case plant.On(plant.MTLSOff):
		cfg.RequireMTLS = false
	}
}

// tlsLabel says whether traffic to ep is mutual TLS, or why not.
func (p *Proxy) tlsLabel(ep *endpoint.Endpoint) string {
	switch {
	case p.cfg.Identity == nil:
		return tlsDisabled
	case !ep.Meshed:
		return tlsNotMeshed
	case !p.mtlsTo(ep):
		return tlsNoIdentity
	default:
		return tlsTrue
	}
}

func (p *Proxy) newTransport(dir string, h2 bool) *http.Transport {
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return p.dial(ctx, dir, network, addr)
		},
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: DefaultMaxHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		Protocols:              new(http.Protocols),
	}
	if h2 {
		// One multiplexed connection per peer: concurrent first requests
		// wait for it instead of each dialling their own.
		t.MaxConnsPerHost = 1
		t.Protocols.SetUnencryptedHTTP2(true)
		t.HTTP2 = &http.HTTP2Config{
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
			PingTimeout:                   15 * time.Second,
			SendPingTimeout:               30 * time.Second,
		}
	} else {
		t.Protocols.SetHTTP1(true)
	}
	return t
}

// h2ServerConfig bounds what one HTTP/2 client connection may make the
// proxy hold. net/http runs at most MaxConcurrentStreams handlers per
// connection and queues four times as many streams before it ends the
// connection (its rapid-reset defence), each stream holding a 4 KiB
// buffer from the start: at 128 streams (nginx's default) a connection
// costs up to about 4 MB. The receive windows bound the request bodies
// buffered for slow upstreams; inbound, where any pod may connect, they
// are smaller.
func h2ServerConfig(dir string) *http.HTTP2Config {
	if dir == dirInbound {
		return &http.HTTP2Config{
			MaxConcurrentStreams:          maxStreams,
			MaxReceiveBufferPerConnection: 1 << 20,
			MaxReceiveBufferPerStream:     256 << 10,
		}
	}
	return &http.HTTP2Config{
		MaxConcurrentStreams:          maxStreams,
		MaxReceiveBufferPerConnection: 4 << 20,
		MaxReceiveBufferPerStream:     1 << 20,
	}
}

// maxStreams is the HTTP/2 streams a client may have open on one
// connection.
const maxStreams = 128

// idleTimeout closes client connections without a request for this long.
const idleTimeout = 5 * time.Minute

// closeIdle closes the HTTP/2 client connections that have had no request
// in flight for idleTimeout (HTTP/1 ones time out in net/http), every
// quarter of it, until ctx is done.
func (p *Proxy) closeIdle(ctx context.Context) {
	t := time.NewTicker(idleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cutoff := now.Add(-idleTimeout).UnixNano()
			for _, l := range p.listeners {
				for _, c := range l.table.idle(cutoff) {
					c.Close()
				}
			}
		}
	}
}

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

// dial opens an upstream connection, counted as peer="dst". Failures are
// connectErrors: nothing was sent, so the caller may try elsewhere.
func (p *Proxy) dial(ctx context.Context, dir, network, addr string) (net.Conn, error) {
	return p.dialLabelled(ctx, dir, network, addr, tlsDisabled)
}

func (p *Proxy) dialLabelled(ctx context.Context, dir, network, addr, tlsLabel string) (net.Conn, error) {
	c, err := p.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &connectError{addr: addr, err: err}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	m := p.metrics.TCP(telemetry.TCPLabels{Direction: dir, Peer: "dst", Authority: addr, TLS: tlsLabel})
	m.Open()
	return &upstreamConn{Conn: c, metrics: m}, nil
}

// Ready reports whether the proxy is serving and not draining.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// Run serves until ctx is done, then drains: readiness off, listeners
// closed, in-flight requests finished within DrainTimeout, remaining
// connections closed. It returns nil after a clean drain.
func (p *Proxy) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range p.listeners {
		g.Go(func() error { return l.acceptLoop() })
		for _, s := range []server{l.h1, l.h2} {
			g.Go(func() error {
				if err := s.srv.Serve(s.queue); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
					return fmt.Errorf("%s http server: %w", l.dir, err)
				}
				return nil
			})
		}
	}
	g.Go(func() error { p.destinations.expire(gctx); return nil })
	if p.cfg.ShedOnMemory {
		g.Go(func() error { p.overload.run(gctx, p); return nil })
	}
	g.Go(func() error { p.closeIdle(gctx); return nil })
	var adminSrv *http.Server
	if p.admin != nil {
		adminSrv = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: p.errLog}
		g.Go(func() error {
			if err := adminSrv.Serve(p.admin); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("admin server: %w", err)
			}
			return nil
		})
	}
	p.ready.Store(true)
	p.log.Info("proxy ready", append(p.addrAttrs(),
		"memory_budget_mib", p.cfg.MemoryBudget>>20, "max_connections", p.cfg.MaxConnections, "max_in_flight", p.cfg.MaxInFlight)...)

	<-gctx.Done()
	p.ready.Store(false)
	p.log.Info("draining", "deadline", p.cfg.DrainTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	for _, l := range p.listeners {
		l.ln.Close()
	}
	var wg sync.WaitGroup
	for _, l := range p.listeners {
		for _, s := range []server{l.h1, l.h2} {
			wg.Go(func() {
				if err := s.srv.Shutdown(drainCtx); err != nil {
					p.log.Warn("drain deadline passed; closing connections", "direction", l.dir)
					s.srv.Close()
				}
			})
		}
	}
	wg.Go(func() { p.drainTCP(drainCtx) })
	wg.Wait()
	p.out.closeIdle()
	p.in.closeIdle()
	p.tlsOut.closeIdle()
	p.destinations.close()
	if adminSrv != nil {
		adminSrv.Close()
	}
	err := g.Wait()
	if ctx.Err() != nil && err == nil {
		p.log.Info("drained")
	}
	return err
}

func (p *Proxy) addrAttrs() []any {
	var a []any
	for _, l := range p.listeners {
		name := l.dir
		if l.route != "" {
			name = "tcp-route:" + l.route
		}
		a = append(a, name, l.ln.Addr().String())
	}
	if p.admin != nil {
		a = append(a, "admin", p.admin.Addr().String())
	}
	return a
}

// drainTCP waits for opaque connections to end, then closes the rest.
func (p *Proxy) drainTCP(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		p.tcpMu.Lock()
		n := len(p.tcpConns)
		if n == 0 || ctx.Err() != nil {
			for c := range p.tcpConns {
				c.Close()
			}
			p.tcpMu.Unlock()
			return
		}
		p.tcpMu.Unlock()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
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

// opaqueTLSWait bounds the wait for a ClientHello on an opaque port.
const opaqueTLSWait = 300 * time.Millisecond

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

// serveTCP forwards an opaque connection; client is c itself, or the
// mutual-TLS stream over it.
func (l *listener) serveTCP(c *conn, client net.Conn) {
	p := l.p
	p.tcpMu.Lock()
	p.tcpConns[c] = struct{}{}
	p.tcpMu.Unlock()
	defer func() {
		p.tcpMu.Lock()
		delete(p.tcpConns, c)
		p.tcpMu.Unlock()
		c.Close()
	}()
	up, authority, err := l.dialOpaque(c)
	if err != nil {
		c.failed.Store(true)
		p.log.Debug("opaque connection not forwarded", "direction", l.dir, "err", err)
		p.metrics.Counter(l.dir+"_tcp_errors_total", `error="`+tcpErrorLabel(err)+`"`).Add(1)
		return
	}
	label := tlsDisabled
	if _, ok := up.(*tls.Conn); ok {
		label = tlsTrue
	}
	m := p.metrics.TCP(telemetry.TCPLabels{Direction: l.dir, Peer: "dst", Authority: authority, TLS: label})
	m.Open()
	var upRead, upWritten int64
	var upFailed bool
	defer func() { m.Close(uint64(upRead), uint64(upWritten), upFailed) }()

	// Bytes peeked during detection go first (a TLS client already
	// consumed them in the handshake).
	if br := c.br; client == net.Conn(c) && br != nil && br.Buffered() > 0 {
		b, _ := br.Peek(br.Buffered())
		n, err := up.Write(b)
		upWritten += int64(n)
		if err != nil {
			up.Close()
			return
		}
		br.Discard(n)
	}
	// Raw sockets on both sides let the kernel splice without a buffer;
	// a TLS stream is copied through one.
	var src io.Reader = c.TCPConn
	var dst io.Writer = c.TCPConn
	if client != net.Conn(c) {
		src, dst = client, client
	}
	c.br = nil
	done := make(chan int64, 1)
	go func() {
		n, err := io.Copy(up, src)
		if client == net.Conn(c) {
			c.read.Add(uint64(n))
		}
		if err != nil {
			c.failed.Store(true)
		}
		closeWrite(up)
		done <- n
	}()
	n, err := io.Copy(dst, up)
	if client == net.Conn(c) {
		c.written.Add(uint64(n))
	}
	upRead = n
	if err != nil {
		upFailed = true
		// The upstream broke: unblock the other direction.
		c.TCPConn.SetLinger(0)
		c.TCPConn.Close()
	} else {
		closeWrite(client)
	}
	upWritten += <-done
	up.Close()
}

// closeWrite half-closes c: a TLS stream with close_notify, a socket with
// shutdown(SHUT_WR).
func closeWrite(c net.Conn) {
	switch v := c.(type) {
	case *tls.Conn:
		v.CloseWrite()
	case *tlsConn:
		v.tc.CloseWrite()
	case *conn:
		v.TCPConn.CloseWrite()
	case interface{ CloseWrite() error }:
		v.CloseWrite()
	}
}

func tcpErrorLabel(err error) string {
	switch {
	case errors.Is(err, errNoTarget):
		return "no_target"
	case errors.Is(err, errUnknownAuthority):
		return "unknown_authority"
	case errors.Is(err, errNoEndpoints):
		return "no_endpoints"
	case isConnectError(err):
		return "connect"
	default:
		return "other"
	}
}

// dialOpaque finds and connects the upstream of an opaque connection.
func (l *listener) dialOpaque(c *conn) (net.Conn, string, error) {
	p := l.p
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout*maxConnectAttempts+time.Second)
	defer cancel()
	dialRaw := func(addr string) (*net.TCPConn, error) {
		up, err := p.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, &connectError{addr: addr, err: err}
		}
		tc := up.(*net.TCPConn)
		tc.SetNoDelay(true)
		return tc, nil
	}
	if l.dir == dirInbound {
		target := p.cfg.InboundForward
		if c.redirect {
			target = c.origDst.String()
		}
		if target == "" {
			return nil, "", errNoTarget
		}
		up, err := dialRaw(target)
		if err != nil {
			return nil, target, err
		}
		return up, target, nil
	}
	authority := l.route
	if authority == "" && c.redirect {
		authority = c.origDst.String()
	}
	if authority == "" {
		return nil, "", errNoTarget
	}
	d, err := p.destinations.get(ctx, authority)
	if err != nil {
		return nil, authority, err
	}
	if d == nil {
		if c.redirect && l.route == "" {
			up, err := dialRaw(authority)
			if err != nil {
				return nil, authority, err
			}
			return up, authority, nil
		}
		return nil, authority, errUnknownAuthority
	}
	dialAny := func(d *destination) (net.Conn, error) {
		var triedBuf [maxConnectAttempts]*balance.Node
		tried := triedBuf[:0]
		var lastErr error = errNoEndpoints
		for len(tried) < maxConnectAttempts {
			n, ok := d.bal.Pick(tried)
			if !ok {
				break
			}
			start := n.Start()
			ep := n.Endpoint()
			var up net.Conn
			var err error
			if p.mtlsTo(ep) {
				up, err = p.dialTLS(ctx, "tcp", ep.Addr, "")
			} else {
				up, err = dialRaw(ep.Addr)
			}
			n.Finish(start, err != nil)
			if err == nil {
				return up, nil
			}
			lastErr = err
			tried = append(tried, n)
			p.connectRetries.Add(1)
		}
		return nil, lastErr
	}
	up, err := dialAny(d)
	for _, fb := range p.cfg.Failover[authority] {
		if err == nil {
			break
		}
		if fd, ferr := p.destinations.get(ctx, fb); ferr == nil && fd != nil {
			p.failovers.Add(1)
			up, err = dialAny(fd)
		}
	}
	return up, authority, err
}

func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "live\n")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		p.metrics.WriteTo(w)
	})
	mux.HandleFunc("GET /debug/balancer", p.writeBalancers)
	if p.cfg.Pprof {
		registerPprof(mux)
	}
	return mux
}
