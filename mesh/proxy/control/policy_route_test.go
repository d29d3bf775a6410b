package control

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// The mapping tests encode policies with the generated types, as the
// controller does, and check the route the proxy makes of them.

const testAuthority = "web.shop.svc.cluster.local:8080"

// defaultPolicy is what the controller sends for an authority no route
// resource applies to (mesh/control/policy.DefaultOutbound, restated
// here to keep the controller's dependencies out of this test).
func defaultPolicy() *policyv1.OutboundPolicy {
	backend := func() *policyv1.Backend { return &policyv1.Backend{Authority: testAuthority, Weight: 1} }
	return &policyv1.OutboundPolicy{
		Authority: testAuthority,
		Routes: []*policyv1.Route{{
			Metadata: &policyv1.Metadata{Kind: "default", Name: testAuthority},
			Rules: []*policyv1.RouteRule{{
				Matches:  []*policyv1.RouteMatch{{Path: &policyv1.PathMatch{Kind: &policyv1.PathMatch_Prefix{Prefix: "/"}}}},
				Backends: []*policyv1.Backend{backend()},
			}},
		}},
		Backends: []*policyv1.Backend{backend()},
		Balancer: &policyv1.Balancer{Algorithm: policyv1.BalancerAlgorithm_BALANCER_ALGORITHM_PEAK_EWMA},
	}
}

// policyWith returns defaultPolicy changed by fn, which gets its only rule.
func policyWith(fn func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule)) *policyv1.OutboundPolicy {
	p := defaultPolicy()
	fn(p, p.Routes[0].Rules[0])
	return p
}

// named makes the policy's route an HTTPRoute shop/web-route.
func named(p *policyv1.OutboundPolicy) {
	p.Routes[0].Metadata = &policyv1.Metadata{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: "shop", Name: "web-route"}
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func ptr[T any](v T) *T { return &v }

func statuses(lo, hi int) []int {
	var s []int
	for c := lo; c <= hi; c++ {
		s = append(s, c)
	}
	return s
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// show formats a route with its pointers followed, for failure messages.
func show(r *route.Route) string {
	b, _ := json.Marshal(r)
	return string(b)
}

func TestPolicyToRoute(t *testing.T) {
	leakcheck.Check(t)
	base := route.Route{Authority: testAuthority}
	with := func(fn func(r *route.Route)) *route.Route {
		r := base
		fn(&r)
		return &r
	}
	for _, tc := range []struct {
		name    string
		in      *policyv1.OutboundPolicy
		want    *route.Route
		ignored ignored
	}{
		{"synthesized default", defaultPolicy(), nil, ignoredBalancer},
		{"no matches at all", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Matches, p.Balancer = nil, nil
		}), nil, 0},
		{"a match that sets nothing is every request too", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Matches = []*policyv1.RouteMatch{{}}
		}), nil, ignoredBalancer},
		{"default route with a breaker: unnamed", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{}
		}), with(func(r *route.Route) { r.Breaker = &breaker.Config{} }), ignoredBalancer},
		{"name is namespace/name; timeouts", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			named(p)
			r.Timeouts = &policyv1.Timeouts{Request: dur(5 * time.Second), BackendRequest: dur(1500 * time.Millisecond)}
		}), with(func(r *route.Route) {
			r.Name = "shop/web-route"
			r.Timeouts = timeout.Route{Request: 5 * time.Second, BackendRequest: 1500 * time.Millisecond}
		}), ignoredBalancer},
		{"name without a namespace", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Routes[0].Metadata = &policyv1.Metadata{Kind: "HTTPRoute", Name: "web-route"}
			r.Timeouts = &policyv1.Timeouts{Request: dur(2 * time.Second)}
		}), with(func(r *route.Route) {
			r.Name = "web-route"
			r.Timeouts.Request = 2 * time.Second
		}), ignoredBalancer},
		{"idle timeout alone: ignored, nothing to hold", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{Idle: dur(time.Minute)}
		}), nil, ignoredBalancer | ignoredIdle},
		{"idle timeout beside a request timeout", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{Request: dur(time.Second), Idle: dur(time.Minute)}
		}), with(func(r *route.Route) { r.Timeouts.Request = time.Second }), ignoredBalancer | ignoredIdle},
		{"empty timeouts", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{}
		}), nil, ignoredBalancer},
		{"empty retry: one attempt, default budget", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{}
		}), with(func(r *route.Route) { r.Retry.Attempts = 1 }), ignoredBalancer},
		{"full retry", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			named(p)
			r.Retry = &policyv1.Retry{
				Conditions: []policyv1.RetryCondition{
					policyv1.RetryCondition_RETRY_CONDITION_GATEWAY_ERROR, policyv1.RetryCondition_RETRY_CONDITION_RETRIABLE_4XX,
					policyv1.RetryCondition_RETRY_CONDITION_CONNECT_FAILURE, policyv1.RetryCondition_RETRY_CONDITION_RESET,
					policyv1.RetryCondition_RETRY_CONDITION_TIMEOUT, policyv1.RetryCondition_RETRY_CONDITION_UNSPECIFIED,
				},
				HttpStatuses:  []*policyv1.HttpStatusRange{{Min: 503}, {Min: 429}, {Min: 500, Max: 502}},
				GrpcCodes:     []uint32{14, 4},
				Limit:         3,
				Backoff:       &policyv1.Backoff{Base: dur(25 * time.Millisecond), Max: dur(time.Second), Jitter: 0.3},
				Budget:        &policyv1.RetryBudget{Percent: ptr[uint32](30), Ttl: dur(30 * time.Second), MinRetries: ptr[uint32](3), MinInterval: dur(2 * time.Second)},
				NonIdempotent: true,
				MaxBodyBytes:  1024,
			}
		}), with(func(r *route.Route) {
			r.Name = "shop/web-route"
			r.Retry = retry.Policy{Attempts: 3, Codes: []int{503, 429, 500, 501, 502, 504, 409}, GRPCCodes: []int{14, 4},
				Backoff: 25 * time.Millisecond, NonIdempotent: true, MaxBodyBytes: 1024}
			r.MaxBackoff = time.Second
			r.Budget = retry.BudgetConfig{Percent: ptr(30), Interval: 30 * time.Second, MinRetries: ptr(3), MinInterval: 2 * time.Second}
		}), ignoredBalancer},
		{"server errors: every 5xx, after the ranges", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 503}, {Min: 409}},
				Conditions: []policyv1.RetryCondition{policyv1.RetryCondition_RETRY_CONDITION_SERVER_ERROR, policyv1.RetryCondition_RETRY_CONDITION_RETRIABLE_4XX}}
		}), with(func(r *route.Route) {
			r.Retry = retry.Policy{Attempts: 1, Codes: append(append([]int{503, 409}, statuses(500, 502)...), statuses(504, 599)...)}
		}), ignoredBalancer},
		{"every 4xx and 5xx: 200 statuses, the cap", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 400, Max: 599}, {Min: 500, Max: 599}}}
		}), with(func(r *route.Route) { r.Retry = retry.Policy{Attempts: 1, Codes: statuses(400, 599)} }), ignoredBalancer},
		{"a retry condition from a newer controller is ignored", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Limit: 2, Conditions: []policyv1.RetryCondition{99, policyv1.RetryCondition_RETRY_CONDITION_RETRIABLE_4XX}}
		}), with(func(r *route.Route) { r.Retry = retry.Policy{Attempts: 2, Codes: []int{409}} }), ignoredBalancer | ignoredCondition},
		{"budget: percent present as 0", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{Percent: ptr[uint32](0), Ratio: 0.5}}
		}), with(func(r *route.Route) { r.Retry.Attempts, r.Budget.Percent = 1, ptr(0) }), ignoredBalancer},
		{"budget: ratio without percent, rounded", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{Ratio: 0.125}}
		}), with(func(r *route.Route) { r.Retry.Attempts, r.Budget.Percent = 1, ptr(13) }), ignoredBalancer},
		{"budget: percent wins over ratio", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{Ratio: 0.5, Percent: ptr[uint32](10)}}
		}), with(func(r *route.Route) { r.Retry.Attempts, r.Budget.Percent = 1, ptr(10) }), ignoredBalancer},
		{"budget: nothing set is the default budget", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{}}
		}), with(func(r *route.Route) { r.Retry.Attempts = 1 }), ignoredBalancer},
		{"budget: min_per_second is per 1s", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{MinPerSecond: 5, Ttl: dur(20 * time.Second)}}
		}), with(func(r *route.Route) {
			r.Retry.Attempts = 1
			r.Budget = retry.BudgetConfig{MinRetries: ptr(5), MinInterval: time.Second, Interval: 20 * time.Second}
		}), ignoredBalancer},
		{"budget: min_interval replaces min_per_second's 1s", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{MinPerSecond: 5, MinInterval: dur(3 * time.Second)}}
		}), with(func(r *route.Route) {
			r.Retry.Attempts = 1
			r.Budget = retry.BudgetConfig{MinRetries: ptr(5), MinInterval: 3 * time.Second}
		}), ignoredBalancer},
		{"budget: min_retries present as 0 wins over min_per_second", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{MinPerSecond: 5, MinRetries: ptr[uint32](0)}}
		}), with(func(r *route.Route) { r.Retry.Attempts, r.Budget.MinRetries = 1, ptr(0) }), ignoredBalancer},
		{"breaker: consecutive failures and penalties", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 5},
				MinPenalty: dur(2 * time.Second), MaxPenalty: dur(30 * time.Second), Jitter: 0.1}
		}), with(func(r *route.Route) {
			r.Breaker = &breaker.Config{ConsecutiveFailures: 5, BaseEjection: 2 * time.Second, MaxEjection: 30 * time.Second}
		}), ignoredBalancer},
		{"breaker: consecutive failures present with 0 is the default", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{}}
		}), with(func(r *route.Route) { r.Breaker = &breaker.Config{} }), ignoredBalancer},
		{"breaker: success rate alone turns consecutive failures off", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{SuccessRate: &policyv1.SuccessRate{Window: dur(20 * time.Second), MinSuccessRate: 0.9, MinRequests: 50}}
		}), with(func(r *route.Route) {
			r.Breaker = &breaker.Config{ConsecutiveFailures: -1, MinSuccessRate: 0.9, Window: 20 * time.Second, MinRequests: 50}
		}), ignoredBalancer},
		{"breaker: both triggers", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 4},
				SuccessRate: &policyv1.SuccessRate{MinSuccessRate: 0.5}}
		}), with(func(r *route.Route) { r.Breaker = &breaker.Config{ConsecutiveFailures: 4, MinSuccessRate: 0.5} }), ignoredBalancer},
		{"everything at once", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			named(p)
			r.Timeouts = &policyv1.Timeouts{Request: dur(3 * time.Second), BackendRequest: dur(time.Second)}
			r.Retry = &policyv1.Retry{Limit: 2, GrpcCodes: []uint32{14}}
			p.Breaker = &policyv1.Breaker{}
		}), with(func(r *route.Route) {
			r.Name = "shop/web-route"
			r.Timeouts = timeout.Route{Request: 3 * time.Second, BackendRequest: time.Second}
			r.Retry = retry.Policy{Attempts: 2, GRPCCodes: []int{14}}
			r.Breaker = &breaker.Config{}
		}), ignoredBalancer},
		{"backend authority compared case-insensitively", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Backends[0].Authority = strings.ToUpper(testAuthority)
			r.Retry = &policyv1.Retry{}
		}), with(func(r *route.Route) { r.Retry.Attempts = 1 }), ignoredBalancer},
		{"top-level backends are ignored", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Backends = []*policyv1.Backend{{Authority: "elsewhere:80", Weight: 3, Failover: []string{"far:80"}}, {Authority: "other:81"}}
			p.Balancer = nil
		}), nil, 0},
		{"the backend's failover is ignored", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Backends[0].Failover = []string{"web.west:8080"}
		}), nil, ignoredBalancer | ignoredFailover},
		{"rule name and backend weight are not read", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			r.Name, r.Backends[0].Weight = "first", 7
		}), nil, ignoredBalancer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ign, err := decodePolicy(testAuthority, marshal(t, tc.in))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("route\n %s\nwant\n %s", show(got), show(tc.want))
			}
			if ign != tc.ignored {
				t.Errorf("ignored %04b, want %04b", ign, tc.ignored)
			}
			if got != nil {
				if err := got.Validate(); err != nil {
					t.Errorf("the route fails its own check: %v", err)
				}
			}
		})
	}
}

func TestPolicyRefused(t *testing.T) {
	leakcheck.Check(t)
	rule := func(fn func(r *policyv1.RouteRule)) *policyv1.OutboundPolicy {
		return policyWith(func(_ *policyv1.OutboundPolicy, r *policyv1.RouteRule) { fn(r) })
	}
	prefix := func(p string) *policyv1.PathMatch {
		return &policyv1.PathMatch{Kind: &policyv1.PathMatch_Prefix{Prefix: p}}
	}
	many := func(n int) []uint32 {
		s := make([]uint32, n)
		for i := range s {
			s[i] = 14
		}
		return s
	}
	for _, tc := range []struct {
		name string
		in   *policyv1.OutboundPolicy
		want string // the whole message, or its start when it ends in "…"
	}{
		{"status out of range", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 503}, {Min: 700}}}
		}), "routes[0].rules[0].retry.http_statuses[1]: min 700 is not 100..599"},
		{"status range max out of range", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 500, Max: 600}}}
		}), "routes[0].rules[0].retry.http_statuses[0]: max 600 is not 100..599"},
		{"status range upside down", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 504, Max: 502}}}
		}), "routes[0].rules[0].retry.http_statuses[0]: max 502 is below min 504"},
		{"status missing", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{}}}
		}), "routes[0].rules[0].retry.http_statuses[0]: min 0 is not 100..599"},
		{"a status that is no error", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 302}}}
		}), "routes[0].rules[0].retry: retry.codes[0]: 302 is not an HTTP error status (400..599)"},
		{"more than 200 statuses", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{HttpStatuses: []*policyv1.HttpStatusRange{{Min: 100, Max: 599}}}
		}), "routes[0].rules[0].retry: http_statuses and conditions give more than 200 distinct statuses, the most the proxy accepts"},
		{"grpc code out of range", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{GrpcCodes: []uint32{14, 17}}
		}), "routes[0].rules[0].retry: grpc codes[1]: 17 is not a gRPC error code (1..16)"},
		{"65 grpc codes", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{GrpcCodes: many(65)}
		}), "routes[0].rules[0].retry.grpc_codes: too many entries: more than 64, the most the proxy accepts"},
		{"65 status ranges", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{}
			for range 65 {
				r.Retry.HttpStatuses = append(r.Retry.HttpStatuses, &policyv1.HttpStatusRange{Min: 503})
			}
		}), "routes[0].rules[0].retry.http_statuses: too many entries: more than 64, the most the proxy accepts"},
		{"negative request timeout", rule(func(r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{Request: &durationpb.Duration{Seconds: -1}}
		}), "routes[0].rules[0].timeouts.request: -1s0ns is negative"},
		{"negative idle timeout", rule(func(r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{Idle: &durationpb.Duration{Nanos: -5}}
		}), "routes[0].rules[0].timeouts.idle: 0s-5ns is negative"},
		{"nanos beyond a second", rule(func(r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{BackendRequest: &durationpb.Duration{Nanos: 1e9}}
		}), "routes[0].rules[0].timeouts.backend_request: nanos 1000000000 is not within a second"},
		{"mixed signs", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Backoff: &policyv1.Backoff{Base: &durationpb.Duration{Seconds: 1, Nanos: -1}}}
		}), "routes[0].rules[0].retry.backoff.base: seconds 1 and nanos -1 have different signs"},
		{"longer than a time.Duration", rule(func(r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{Request: &durationpb.Duration{Seconds: 1 << 40}}
		}), "routes[0].rules[0].timeouts.request: 1099511627776 seconds is longer than the proxy can hold (about 292 years)"},
		{"attempt longer than the request", rule(func(r *policyv1.RouteRule) {
			r.Timeouts = &policyv1.Timeouts{Request: dur(time.Second), BackendRequest: dur(2 * time.Second)}
		}), "routes[0].rules[0].timeouts: timeouts: backendRequest 2s is longer than request 1s"},
		{"ratio above 1", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{Ratio: 1.5}}
		}), "routes[0].rules[0].retry.budget.ratio: 1.5 is not 0..1"},
		{"ratio NaN", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{Ratio: math.NaN()}}
		}), "routes[0].rules[0].retry.budget.ratio: NaN is not 0..1"},
		{"percent above 100", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{Percent: ptr[uint32](101)}}
		}), "routes[0].rules[0].retry.budget: retry budget: percent 101 is outside 0..100"},
		{"budget window too short", rule(func(r *policyv1.RouteRule) {
			r.Retry = &policyv1.Retry{Budget: &policyv1.RetryBudget{Ttl: dur(time.Millisecond)}}
		}), "routes[0].rules[0].retry.budget: retry budget: intervals 1ms and 1s must be at least 10ms"},
		{"success rate NaN", policyWith(func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{SuccessRate: &policyv1.SuccessRate{MinSuccessRate: math.NaN()}}
		}), "breaker.success_rate.min_success_rate: NaN is not 0..1"},
		{"penalties upside down", policyWith(func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{MinPenalty: dur(time.Minute), MaxPenalty: dur(time.Second)}
		}), "breaker: breaker: ejection 1m0s..1s is not a range"},
		{"negative penalty", policyWith(func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
			p.Breaker = &policyv1.Breaker{MaxPenalty: &durationpb.Duration{Seconds: -3}}
		}), "breaker.max_penalty: -3s0ns is negative"},

		{"no route", policyWith(func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) { p.Routes = nil }),
			"routes: empty; the control plane always sends one route at least"},
		{"two routes", policyWith(func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
			p.Routes = append(p.Routes, p.Routes[0])
		}), "routes: 2 routes: the proxy does not implement it yet: …"},
		{"65 routes", policyWith(func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) {
			for range 64 {
				p.Routes = append(p.Routes, p.Routes[0])
			}
		}), "routes: too many entries: more than 64, the most the proxy accepts"},
		{"no rule", policyWith(func(p *policyv1.OutboundPolicy, _ *policyv1.RouteRule) { p.Routes[0].Rules = nil }),
			"routes[0].rules: empty; a route has one rule at least"},
		{"two rules", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			p.Routes[0].Rules = append(p.Routes[0].Rules, r)
		}), "routes[0].rules: 2 rules: the proxy does not implement it yet: …"},
		{"65 rules", policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
			for range 64 {
				p.Routes[0].Rules = append(p.Routes[0].Rules, r)
			}
		}), "routes[0].rules: too many entries: more than 64, the most the proxy accepts"},
		{"path prefix", rule(func(r *policyv1.RouteRule) { r.Matches[0].Path = prefix("/api") }),
			`routes[0].rules[0].matches[0].path: path prefix "/api": the proxy does not implement it yet: …`},
		{"exact path", rule(func(r *policyv1.RouteRule) {
			r.Matches[0].Path = &policyv1.PathMatch{Kind: &policyv1.PathMatch_Exact{Exact: "/"}}
		}), `routes[0].rules[0].matches[0].path: exact path "/": the proxy does not implement it yet: …`},
		{"path regex", rule(func(r *policyv1.RouteRule) {
			r.Matches[0].Path = &policyv1.PathMatch{Kind: &policyv1.PathMatch_Regex{Regex: ".*"}}
		}), `routes[0].rules[0].matches[0].path: path regex ".*": the proxy does not implement it yet: …`},
		{"header match", rule(func(r *policyv1.RouteRule) {
			r.Matches[0].Headers = []*policyv1.HeaderMatch{{Name: "x-canary", Value: &policyv1.HeaderMatch_Exact{Exact: "1"}}}
		}), "routes[0].rules[0].matches[0].headers: 1 header matches: the proxy does not implement it yet: …"},
		{"query match", rule(func(r *policyv1.RouteRule) {
			r.Matches[0].QueryParams = []*policyv1.QueryParamMatch{{Name: "v"}}
		}), "routes[0].rules[0].matches[0].query_params: 1 query parameter matches: the proxy does not implement it yet: …"},
		{"method match", rule(func(r *policyv1.RouteRule) { r.Matches[0].Method = "GET" }),
			`routes[0].rules[0].matches[0].method: method "GET": the proxy does not implement it yet: …`},
		{"two catch-all matches", rule(func(r *policyv1.RouteRule) { r.Matches = append(r.Matches, r.Matches[0]) }),
			"routes[0].rules[0].matches: 2 matches: the proxy does not implement it yet: …"},
		{"filter", rule(func(r *policyv1.RouteRule) {
			r.Filters = []*policyv1.Filter{{Kind: &policyv1.Filter_RequestHeaderModifier{RequestHeaderModifier: &policyv1.HeaderModifier{}}}}
		}), "routes[0].rules[0].filters: 1 filters: the proxy does not implement filters yet"},
		{"backend filter", rule(func(r *policyv1.RouteRule) {
			r.Backends[0].Filters = []*policyv1.Filter{{Kind: &policyv1.Filter_UrlRewrite{UrlRewrite: &policyv1.UrlRewrite{Hostname: "x"}}}}
		}), "routes[0].rules[0].backends[0].filters: 1 filters: the proxy does not implement filters yet"},
		{"fault", rule(func(r *policyv1.RouteRule) {
			r.Fault = &policyv1.Fault{Abort: &policyv1.FaultAbort{Response: &policyv1.FaultAbort_HttpStatus{HttpStatus: 503}, Percent: 10}}
		}), "routes[0].rules[0].fault: the proxy does not implement fault injection yet"},
		{"no backend", rule(func(r *policyv1.RouteRule) { r.Backends = nil }),
			"routes[0].rules[0].backends: 0 backends: the proxy does not implement it yet: …"},
		{"traffic split", rule(func(r *policyv1.RouteRule) {
			r.Backends = append(r.Backends, &policyv1.Backend{Authority: "web-v2.shop.svc.cluster.local:8080", Weight: 1})
		}), "routes[0].rules[0].backends: 2 backends: the proxy does not implement it yet: …"},
		{"another backend", rule(func(r *policyv1.RouteRule) { r.Backends[0].Authority = "web-v2.shop.svc.cluster.local:8080" }),
			`routes[0].rules[0].backends[0].authority: "web-v2.shop.svc.cluster.local:8080" is not the watched authority "web.shop.svc.cluster.local:8080": the proxy does not implement it yet: …`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, _, err := decodePolicy(testAuthority, marshal(t, tc.in))
			if err == nil {
				t.Fatalf("accepted as %s", show(rt))
			}
			if _, ok := errors.AsType[*fieldError](err); !ok {
				t.Errorf("error %T is not a *fieldError", err)
			}
			want, prefix := strings.CutSuffix(tc.want, "…")
			if got := err.Error(); prefix && !strings.HasPrefix(got, want) || !prefix && got != want {
				t.Fatalf("error\n %s\nwant\n %s", got, tc.want)
			}
		})
	}
}

// TestPolicyMalformed feeds bytes that are not a policy: each is an error
// naming where the bytes broke.
func TestPolicyMalformed(t *testing.T) {
	leakcheck.Check(t)
	retryBytes := func(raw []byte) []byte {
		// routes[0].rules[0].retry holding raw.
		rule := protowire.AppendTag(nil, fRuleRetry, protowire.BytesType)
		rule = protowire.AppendBytes(rule, raw)
		rt := protowire.AppendTag(nil, fRouteRules, protowire.BytesType)
		rt = protowire.AppendBytes(rt, rule)
		p := protowire.AppendTag(nil, fPolicyRoutes, protowire.BytesType)
		return protowire.AppendBytes(p, rt)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"truncated tag", []byte{0x80}, "OutboundPolicy: malformed protobuf: unexpected EOF"},
		{"length beyond the message", []byte{0x12, 0x10, 0x00}, "OutboundPolicy: malformed protobuf: unexpected EOF"},
		// protobuf's own messages vary their spaces (U+00A0 in some
		// builds) so that nobody matches them whole.
		{"field number 0", []byte{0x00, 0x00}, "OutboundPolicy: malformed protobuf: …"},
		{"garbage in retry", retryBytes([]byte{0x20, 0xff, 0xff}), "routes[0].rules[0].retry: malformed protobuf: unexpected EOF"},
		{"truncated packed grpc codes", retryBytes([]byte{0x1a, 0x01, 0x80}), "routes[0].rules[0].retry.grpc_codes: malformed protobuf: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodePolicy(testAuthority, tc.in)
			want, prefix := strings.CutSuffix(tc.want, "…")
			if err == nil || prefix && !strings.HasPrefix(err.Error(), want) || !prefix && err.Error() != want {
				t.Fatalf("error %v, want %s", err, tc.want)
			}
		})
	}
}

// TestPolicyUnknownFields: fields the proxy does not know, at every level
// it reads, and known fields with another wire type, are skipped.
func TestPolicyUnknownFields(t *testing.T) {
	leakcheck.Check(t)
	var unknown []byte
	unknown = protowire.AppendTag(unknown, 99, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 12345)
	unknown = protowire.AppendTag(unknown, 100, protowire.BytesType)
	unknown = protowire.AppendString(unknown, "from a newer controller")
	unknown = protowire.AppendTag(unknown, 101, protowire.Fixed32Type)
	unknown = protowire.AppendFixed32(unknown, 7)
	unknown = protowire.AppendTag(unknown, 102, protowire.Fixed64Type)
	unknown = protowire.AppendFixed64(unknown, 8)
	unknown = protowire.AppendTag(unknown, 103, protowire.StartGroupType)
	unknown = protowire.AppendTag(unknown, 1, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)
	unknown = protowire.AppendTag(unknown, 103, protowire.EndGroupType)
	// Known numbers with a wire type they do not have: skipped, as the
	// protobuf runtime skips them.
	// None of the fields the proxy reads is a fixed32.
	var wrongType []byte
	for n := protowire.Number(1); n <= 8; n++ {
		wrongType = protowire.AppendTag(wrongType, n, protowire.Fixed32Type)
		wrongType = protowire.AppendFixed32(wrongType, 9)
	}

	in := policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
		named(p)
		r.Timeouts = &policyv1.Timeouts{Request: dur(time.Second)}
		r.Retry = &policyv1.Retry{Limit: 2, HttpStatuses: []*policyv1.HttpStatusRange{{Min: 503}},
			Backoff: &policyv1.Backoff{Base: dur(time.Millisecond)},
			Budget:  &policyv1.RetryBudget{Percent: ptr[uint32](0)}}
		p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 3},
			SuccessRate: &policyv1.SuccessRate{MinSuccessRate: 0.8}}
	})
	want := &route.Route{Authority: testAuthority, Name: "shop/web-route",
		Timeouts:   timeout.Route{Request: time.Second},
		Retry:      retry.Policy{Attempts: 2, Codes: []int{503}, Backoff: time.Millisecond},
		Budget:     retry.BudgetConfig{Percent: ptr(0)},
		Breaker:    &breaker.Config{ConsecutiveFailures: 3, MinSuccessRate: 0.8},
		MaxBackoff: 0,
	}
	r := in.Routes[0].Rules[0]
	for _, m := range []proto.Message{in, in.Routes[0], in.Routes[0].Metadata, r, r.Matches[0], r.Matches[0].Path,
		r.Backends[0], r.Timeouts, r.Timeouts.Request, r.Retry, r.Retry.HttpStatuses[0], r.Retry.Backoff, r.Retry.Budget,
		in.Breaker, in.Breaker.ConsecutiveFailures, in.Breaker.SuccessRate} {
		m.ProtoReflect().SetUnknown(append(append([]byte(nil), unknown...), wrongType...))
	}
	got, _, err := decodePolicy(testAuthority, marshal(t, in))
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("route\n %s\nwant\n %s", show(got), show(want))
	}
}

// TestPolicyMerges: a message field sent twice merges, the last scalar
// wins and a repeated scalar may come unpacked, as protobuf decodes them.
func TestPolicyMerges(t *testing.T) {
	leakcheck.Check(t)
	first := policyWith(func(p *policyv1.OutboundPolicy, r *policyv1.RouteRule) {
		r.Retry = &policyv1.Retry{Limit: 2, GrpcCodes: []uint32{14}, Budget: &policyv1.RetryBudget{Percent: ptr[uint32](5)}}
		p.Breaker = &policyv1.Breaker{ConsecutiveFailures: &policyv1.ConsecutiveFailures{MaxFailures: 3}}
	})
	b := marshal(t, first)
	// A second breaker: merged into the first.
	second := marshal(t, &policyv1.OutboundPolicy{Breaker: &policyv1.Breaker{MinPenalty: dur(2 * time.Second)}})
	b = append(b, second...)
	got, _, err := decodePolicy(testAuthority, b)
	if err != nil {
		t.Fatal(err)
	}
	want := &breaker.Config{ConsecutiveFailures: 3, BaseEjection: 2 * time.Second}
	if !reflect.DeepEqual(got.Breaker, want) {
		t.Fatalf("merged breaker %+v, want %+v", got.Breaker, want)
	}

	// Unpacked grpc codes and a second limit inside the retry message.
	var retryMsg []byte
	for _, c := range []uint64{14, 4} {
		retryMsg = protowire.AppendTag(retryMsg, fRetryGRPCCodes, protowire.VarintType)
		retryMsg = protowire.AppendVarint(retryMsg, c)
	}
	retryMsg = protowire.AppendTag(retryMsg, fRetryLimit, protowire.VarintType)
	retryMsg = protowire.AppendVarint(retryMsg, 1)
	retryMsg = protowire.AppendTag(retryMsg, fRetryLimit, protowire.VarintType)
	retryMsg = protowire.AppendVarint(retryMsg, 4)
	var m policyv1.Retry
	if err := proto.Unmarshal(retryMsg, &m); err != nil || m.GetLimit() != 4 || len(m.GetGrpcCodes()) != 2 {
		t.Fatalf("the test's bytes are not what protobuf says: %v %v", &m, err)
	}
	// The rule carries them as they are: as unknown bytes, which
	// proto.Marshal writes out verbatim.
	in := defaultPolicy()
	in.Routes[0].Rules[0].ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, fRuleRetry, protowire.BytesType), retryMsg))
	got, _, err = decodePolicy(testAuthority, marshal(t, in))
	if err != nil {
		t.Fatal(err)
	}
	if got.Retry.Attempts != 4 || !reflect.DeepEqual(got.Retry.GRPCCodes, []int{14, 4}) {
		t.Fatalf("retry %+v, want 4 attempts on codes 14, 4", got.Retry)
	}
}
