// Package policy serves the Policy API (skiff.policy.v1). For now it is
// minimal: every outbound authority gets DefaultOutbound and every inbound
// port DefaultInbound, sent once when the stream opens; the stream then
// stays open until the client leaves or the server closes, so that the
// proxies' watches already have the shape they keep when policy starts to
// change.
//
// What is not done yet, and is left to the issue that gives routes and
// policy their semantics: reading HTTPRoute/GRPCRoute and the retry,
// timeout, breaker, fault and authorization resources (through the
// discovery sources), sending a new policy when they change, failover
// lists, the protocol of inbound ports, and the pod lookup behind
// WatchInbound's NOT_FOUND (proxy.pod is not required by this server,
// because the default needs no workload).
package policy

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/discovery"
)

// Config configures a Server. The zero value works.
type Config struct {
	// Log receives the server's events; nil discards them.
	Log *slog.Logger
}

// Server implements policyv1.PolicyServer with default policies. Make it
// with NewServer; stop its streams with Close. Safe for concurrent use.
type Server struct {
	policyv1.UnimplementedPolicyServer

	log       *slog.Logger
	closeOnce sync.Once
	closed    chan struct{}
}

var _ policyv1.PolicyServer = (*Server)(nil)

// NewServer returns a Server.
func NewServer(cfg Config) *Server {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{log: log.With("component", "policy"), closed: make(chan struct{})}
}

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

// WatchOutbound implements policyv1.PolicyServer: DefaultOutbound for the
// normalised authority, then nothing until the stream ends.
func (s *Server) WatchOutbound(req *policyv1.WatchOutboundRequest, stream policyv1.Policy_WatchOutboundServer) error {
	if req.GetAuthority() == "" {
		return status.Error(codes.InvalidArgument, "policy: authority is required: want host:port, e.g. web.shop.svc.cluster.local:8080")
	}
	auth, err := discovery.NormalizeAuthority(req.GetAuthority())
	if err != nil {
		return status.Error(codes.InvalidArgument, "policy: "+err.Error())
	}
	return s.serve(stream.Context(), func() error { return stream.Send(DefaultOutbound(auth)) })
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
