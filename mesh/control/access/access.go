// Package access decides who may call the controller's gRPC API and how
// much a caller may hold open: the one place where the Destination, Policy
// and Identity services, which share one listener, are guarded.
//
// # Authentication
//
// Destination tells a proxy where endpoints are and which identity each
// must prove; Policy tells it how to route. Both are served only to a
// client that presented, on its TLS connection, a mesh certificate: a
// chain that verifies for client use against the trust bundle of the
// moment of the handshake, with a SPIFFE ID as its URI SAN. The check is
// made once per connection, at the handshake ([Guard.Credentials]), and
// enforced per call by the interceptors: Identity.Certify shares the
// listener and must stay reachable without a certificate (a proxy gets its
// first one there, authenticated by its token), so the TLS configuration
// alone only requests client certificates and cannot require them. A call
// refused for want of a certificate ends with codes.Unauthenticated and a
// message saying what was missing and how to get it. Every method not
// listed in [Config.Public] needs the certificate: a service added later is
// guarded until someone decides otherwise.
//
// A connection stays authenticated for its life, as the proxies'
// connections to each other do: a certificate that expires or an anchor
// that is rotated out after the handshake affects the next connection, not
// this one, so a long-lived watch connection of a proxy whose 24 h leaf
// was renewed meanwhile keeps working.
//
// In plaintext ([Config.AllowPlaintext], the controller's --plaintext)
// there is no certificate to check, and every method is served to every
// client; only the per-connection cap applies.
//
// # Caps
//
// Every server-streaming call (a watch) counts against two caps: per
// connection ([Config.MaxWatchesPerConnection]) and per client identity
// across all its connections ([Config.MaxWatchesPerIdentity]). A watch
// beyond either ends at once with codes.ResourceExhausted. A watch costs
// the controller a goroutine and its stack, the stream's gRPC state and
// the service's per-watcher state (measured at 13–19 KB), so the caps
// bound what one client, or one stolen certificate, can make it hold.
//
// # Memory after a burst
//
// When watches end, their state is released at once (the caps' counts, the
// services' watchers and subscriptions, the goroutines), but the Go runtime
// keeps the memory: an idle server allocates too little to start a garbage
// collection, so freed stacks and objects stay resident until the
// runtime's forced collection two minutes later, and are then returned to
// the operating system gradually. When the number of open watches has
// fallen [Config.ReleaseAfter] below its peak, the guard calls
// [Config.Release] (the controller passes debug.FreeOSMemory) a second
// later, once the burst of ending watches is over, and at most once per
// [Config.ReleaseInterval].
package access

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Defaults of [Config]'s zero fields.
const (
	// DefaultMaxWatchesPerConnection: a sidecar opens one watch per
	// authority it sends to, on one connection; 500 leaves room for a
	// gateway-like workload that talks to hundreds of services.
	DefaultMaxWatchesPerConnection = 500
	// DefaultMaxWatchesPerIdentity: replicas of a workload share its
	// ServiceAccount, hence its identity; 5,000 is ten sidecars at the
	// per-connection cap, and at most ~95 MB of controller memory for one
	// identity.
	DefaultMaxWatchesPerIdentity = 5000
	// DefaultReleaseAfter is how many watches must have ended since the
	// peak before the memory is handed back: ~13-19 MB.
	DefaultReleaseAfter = 1000
	// DefaultReleaseInterval is the least time between two releases.
	DefaultReleaseInterval = 10 * time.Second
)

// Config configures a [Guard]. The zero value serves only Public methods
// (none) over TLS with no trust bundle, that is nothing but refusals; set
// Bundle, or AllowPlaintext.
type Config struct {
	// Bundle returns the trust bundle a client certificate must chain to,
	// read at every handshake so that an anchor rotation applies to the
	// next connection (the CA's ca.CA.Bundle, or the controller's
	// --trust-anchors file). Nil, or a nil result, authenticates nobody.
	Bundle func() *spiffe.Bundle
	// Public lists the full method names ("/skiff.identity.v1.Identity/Certify")
	// served without a client certificate. Every other method needs one.
	Public []string
	// AllowPlaintext serves every method on connections without TLS (the
	// controller's --plaintext): nobody is authenticated there.
	AllowPlaintext bool
	// MaxWatchesPerConnection caps the open server-streaming calls of one
	// connection. Zero means [DefaultMaxWatchesPerConnection].
	MaxWatchesPerConnection int
	// MaxWatchesPerIdentity caps the open server-streaming calls of one
	// client identity over all its connections. Zero means
	// [DefaultMaxWatchesPerIdentity].
	MaxWatchesPerIdentity int
	// Release, when not nil, is called on its own goroutine a second after
	// the open watches have fallen ReleaseAfter below their peak (see the
	// package documentation). Nil releases nothing.
	Release func()
	// ReleaseAfter is the fall that triggers Release. Zero means
	// [DefaultReleaseAfter].
	ReleaseAfter int
	// ReleaseInterval is the least time between two calls of Release; a
	// fall within it is released when it has passed. Zero means
	// [DefaultReleaseInterval].
	ReleaseInterval time.Duration
	// Now reads the clock for certificate verification. Nil means
	// time.Now.
	Now func() time.Time
	// Log receives refusals (at debug level; the metrics count them) and
	// the first cap refusal of each connection (warning). Nil discards.
	Log *slog.Logger
	// Registerer receives the metrics listed at [New]. Nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
}

// Guard authenticates the controller's gRPC clients and caps their
// watches. Make it with [New]; pass [Guard.ServerOptions] to
// grpc.NewServer. Safe for concurrent use.
type Guard struct {
	cfg    Config
	public map[string]bool
	now    func() time.Time
	log    *slog.Logger

	unauthenticated *prometheus.CounterVec
	refused         *prometheus.CounterVec
	watchesGauge    prometheus.Gauge
	identitiesGauge prometheus.Gauge
	releases        prometheus.Counter

	mu          sync.Mutex
	open        int               // watches open, all connections
	peak        int               // highest open since the last release
	byID        map[spiffe.ID]int // open watches by identity; no zero entries
	lastRelease time.Time
	pending     bool // a release is scheduled
}

// Metric names, for tests and dashboards.
const (
	MetricUnauthenticated = "skiff_controller_unauthenticated_total"
	MetricWatchesRefused  = "skiff_controller_watches_refused_total"
	MetricWatches         = "skiff_controller_watches"
	MetricWatchIdentities = "skiff_controller_watch_identities"
	MetricMemoryReleases  = "skiff_controller_memory_releases_total"
)

// New checks cfg and returns a Guard. Its metrics, registered on
// cfg.Registerer, are:
//
//	skiff_controller_unauthenticated_total{method}   counter: calls refused for want of a verified client certificate
//	skiff_controller_watches_refused_total{limit}    counter: watches refused by a cap (limit: connection, identity)
//	skiff_controller_watches                         gauge: open watches (server-streaming calls), all services
//	skiff_controller_watch_identities                gauge: client identities with at least one open watch
//	skiff_controller_memory_releases_total           counter: memory handed back to the OS after watches ended
func New(cfg Config) (*Guard, error) {
	switch {
	case cfg.MaxWatchesPerConnection < 0:
		return nil, fmt.Errorf("access: MaxWatchesPerConnection %d: want at least 1 (0: the default, %d)", cfg.MaxWatchesPerConnection, DefaultMaxWatchesPerConnection)
	case cfg.MaxWatchesPerIdentity < 0:
		return nil, fmt.Errorf("access: MaxWatchesPerIdentity %d: want at least 1 (0: the default, %d)", cfg.MaxWatchesPerIdentity, DefaultMaxWatchesPerIdentity)
	case cfg.ReleaseAfter < 0 || cfg.ReleaseInterval < 0:
		return nil, errors.New("access: ReleaseAfter and ReleaseInterval must not be negative")
	}
	if cfg.MaxWatchesPerConnection == 0 {
		cfg.MaxWatchesPerConnection = DefaultMaxWatchesPerConnection
	}
	if cfg.MaxWatchesPerIdentity == 0 {
		cfg.MaxWatchesPerIdentity = DefaultMaxWatchesPerIdentity
	}
	if cfg.ReleaseAfter == 0 {
		cfg.ReleaseAfter = DefaultReleaseAfter
	}
	if cfg.ReleaseInterval == 0 {
		cfg.ReleaseInterval = DefaultReleaseInterval
	}
	g := &Guard{cfg: cfg, public: make(map[string]bool), now: cfg.Now, log: cfg.Log, byID: make(map[spiffe.ID]int)}
	for _, m := range cfg.Public {
		g.public[m] = true
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.log = g.log.With("component", "access")
	g.unauthenticated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricUnauthenticated,
		Help: "gRPC calls refused with Unauthenticated: the connection has no verified mesh client certificate.",
	}, []string{"method"})
	g.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricWatchesRefused,
		Help: "Watches (server-streaming calls) refused with ResourceExhausted, by the cap reached: connection or identity.",
	}, []string{"limit"})
	g.watchesGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: MetricWatches,
		Help: "Open watches (server-streaming calls) of every service.",
	})
	g.identitiesGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: MetricWatchIdentities,
		Help: "Client identities with at least one open watch.",
	})
	g.releases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: MetricMemoryReleases,
		Help: "Times memory was handed back to the operating system after many watches ended.",
	})
	for _, l := range []string{"connection", "identity"} {
		g.refused.WithLabelValues(l) // exported at 0 from the start
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{g.unauthenticated, g.refused, g.watchesGauge, g.identitiesGauge, g.releases} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("access: register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// ServerOptions returns the options that put g in front of a gRPC
// server: the transport credentials of [Guard.Credentials] for tc (nil:
// plaintext) and the unary and stream interceptors.
func (g *Guard) ServerOptions(tc *tls.Config) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(g.Credentials(tc)),
		grpc.ChainUnaryInterceptor(g.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamInterceptor()),
	}
}

// Credentials returns gRPC server transport credentials: TLS with tc
// (grpc-go's credentials.NewTLS), or plaintext when tc is nil. After each
// TLS handshake the client's certificate, if it presented one, is verified
// for client use against the bundle of that moment, and the connection
// remembers the verified SPIFFE ID (or why there is none) for the
// interceptors. tc should request client certificates
// (tls.RequestClientCert) and may verify them itself as well (a
// VerifyConnection that fails the handshake gives the client a TLS alert
// instead of a gRPC status).
func (g *Guard) Credentials(tc *tls.Config) credentials.TransportCredentials {
	if tc == nil {
		return &creds{TransportCredentials: insecure.NewCredentials(), g: g}
	}
	return &creds{TransportCredentials: credentials.NewTLS(tc), g: g, tls: true}
}

// creds wraps transport credentials so that each connection carries a
// *connInfo.
type creds struct {
	credentials.TransportCredentials
	g   *Guard
	tls bool
}

func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	ci := &connInfo{AuthInfo: info}
	if !c.tls {
		ci.plaintext, ci.why = true, "the connection is plaintext"
		return conn, ci, nil
	}
	ti, ok := info.(credentials.TLSInfo)
	if !ok {
		ci.why = "the connection's TLS state is unknown"
		return conn, ci, nil
	}
	ci.id, ci.why = c.g.verify(ti.State.PeerCertificates)
	return conn, ci, nil
}

func (c *creds) Clone() credentials.TransportCredentials {
	return &creds{TransportCredentials: c.TransportCredentials.Clone(), g: c.g, tls: c.tls}
}

// verify returns the verified client identity of a chain, or why there
// is none.
func (g *Guard) verify(chain []*x509.Certificate) (spiffe.ID, string) {
	if len(chain) == 0 {
		return spiffe.ID{}, "the connection presented no client certificate"
	}
	var b *spiffe.Bundle
	if g.cfg.Bundle != nil {
		b = g.cfg.Bundle()
	}
	if b == nil {
		return spiffe.ID{}, "the controller has no trust bundle to verify client certificates against"
	}
	id, err := b.Verify(chain, g.now(), x509.ExtKeyUsageClientAuth)
	if err != nil {
		return spiffe.ID{}, "the client certificate was rejected: " + err.Error()
	}
	return id, ""
}

// connInfo is a connection's AuthInfo: the inner credentials' (TLSInfo
// or insecure), the verified client identity, and the connection's open
// watches.
type connInfo struct {
	credentials.AuthInfo
	id        spiffe.ID // zero: not authenticated, for the reason in why
	why       string
	plaintext bool

	// Guarded by Guard.mu.
	watches int
	warned  bool // a cap refusal was logged for this connection
}

// GetCommonAuthInfo passes on the inner credentials' security level.
func (ci *connInfo) GetCommonAuthInfo() credentials.CommonAuthInfo {
	if c, ok := ci.AuthInfo.(interface {
		GetCommonAuthInfo() credentials.CommonAuthInfo
	}); ok {
		return c.GetCommonAuthInfo()
	}
	return credentials.CommonAuthInfo{SecurityLevel: credentials.InvalidSecurityLevel}
}

func infoOf(ctx context.Context) *connInfo {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ci, _ := p.AuthInfo.(*connInfo)
	return ci
}

// UnaryInterceptor authenticates unary calls (see the package
// documentation).
func (g *Guard) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if _, err := g.authenticate(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor authenticates server-streaming calls and counts them
// against the caps while they last.
func (g *Guard) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ci, err := g.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if err := g.admit(ci, info.FullMethod); err != nil {
			return err
		}
		defer g.done(ci)
		return handler(srv, ss)
	}
}

// authenticate returns the call's connection, or the Unauthenticated
// status that refuses it.
func (g *Guard) authenticate(ctx context.Context, method string) (*connInfo, error) {
	ci := infoOf(ctx)
	switch {
	case g.public[method]:
		return ci, nil
	case ci == nil:
		// Not a connection made by Credentials: a wiring mistake, refused
		// rather than served unchecked.
		return nil, g.refuse(method, "the connection was not set up by the controller's credentials")
	case !ci.id.IsZero():
		return ci, nil
	case g.cfg.AllowPlaintext && ci.plaintext:
		return ci, nil
	}
	return nil, g.refuse(method, ci.why)
}

func (g *Guard) refuse(method, why string) error {
	g.unauthenticated.WithLabelValues(method).Inc()
	g.log.Debug("call refused: no verified client certificate", "method", method, "reason", why)
	return status.Errorf(codes.Unauthenticated,
		"%s needs a verified mesh client certificate and %s: present, on the TLS connection, the workload certificate Identity.Certify issues "+
			"(a SPIFFE ID as URI SAN, chaining to the mesh's trust anchors); skiff-proxy does so when started with --identity-id",
		method, why)
}

// admit counts a watch of ci against the caps, or refuses it.
func (g *Guard) admit(ci *connInfo, method string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ci == nil { // a Public stream without a connInfo: nothing to count against
		g.opened()
		return nil
	}
	limit, n, max, flag := "", 0, 0, ""
	switch {
	case ci.watches >= g.cfg.MaxWatchesPerConnection:
		limit, n, max, flag = "connection", ci.watches, g.cfg.MaxWatchesPerConnection, "--max-watches-per-connection"
	case !ci.id.IsZero() && g.byID[ci.id] >= g.cfg.MaxWatchesPerIdentity:
		limit, n, max, flag = "identity", g.byID[ci.id], g.cfg.MaxWatchesPerIdentity, "--max-watches-per-identity"
	}
	if limit != "" {
		g.refused.WithLabelValues(limit).Inc()
		who := "this connection"
		if limit == "identity" {
			who = "identity " + ci.id.String()
		}
		if !ci.warned {
			ci.warned = true
			g.log.Warn("watch refused: cap reached", "limit", limit, "open", n, "max", max, "identity", ci.id.String(), "method", method)
		}
		return status.Errorf(codes.ResourceExhausted,
			"%s: %s has %d watches open, the controller's limit (%s) is %d; close watches no longer needed (a proxy needs one per authority it sends to), or raise the limit",
			method, who, n, flag, max)
	}
	ci.watches++
	if !ci.id.IsZero() {
		g.byID[ci.id]++
		g.identitiesGauge.Set(float64(len(g.byID)))
	}
	g.opened()
	return nil
}

// opened counts a watch in; g.mu is held.
func (g *Guard) opened() {
	g.open++
	g.peak = max(g.peak, g.open)
	g.watchesGauge.Set(float64(g.open))
}

// done counts a watch of ci out, forgetting an identity with no watch
// left, and releases memory after a large fall.
func (g *Guard) done(ci *connInfo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ci != nil {
		ci.watches--
		if !ci.id.IsZero() {
			if g.byID[ci.id]--; g.byID[ci.id] <= 0 {
				delete(g.byID, ci.id)
				if len(g.byID) == 0 {
					// Go maps keep their buckets after deletes: after a
					// burst of identities, start afresh.
					g.byID = make(map[spiffe.ID]int)
				}
			}
			g.identitiesGauge.Set(float64(len(g.byID)))
		}
	}
	g.open--
	g.watchesGauge.Set(float64(g.open))
	if g.cfg.Release == nil || g.peak-g.open < g.cfg.ReleaseAfter || g.pending {
		return
	}
	// Watches end in bursts (a client gone, a connection closed): release
	// once the burst is over, not in its middle, and no sooner than
	// ReleaseInterval after the last release.
	g.pending = true
	settle := min(releaseSettle, g.cfg.ReleaseInterval)
	wait := max(settle, time.Until(g.lastRelease.Add(g.cfg.ReleaseInterval)))
	time.AfterFunc(wait, func() {
		g.mu.Lock()
		g.pending, g.peak, g.lastRelease = false, g.open, time.Now()
		g.mu.Unlock()
		g.cfg.Release()
		g.releases.Inc()
	})
}

// releaseSettle is how long after a fall that calls for a release the
// release waits, so that the rest of a burst of ending watches is freed
// by it too.
const releaseSettle = time.Second

// Watches returns the number of open watches and of identities that hold
// at least one: what the caps count.
func (g *Guard) Watches() (watches, identities int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open, len(g.byID)
}
