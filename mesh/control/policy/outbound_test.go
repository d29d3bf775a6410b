package policy

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// routed is the policy Outbound makes for authority a and a route named
// namespace/name, before its rule's retry and timeouts and its breaker:
// what the table's cases start from.
func routed(a, namespace, name string, edit func(p *policyv1.OutboundPolicy, rule *policyv1.RouteRule)) *policyv1.OutboundPolicy {
	rule := &policyv1.RouteRule{
		Matches:  []*policyv1.RouteMatch{{Path: &policyv1.PathMatch{Kind: &policyv1.PathMatch_Prefix{Prefix: "/"}}}},
		Backends: []*policyv1.Backend{{Authority: a, Weight: 1}},
	}
	p := &policyv1.OutboundPolicy{
		Authority: a,
		Routes: []*policyv1.Route{{
			Metadata: &policyv1.Metadata{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: namespace, Name: name},
			Rules:    []*policyv1.RouteRule{rule},
		}},
		Backends: []*policyv1.Backend{{Authority: a, Weight: 1}},
	}
	if edit != nil {
		edit(p, rule)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func d(v time.Duration) *durationpb.Duration { return durationpb.New(v) }

func TestOutbound(t *testing.T) {
	const a = "echo.default.svc:8080"
	tests := []struct {
		name string
		r    *route.Route
		want *policyv1.OutboundPolicy
	}{
		{"nil route", nil, DefaultOutbound(a)},
		{"bare route", &route.Route{Authority: a, Name: "default/echo"}, routed(a, "default", "echo", nil)},
		{"name without namespace", &route.Route{Authority: a, Name: "echo"}, routed(a, "", "echo", nil)},
		{"name cut at the first slash", &route.Route{Authority: a, Name: "shop/echo/v2"}, routed(a, "shop", "echo/v2", nil)},
		{"request timeout only", &route.Route{Authority: a, Name: "default/echo", Timeouts: timeout.Route{Request: 2 * time.Second}},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Timeouts = &policyv1.Timeouts{Request: d(2 * time.Second)}
			})},
		{"both timeouts", &route.Route{Authority: a, Name: "default/echo", Timeouts: timeout.Route{Request: 2 * time.Second, BackendRequest: 300 * time.Millisecond}},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Timeouts = &policyv1.Timeouts{Request: d(2 * time.Second), BackendRequest: d(300 * time.Millisecond)}
			})},
		{"backend timeout only", &route.Route{Authority: a, Name: "default/echo", Timeouts: timeout.Route{BackendRequest: 300 * time.Millisecond}},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Timeouts = &policyv1.Timeouts{BackendRequest: d(300 * time.Millisecond)}
			})},
		{"retry settings without attempts are no retry", &route.Route{Authority: a, Name: "default/echo",
			Retry: retry.Policy{Codes: []int{503}, Backoff: time.Second}, Budget: retry.BudgetConfig{Percent: ptr(10)}},
			routed(a, "default", "echo", nil)},
		{"retry with the default budget", &route.Route{Authority: a, Name: "default/echo", Retry: retry.Policy{Attempts: 2, Codes: []int{503, 502}}},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Retry = &policyv1.Retry{
					Limit:        2,
					HttpStatuses: []*policyv1.HttpStatusRange{{Min: 503, Max: 503}, {Min: 502, Max: 502}},
					Budget:       &policyv1.RetryBudget{},
				}
			})},
		{"retry with everything", &route.Route{Authority: a, Name: "default/echo",
			Retry: retry.Policy{Attempts: 3, Codes: []int{500}, GRPCCodes: []int{14, 4}, Backoff: 25 * time.Millisecond,
				NonIdempotent: true, MaxBodyBytes: 1 << 20},
			MaxBackoff: time.Second,
			Budget:     retry.BudgetConfig{Percent: ptr(20), Interval: 5 * time.Second, MinRetries: ptr(3), MinInterval: 2 * time.Second}},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Retry = &policyv1.Retry{
					Limit:         3,
					HttpStatuses:  []*policyv1.HttpStatusRange{{Min: 500, Max: 500}},
					GrpcCodes:     []uint32{14, 4},
					Backoff:       &policyv1.Backoff{Base: d(25 * time.Millisecond), Max: d(time.Second)},
					NonIdempotent: true,
					MaxBodyBytes:  1 << 20,
					Budget: &policyv1.RetryBudget{Percent: proto.Uint32(20), Ttl: d(5 * time.Second),
						MinRetries: proto.Uint32(3), MinInterval: d(2 * time.Second)},
				}
			})},
		{"zeros present in the budget stay present", &route.Route{Authority: a, Name: "default/echo",
			Retry:  retry.Policy{Attempts: 1, Backoff: 10 * time.Millisecond},
			Budget: retry.BudgetConfig{Percent: ptr(0), MinRetries: ptr(0)}},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Retry = &policyv1.Retry{
					Limit:   1,
					Backoff: &policyv1.Backoff{Base: d(10 * time.Millisecond)},
					Budget:  &policyv1.RetryBudget{Percent: proto.Uint32(0), MinRetries: proto.Uint32(0)},
				}
			})},
		{"max backoff without backoff is dropped", &route.Route{Authority: a, Name: "default/echo",
			Retry: retry.Policy{Attempts: 1}, MaxBackoff: time.Second},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Retry = &policyv1.Retry{Limit: 1, Budget: &policyv1.RetryBudget{}}
			})},
		{"breaker with the default count", &route.Route{Authority: a, Name: "default/echo", Breaker: &breaker.Config{}},
			routed(a, "default", "echo", func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
				p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 7}}
			})},
		{"breaker with a count and penalties", &route.Route{Authority: a, Name: "default/echo",
			Breaker: &breaker.Config{ConsecutiveFailures: 3, BaseEjection: 500 * time.Millisecond, MaxEjection: 30 * time.Second}},
			routed(a, "default", "echo", func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
				p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 3},
					MinPenalty: d(500 * time.Millisecond), MaxPenalty: d(30 * time.Second)}
			})},
		{"breaker on success rate only", &route.Route{Authority: a, Name: "default/echo",
			Breaker: &breaker.Config{ConsecutiveFailures: -1, MinSuccessRate: 0.9, Window: 5 * time.Second, MinRequests: 50}},
			routed(a, "default", "echo", func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
				p.Breaker = &policyv1.Breaker{SuccessRate: &policyv1.SuccessRate{Window: d(5 * time.Second), MinSuccessRate: 0.9, MinRequests: 50}}
			})},
		{"breaker on both triggers, default window", &route.Route{Authority: a, Name: "default/echo",
			Breaker: &breaker.Config{ConsecutiveFailures: 5, MinSuccessRate: 0.5}},
			routed(a, "default", "echo", func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
				p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 5},
					SuccessRate: &policyv1.SuccessRate{MinSuccessRate: 0.5}}
			})},
		{"everything at once", &route.Route{Authority: a, Name: "shop/echo",
			Timeouts: timeout.Route{Request: time.Second},
			Retry:    retry.Policy{Attempts: 1, Codes: []int{503}},
			Breaker:  &breaker.Config{ConsecutiveFailures: 2}},
			routed(a, "shop", "echo", func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Timeouts = &policyv1.Timeouts{Request: d(time.Second)}
				r.Retry = &policyv1.Retry{Limit: 1, HttpStatuses: []*policyv1.HttpStatusRange{{Min: 503, Max: 503}}, Budget: &policyv1.RetryBudget{}}
				p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 2}}
			})},
		{"a body bound past uint32 saturates", &route.Route{Authority: a, Name: "default/echo", Retry: retry.Policy{Attempts: 1, MaxBodyBytes: 1 << 40}},
			routed(a, "default", "echo", func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
				r.Retry = &policyv1.Retry{Limit: 1, MaxBodyBytes: 1<<32 - 1, Budget: &policyv1.RetryBudget{}}
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Outbound(a, tt.r)
			if !proto.Equal(got, tt.want) {
				t.Errorf("Outbound:\n got %v\nwant %v", prototext.Format(got), prototext.Format(tt.want))
			}
			if _, err := proto.Marshal(got); err != nil {
				t.Errorf("Outbound made a message that does not marshal: %v", err)
			}
			if tt.r != nil {
				if err := tt.r.Validate(); err != nil {
					t.Errorf("the case's route is not valid, so the mapping of it is not a contract: %v", err)
				}
			}
		})
	}
}

// TestOutboundPresence reads the fields whose presence carries meaning as
// the proxy's decoder does: a present zero of a proto3 optional field, a
// breaker's absent consecutive-failure trigger when it is off, and the
// balancer left to the proxy.
func TestOutboundPresence(t *testing.T) {
	p := Outbound("a:1", &route.Route{Authority: "a:1", Name: "x/y", Retry: retry.Policy{Attempts: 1},
		Budget: retry.BudgetConfig{Percent: ptr(0)}, Breaker: &breaker.Config{ConsecutiveFailures: -1, MinSuccessRate: 0.5}})
	b := p.GetRoutes()[0].GetRules()[0].GetRetry().GetBudget()
	if b.Percent == nil || *b.Percent != 0 || b.MinRetries != nil {
		t.Errorf("budget %v: want percent present and 0, min_retries absent", b)
	}
	if p.GetBreaker().GetConsecutiveFailures() != nil {
		t.Errorf("breaker %v: consecutive failures off must leave the trigger unset", p.GetBreaker())
	}
	if p.GetBalancer() != nil {
		t.Errorf("balancer %v: want unset (the proxy's default)", p.GetBalancer())
	}
}
