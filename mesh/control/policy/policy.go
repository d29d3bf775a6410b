// Package policy serves the Policy API (skiff.policy.v1).
//
// WatchOutbound sends the policy of the watched authority when the stream
// opens, and again whenever a new set of routes changes it; an authority
// no route applies to gets DefaultOutbound. The routes come from
// [Server.SetRoutes]; [ResourceFile] feeds it from a file of Gateway API
// objects (HTTPRoute, GRPCRoute, XBackendTrafficPolicy, CircuitBreaker,
// read by package gatewayapi), re-read when it changes, keeping the last
// valid set when a change is refused. [Outbound] is the mapping from a
// route.Route to an OutboundPolicy that the proxy's decoder reads back.
//
// Every stream is a gRPC handler goroutine and nothing more: a new set of
// routes closes a channel all streams wait on, and each stream then sends
// the latest policy of its authority if it differs from the one it sent
// last, so a slow stream skips the sets it was too slow for.
//
// What is not done yet: inbound policy (every port gets DefaultInbound,
// sent once, and proxy.pod is not required because the default needs no
// workload, hence no NOT_FOUND either); Gateway API resources from a
// cluster's API server (only the file source exists, and its authorities
// are the local environment's name.namespace.svc:port); request matching,
// traffic splitting, filters, faults, failover lists and the protocol of
// inbound ports, which package gatewayapi does not convert yet.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

// Config configures a Server. The zero value works.
type Config struct {
	// Log receives the server's events; nil discards them.
	Log *slog.Logger
}

// Server implements policyv1.PolicyServer: outbound policy from the
// routes of SetRoutes (none until it is called: every authority gets
// DefaultOutbound), DefaultInbound for every port. Make it with NewServer;
// stop its streams with Close. Safe for concurrent use.
type Server struct {
	policyv1.UnimplementedPolicyServer

	log       *slog.Logger
	closeOnce sync.Once
	closed    chan struct{}

	mu  sync.Mutex // serialises SetRoutes
	set atomic.Pointer[routeSet]
}

// routeSet is one set of routes, taken whole: the outbound policy of each
// routed authority, by normalised authority. next is closed when a newer
// set replaces this one; the streams wait on it.
type routeSet struct {
	version  uint64
	outbound map[string]*policyv1.OutboundPolicy
	next     chan struct{}
}

// policy is the outbound policy of normalised authority in the set. The
// policies of routed authorities are shared by every stream that sends
// them, and never modified.
func (rs *routeSet) policy(authority string) *policyv1.OutboundPolicy {
	if p := rs.outbound[authority]; p != nil {
		return p
	}
	return DefaultOutbound(authority)
}

var _ policyv1.PolicyServer = (*Server)(nil)

// NewServer returns a Server.
func NewServer(cfg Config) *Server {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log.With("component", "policy"), closed: make(chan struct{})}
	s.set.Store(&routeSet{next: make(chan struct{})})
	return s
}

// SetRoutes makes routes the whole set the server serves, in place of the
// previous one, and sends every open stream whose authority's policy
// changes its new policy (Outbound). Each route must pass
// route.Route.Validate and have an authority discovery.NormalizeAuthority
// accepts, and no two routes may share a normalised authority; at most
// route.MaxRoutes. Otherwise the error names every route that is wrong,
// and the server keeps the set it had. A nil or empty routes serves
// DefaultOutbound to every authority.
func (s *Server) SetRoutes(routes []route.Route) error {
	if len(routes) > route.MaxRoutes {
		return fmt.Errorf("%d routes: at most %d are served", len(routes), route.MaxRoutes)
	}
	outbound := make(map[string]*policyv1.OutboundPolicy, len(routes))
	var errs []error
	for i := range routes {
		r := &routes[i]
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("route %d (%q): %w", i, r.Authority, err))
			continue
		}
		auth, err := discovery.NormalizeAuthority(r.Authority)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %d (%q): %w", i, r.Authority, err))
			continue
		}
		if _, dup := outbound[auth]; dup {
			errs = append(errs, fmt.Errorf("route %d (%q): authority %s already has a route", i, r.Authority, auth))
			continue
		}
		outbound[auth] = Outbound(auth, r)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.set.Load()
	// Store before close: a stream woken by the close loads the new set.
	s.set.Store(&routeSet{version: old.version + 1, outbound: outbound, next: make(chan struct{})})
	close(old.next)
	return nil
}

// Version counts the sets of routes SetRoutes took; 0 before the first.
func (s *Server) Version() uint64 { return s.set.Load().version }

// Close ends every stream with UNAVAILABLE and refuses new ones the same
// way; call it before grpc.Server.GracefulStop. Calling it again does
// nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// DefaultOutbound is the policy of an authority no route or policy
// resource applies to: one synthesized route (metadata kind "default")
// with one rule that matches every request and sends it to the authority
// itself with weight 1; the same authority as the opaque-TCP backend; the
// peak-EWMA balancer with the proxy's default decay and RTT; no retries,
// timeouts, faults or circuit breaking. authority should be normalised
// (discovery.NormalizeAuthority).
func DefaultOutbound(authority string) *policyv1.OutboundPolicy {
	backend := func() *policyv1.Backend { return &policyv1.Backend{Authority: authority, Weight: 1} }
	return &policyv1.OutboundPolicy{
		Authority: authority,
		Routes: []*policyv1.Route{{
			Metadata: &policyv1.Metadata{Kind: "default", Name: authority},
			Rules: []*policyv1.RouteRule{{
				Matches:  []*policyv1.RouteMatch{{Path: &policyv1.PathMatch{Kind: &policyv1.PathMatch_Prefix{Prefix: "/"}}}},
				Backends: []*policyv1.Backend{backend()},
			}},
		}},
		Backends: []*policyv1.Backend{backend()},
		Balancer: &policyv1.Balancer{Algorithm: policyv1.BalancerAlgorithm_BALANCER_ALGORITHM_PEAK_EWMA},
	}
}

// DefaultInbound is the policy of a port no resource declares: protocol
// detected by the proxy, every client allowed with or without a TLS
// identity (DEFAULT_AUTHORIZATION_ALL_UNAUTHENTICATED), no authorizations
// and no routes (one implicit route for every request).
func DefaultInbound(port uint32) *policyv1.InboundPolicy {
	return &policyv1.InboundPolicy{
		Port:                 port,
		Metadata:             &policyv1.Metadata{Kind: "default", Name: "all-unauthenticated"},
		Protocol:             policyv1.Protocol_PROTOCOL_UNSPECIFIED,
		DefaultAuthorization: policyv1.DefaultAuthorization_DEFAULT_AUTHORIZATION_ALL_UNAUTHENTICATED,
	}
}

var errClosed = status.Error(codes.Unavailable, "policy: the server is shutting down; reconnect with backoff")

// WatchOutbound implements policyv1.PolicyServer: the policy of the
// normalised authority in the current set of routes (DefaultOutbound when
// no route applies), then the new policy each time a new set changes it,
// until the stream ends. A stream that is slow to take a message skips to
// the latest policy.
func (s *Server) WatchOutbound(req *policyv1.WatchOutboundRequest, stream policyv1.Policy_WatchOutboundServer) error {
	if req.GetAuthority() == "" {
		return status.Error(codes.InvalidArgument, "policy: authority is required: want host:port, e.g. web.shop.svc.cluster.local:8080")
	}
	auth, err := discovery.NormalizeAuthority(req.GetAuthority())
	if err != nil {
		return status.Error(codes.InvalidArgument, "policy: "+err.Error())
	}
	ctx := stream.Context()
	select {
	case <-s.closed:
		return errClosed
	default:
	}
	set := s.set.Load()
	sent := set.policy(auth)
	if err := stream.Send(sent); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.closed:
			return errClosed
		case <-set.next:
		}
		set = s.set.Load()
		if p := set.policy(auth); !proto.Equal(p, sent) {
			if err := stream.Send(p); err != nil {
				return err
			}
			sent = p
		}
	}
}

// WatchInbound implements policyv1.PolicyServer: DefaultInbound for the
// port, then nothing until the stream ends.
func (s *Server) WatchInbound(req *policyv1.WatchInboundRequest, stream policyv1.Policy_WatchInboundServer) error {
	if p := req.GetPort(); p == 0 || p > 65535 {
		return status.Errorf(codes.InvalidArgument, "policy: port %d: want the workload's port, 1 to 65535", p)
	}
	return s.serve(stream.Context(), func() error { return stream.Send(DefaultInbound(req.GetPort())) })
}

// serve sends the one policy and holds the stream open.
func (s *Server) serve(ctx context.Context, send func() error) error {
	select {
	case <-s.closed:
		return errClosed
	default:
	}
	if err := send(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.closed:
		return errClosed
	}
}
