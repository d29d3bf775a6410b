package policyv1_test

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
)

// An outbound policy with one HTTPRoute: /api goes 90/10 to two versions,
// with retries of gateway errors under a budget and a 2 s request timeout.
// Everything unset takes the default documented on its field.
func Example() {
	p := &policyv1.OutboundPolicy{
		Authority: "web.shop.svc.cluster.local:8080",
		Routes: []*policyv1.Route{{
			Metadata: &policyv1.Metadata{
				Group: "gateway.networking.k8s.io", Kind: "HTTPRoute",
				Namespace: "shop", Name: "web-canary",
			},
			Rules: []*policyv1.RouteRule{{
				Matches: []*policyv1.RouteMatch{{
					Path: &policyv1.PathMatch{Kind: &policyv1.PathMatch_Prefix{Prefix: "/api"}},
				}},
				Backends: []*policyv1.Backend{
					{Authority: "web-v1.shop.svc.cluster.local:8080", Weight: 90},
					{Authority: "web-v2.shop.svc.cluster.local:8080", Weight: 10},
				},
				Retry: &policyv1.Retry{
					Conditions: []policyv1.RetryCondition{policyv1.RetryCondition_RETRY_CONDITION_GATEWAY_ERROR},
					Limit:      2,
					Budget:     &policyv1.RetryBudget{Ratio: 0.2, MinPerSecond: 10, Ttl: durationpb.New(10 * time.Second)},
				},
				Timeouts: &policyv1.Timeouts{Request: durationpb.New(2 * time.Second)},
			}},
		}},
		Balancer: &policyv1.Balancer{Algorithm: policyv1.BalancerAlgorithm_BALANCER_ALGORITHM_PEAK_EWMA},
	}

	rule := p.GetRoutes()[0].GetRules()[0]
	fmt.Println(rule.GetMatches()[0].GetPath().GetPrefix(), len(rule.GetBackends()), "backends")
	fmt.Println("request timeout", rule.GetTimeouts().GetRequest().AsDuration())
	fmt.Println("breaker set:", p.GetBreaker() != nil) // nil-safe getters: unset means the default
	// Output:
	// /api 2 backends
	// request timeout 2s
	// breaker set: false
}
