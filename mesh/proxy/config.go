package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

// Identity is the proxy's workload identity for mutual TLS: certs.Manager
// implements it, keeping a short-lived certificate current.
type Identity interface {
	// ID is the proxy's own SPIFFE ID.
	ID() spiffe.ID
	// ServerTLSConfig accepts TLS 1.3 from peers with a certificate that
	// chains to the trust bundle, and exposes their SPIFFE ID.
	ServerTLSConfig() *tls.Config
	// ClientTLSConfig connects to a peer that must prove expected.
	ClientTLSConfig(expected spiffe.ID) *tls.Config
}

// Defaults, after Linkerd's where it has one.
const (
	DefaultOutboundAddr  = "127.0.0.1:4140"
	DefaultInboundAddr   = "0.0.0.0:4143"
	DefaultAdminAddr     = "127.0.0.1:4191"
	DefaultDetectTimeout = 10 * time.Second
	// DefaultBodyTimeout bounds the wait for more of a request's body
	// while no response has begun.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultStreamIdleTimeout bounds the wait for more of a request's
	// body once its response has begun (a streaming request, such as a
	// gRPC client stream), as Envoy's stream idle timeout.
	DefaultStreamIdleTimeout = 5 * time.Minute
	DefaultDrainTimeout      = 10 * time.Second
	DefaultConnectTimeout    = 1 * time.Second
	// DefaultHeaderTimeout bounds the wait for a request's headers (and,
	// on declared HTTP ports, for the first bytes).
	DefaultHeaderTimeout = 10 * time.Second
	// DefaultMaxHeaderBytes bounds a request's header list, counted as
	// HTTP/2 counts it (each field's name and value plus 32 bytes,
	// pseudo-header fields included), on HTTP/1 and HTTP/2 alike: beyond
	// it, 431.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultAuthorityIdleTimeout is how long an authority no request
	// asks for is remembered, with its discovery watch.
	DefaultAuthorityIdleTimeout = time.Minute
	// DefaultMaxAuthorities bounds the authorities watched at once (each
	// costs about 13 KB: a balancer and a discovery watch). Authorities
	// discovery does not know are never kept, so only the services an
	// application really calls count toward it.
	DefaultMaxAuthorities = 1000
)

// DefaultOpaquePorts are ports whose traffic is never HTTP detected
// (SMTP, MySQL, Galera, PostgreSQL, Redis, Elasticsearch, memcached), as
// Linkerd's defaults: server-speaks-first protocols would otherwise wait
// for the detection timeout.
var DefaultOpaquePorts = []uint16{25, 587, 3306, 4444, 5432, 6379, 9300, 11211}

// TCPRoute is an extra outbound listener whose connections are forwarded,
// as opaque TCP, to one authority: the explicit mode's way of reaching a
// TCP service, since raw bytes name no destination.
type TCPRoute struct {
	Addr      string // listen address
	Authority string // resolved through the endpoint source
}

// Config is the proxy's configuration. Empty fields take the defaults
// above; a zero Config runs an outbound listener only when Endpoints is set.
type Config struct {
	// OutboundAddr is where applications send their requests (explicit
	// mode) or where iptables redirects them (transparent mode). "-"
	// disables the listener.
	OutboundAddr string
	// InboundAddr receives traffic from peers. "-" disables it.
	InboundAddr string
	// AdminAddr serves /live, /ready, /metrics and (with Pprof) /debug/pprof.
	// "-" disables it.
	AdminAddr string
	// InboundForward is the local application's address. Empty means the
	// inbound listener forwards to each connection's original destination
	// (transparent mode).
	InboundForward string
	// Transparent makes listeners read SO_ORIGINAL_DST. A connection that
	// was not redirected is treated as explicit.
	Transparent bool
	// SocketMark, when non-zero, marks the proxy's upstream sockets
	// (Linux SO_MARK, needs CAP_NET_ADMIN) so iptables rules can exempt
	// the proxy's own traffic from redirection.
	SocketMark uint32
	// OpaquePorts skip protocol detection: a connection whose destination
	// port (original destination, or the inbound forward port) is listed is
	// forwarded as TCP at once. Nil means DefaultOpaquePorts.
	OpaquePorts []uint16
	// HTTPPorts are declared HTTP: detection is skipped and the connection
	// is served as HTTP/1.1 or HTTP/2. Listener ports may be listed.
	HTTPPorts []uint16
	// TCPRoutes are extra opaque outbound listeners.
	TCPRoutes []TCPRoute
	// DetectTimeout bounds the wait for a client's first bytes.
	DetectTimeout time.Duration
	// HeaderTimeout bounds the wait for a request's header block, from
	// its first byte (slowloris costs a connection for this long).
	HeaderTimeout time.Duration
	// ConnectTimeout bounds each upstream dial.
	ConnectTimeout time.Duration
	// MemoryBudget is the peak resident memory, in bytes, that the
	// connection and in-flight caps are derived for (budget.go); zero
	// means DefaultMemoryBudget.
	MemoryBudget int64
	// ShedOnMemory makes the proxy watch its process's resident memory
	// and shed load as it nears MemoryBudget (overload.go). Set it only
	// when the process is the proxy's own (skiff-proxy does): in a
	// process that does other things the reading means nothing.
	ShedOnMemory bool
	// MaxConnections bounds open client connections per listener; at it,
	// the connection longest without a request in flight is closed to
	// make room, and when every one is busy the new one is. Zero derives
	// it from MemoryBudget.
	MaxConnections int
	// MaxInFlight bounds concurrent requests per listener; beyond it
	// requests get 503 (gRPC: RESOURCE_EXHAUSTED) without being
	// forwarded. Inbound, once half of it is in use, a connection may
	// hold an eighth and a client a quarter. Zero derives it from
	// MemoryBudget.
	MaxInFlight int
	// BodyTimeout bounds the wait for more of a request's body while no
	// response has begun: a stalled body then fails with 408.
	BodyTimeout time.Duration
	// StreamIdleTimeout bounds the wait for more of a request's body once
	// its response has begun.
	StreamIdleTimeout time.Duration
	// DrainTimeout bounds the graceful shutdown.
	DrainTimeout time.Duration
	// AuthorityIdleTimeout is how long an outbound authority that no
	// request asks for keeps its entry and its discovery watch.
	AuthorityIdleTimeout time.Duration
	// MaxAuthorities bounds the authorities watched at once; a new one
	// beyond it makes the least recently used ones forgotten.
	MaxAuthorities int
	// Failover lists, per authority, the authorities to use when it has no
	// ready endpoint or none of its endpoints accepts a connection: the
	// same request then goes to the first fallback that can take it.
	// Nothing is sent twice: only requests no endpoint received move on.
	Failover map[string][]string
	// Identity enables mutual TLS: connections to meshed endpoints whose
	// identity discovery gives are TLS 1.3, with both sides verified and
	// the server's SPIFFE ID checked; inbound TLS is terminated and the
	// client's ID known. Nil disables it (tls="disabled" on metrics).
	Identity Identity
	// RequireMTLS refuses inbound connections that are not mutual TLS
	// (strict mode). It needs Identity.
	RequireMTLS bool
	// ForwardClientID adds the verified client's SPIFFE ID to inbound
	// requests as ClientIDHeader (an incoming one is always removed).
	ForwardClientID bool
	// Endpoints resolves outbound authorities. Nil means none are known:
	// explicit requests fail with 502 and transparent traffic passes
	// through to its original destination.
	Endpoints endpoint.Source
	// Balance configures the load balancer of every authority.
	Balance balance.Options
	// Routes are the outbound routes' timeouts, retries and breakers, by
	// authority; nil or empty means none. The table may be replaced while
	// the proxy runs (route.Table.Replace).
	Routes *route.Table
	// Policy streams each outbound authority's route from the control
	// plane, watched from the authority's first request on as its
	// endpoints are. A route it gives takes precedence over Routes' for
	// that authority; nil means Routes alone.
	Policy route.Source
	// Pprof exposes /debug/pprof on the admin server. It needs a binary
	// built with -tags pprof (PprofAvailable): the profiler's code costs
	// about 0.5 MB of resident memory in every sidecar.
	Pprof bool
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) normalize() error {
	if c.OutboundAddr == "" {
		c.OutboundAddr = DefaultOutboundAddr
	}
	if c.InboundAddr == "" {
		c.InboundAddr = DefaultInboundAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.OpaquePorts == nil {
		c.OpaquePorts = DefaultOpaquePorts
	}
	if c.DetectTimeout <= 0 {
		c.DetectTimeout = DefaultDetectTimeout
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MemoryBudget <= 0 {
		c.MemoryBudget = DefaultMemoryBudget
	}
	lim := limitsFor(c.MemoryBudget)
	if c.MaxConnections <= 0 {
		c.MaxConnections = lim.connections
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = lim.inFlight
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.StreamIdleTimeout <= 0 {
		c.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.AuthorityIdleTimeout <= 0 {
		c.AuthorityIdleTimeout = DefaultAuthorityIdleTimeout
	}
	if c.MaxAuthorities <= 0 {
		c.MaxAuthorities = DefaultMaxAuthorities
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if c.RequireMTLS && c.Identity == nil {
		errs = append(errs, errors.New("strict mTLS (RequireMTLS) needs an identity"))
	}
	if c.Pprof && !PprofAvailable {
		errs = append(errs, errors.New("pprof was asked for, but this binary was built without it: rebuild with -tags pprof"))
	}
	for _, a := range []struct{ name, v string }{{"outbound", c.OutboundAddr}, {"inbound", c.InboundAddr}, {"admin", c.AdminAddr}} {
		if a.v == "-" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s address %q: %w", a.name, a.v, err))
		}
	}
	if c.InboundForward != "" {
		if _, _, err := net.SplitHostPort(c.InboundForward); err != nil {
			errs = append(errs, fmt.Errorf("inbound forward address %q: %w", c.InboundForward, err))
		}
	}
	if c.InboundAddr != "-" && c.InboundForward == "" && !c.Transparent {
		errs = append(errs, errors.New("the inbound listener needs an application address (InboundForward) unless in transparent mode"))
	}
	for _, r := range c.TCPRoutes {
		if _, _, err := net.SplitHostPort(r.Addr); err != nil || r.Authority == "" {
			errs = append(errs, fmt.Errorf("tcp route %q=%q: want LISTEN_ADDR=AUTHORITY", r.Addr, r.Authority))
		}
	}
	return errors.Join(errs...)
}

func hasPort(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}
