package policy

import (
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// RouteGroup and RouteKind are the metadata of every route Outbound makes:
// a route.Route does not say whether an HTTPRoute or a GRPCRoute made it,
// and the proxy treats both alike.
const (
	RouteGroup = "gateway.networking.k8s.io"
	RouteKind  = "HTTPRoute"
)

// Outbound is the policy of authority under route r; a nil r is
// DefaultOutbound(authority). The mapping is the contract the proxy's
// decoder reads back into a route.Route, field for field:
//
//   - authority and backends as DefaultOutbound's, balancer unset (the
//     proxy's default);
//   - one route, metadata {RouteGroup, RouteKind, namespace, name} where
//     r.Name is "namespace/name" (no "/": namespace empty, name r.Name),
//     with one rule that matches the path prefix "/" and sends to the
//     authority with weight 1;
//   - the rule's timeouts when r.Timeouts is not zero: request and
//     backend_request, each only when positive;
//   - the rule's retry when r.Retry.Attempts > 0: limit, one status range
//     per code, gRPC codes, backoff {base, max} when r.Retry.Backoff > 0
//     (max unset when r.MaxBackoff is 0), non_idempotent, max_body_bytes
//     (0 stays 0, above 2³²-1 it saturates), and always a budget whose
//     percent and min_retries are present when r.Budget sets them and
//     whose ttl and min_interval are set when positive;
//   - the breaker when r.Breaker is set: consecutive_failures for a
//     positive count and for 0 (breaker.DefaultConsecutiveFailures), none
//     for a negative one (off); success_rate when MinSuccessRate > 0;
//     min_penalty and max_penalty when positive.
//
// Integers that the proto holds as uint32 saturate at 0 and 2³²-1; a
// route that passed route.Route.Validate never needs it.
func Outbound(authority string, r *route.Route) *policyv1.OutboundPolicy {
	if r == nil {
		return DefaultOutbound(authority)
	}
	backends := func() []*policyv1.Backend { return []*policyv1.Backend{{Authority: authority, Weight: 1}} }
	namespace, name, ok := strings.Cut(r.Name, "/")
	if !ok {
		namespace, name = "", r.Name
	}
	return &policyv1.OutboundPolicy{
		Authority: authority,
		Routes: []*policyv1.Route{{
			Metadata: &policyv1.Metadata{Group: RouteGroup, Kind: RouteKind, Namespace: namespace, Name: name},
			Rules: []*policyv1.RouteRule{{
				Matches:  []*policyv1.RouteMatch{{Path: &policyv1.PathMatch{Kind: &policyv1.PathMatch_Prefix{Prefix: "/"}}}},
				Backends: backends(),
				Timeouts: timeoutsOf(r.Timeouts),
				Retry:    retryOf(r),
			}},
		}},
		Backends: backends(),
		Breaker:  breakerOf(r.Breaker),
	}
}

func timeoutsOf(t timeout.Route) *policyv1.Timeouts {
	if t == (timeout.Route{}) {
		return nil
	}
	return &policyv1.Timeouts{Request: duration(t.Request), BackendRequest: duration(t.BackendRequest)}
}

func retryOf(r *route.Route) *policyv1.Retry {
	p := r.Retry
	if p.Attempts <= 0 {
		return nil
	}
	rt := &policyv1.Retry{
		Limit:         uint32Of(p.Attempts),
		NonIdempotent: p.NonIdempotent,
		MaxBodyBytes:  uint32Of(p.MaxBodyBytes),
		Budget:        budgetOf(r),
	}
	for _, c := range p.Codes {
		rt.HttpStatuses = append(rt.HttpStatuses, &policyv1.HttpStatusRange{Min: uint32Of(c), Max: uint32Of(c)})
	}
	for _, c := range p.GRPCCodes {
		rt.GrpcCodes = append(rt.GrpcCodes, uint32Of(c))
	}
	if p.Backoff > 0 {
		rt.Backoff = &policyv1.Backoff{Base: durationpb.New(p.Backoff), Max: duration(r.MaxBackoff)}
	}
	return rt
}

func budgetOf(r *route.Route) *policyv1.RetryBudget {
	b := r.Budget
	pb := &policyv1.RetryBudget{Ttl: duration(b.Interval), MinInterval: duration(b.MinInterval)}
	if b.Percent != nil {
		pb.Percent = proto.Uint32(uint32Of(*b.Percent))
	}
	if b.MinRetries != nil {
		pb.MinRetries = proto.Uint32(uint32Of(*b.MinRetries))
	}
	return pb
}

func breakerOf(b *breaker.Config) *policyv1.Breaker {
	if b == nil {
		return nil
	}
	c := *b
	pb := &policyv1.Breaker{MinPenalty: duration(c.BaseEjection), MaxPenalty: duration(c.MaxEjection)}
	switch {
	case c.ConsecutiveFailures > 0:
		pb.ConsecutiveFailures = &policyv1.ConsecutiveFailures{MaxFailures: uint32Of(c.ConsecutiveFailures)}
	case c.ConsecutiveFailures == 0: // breaker.Config's zero is the default count, not "off"
		pb.ConsecutiveFailures = &policyv1.ConsecutiveFailures{MaxFailures: breaker.DefaultConsecutiveFailures}
	}
	if c.MinSuccessRate > 0 {
		pb.SuccessRate = &policyv1.SuccessRate{Window: duration(c.Window), MinSuccessRate: c.MinSuccessRate, MinRequests: uint32Of(c.MinRequests)}
	}
	return pb
}

// duration is d as a proto Duration, nil (unset: the default) when d is
// not positive.
func duration(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

// uint32Of converts v, saturating at 0 and math.MaxUint32.
func uint32Of[T ~int | ~int64](v T) uint32 {
	switch {
	case v < 0:
		return 0
	case int64(v) > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(v)
}
