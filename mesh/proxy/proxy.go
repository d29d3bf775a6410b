// Package proxy is Skiff's data plane: the sidecar that sits next to every
// workload. It has an outbound listener (the application's requests, sent
// explicitly or redirected by iptables), an inbound listener (requests from
// peers, forwarded to the application), protocol detection on both,
// latency-aware balancing, bounded resources and an admin server.
//
// Inbound and outbound share one listener type: they differ only in how a
// request finds its destination (outboundTransport, inboundTransport).
//
// # Layout
//
// This package wires; each concept a request passes through is a package
// of its own, stdlib-only and testable alone: detect (what protocol a
// connection speaks), route (an authority's timeouts, retries, budget and
// breaker, from a file or the control plane), timeout, retry (policy,
// budget, backoff, body replay), breaker, balance (peak-EWMA over power of
// two choices), endpoint (discovery's view), control (the control plane's
// Destination, Identity and Policy APIs, without grpc-go), identity and
// telemetry. Here:
//
//   - proxy.go: the Proxy, New and Run;
//   - listen.go: accepting connections within their bounds and detecting
//     their protocol;
//   - http.go: the HTTP request path, top to bottom, and attempts.go its
//     timeouts and retries, ejection.go endpoint health;
//   - destinations.go: authorities to balancers, endpoints and routes;
//   - transport.go: upstream pools and dialers, plaintext and mTLS;
//   - tcp.go: opaque TCP; budget.go and overload.go: resource bounds;
//   - admin.go: the admin server.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skiff-mesh/skiff/internal/plant"
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
	p.out = p.newPools(dirOutbound)
	p.in = p.newPools(dirInbound)
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
// Each of net/http's HTTP/1.1 connections costs two goroutines and 8 KiB of
// buffers (a plaintext one of h1client.go only its socket while idle); with
// 256 the pool grew to the peak concurrency of 32 client connections (31
// upstream, 0.7 MB) and kept it, for nothing: at the rates a sidecar sees,
// a few warm connections serve the load, and a burst beyond them opens
// connections that close after use (to a local app, about 0.1 ms each).
const maxIdlePerHost = 4

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

// maxStreams is the HTTP/2 streams a client may have open on one
// connection.
const maxStreams = 128

// idleTimeout closes client connections without a request for this long.
const idleTimeout = 5 * time.Minute

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

// opaqueTLSWait bounds the wait for a ClientHello on an opaque port.
const opaqueTLSWait = 300 * time.Millisecond
