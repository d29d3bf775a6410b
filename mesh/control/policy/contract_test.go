package policy

import (
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// TestContractWithTheProxy: every route the controller can serve reaches
// the sidecar's decoder (mesh/proxy/control.PolicySource, hand-written
// protowire) as the same route.Route, field by field, over a real gRPC
// server. The routes file and the Policy API then give the proxy the same
// thing, which is what lets a scenario run either way.
func TestContractWithTheProxy(t *testing.T) {
	leakcheck.Check(t)
	n := func(v int) *int { return &v }
	const ns = "default/"
	routes := []route.Route{
		{Authority: "timeouts.default.svc:8080", Name: ns + "timeouts",
			Timeouts: timeout.Route{Request: 300 * time.Millisecond, BackendRequest: 100 * time.Millisecond}},
		{Authority: "retries.default.svc:8080", Name: ns + "retries",
			Timeouts: timeout.Route{BackendRequest: 50 * time.Millisecond},
			Retry: retry.Policy{Attempts: 4, Codes: []int{502, 503, 504}, GRPCCodes: []int{14, 4}, Backoff: 25 * time.Millisecond,
				NonIdempotent: true, MaxBodyBytes: 4096},
			MaxBackoff: 400 * time.Millisecond,
			Budget:     retry.BudgetConfig{Percent: n(0), Interval: 5 * time.Second, MinRetries: n(3), MinInterval: 2 * time.Second}},
		{Authority: "defaults.default.svc:8080", Name: ns + "defaults",
			Retry: retry.Policy{Attempts: 1, Codes: []int{503}}},
		{Authority: "breaker.default.svc:8080", Name: ns + "breaker",
			Breaker: &breaker.Config{ConsecutiveFailures: 5, MinSuccessRate: 0.9, Window: 5 * time.Second, MinRequests: 30,
				BaseEjection: 500 * time.Millisecond, MaxEjection: 2 * time.Second}},
		{Authority: "rate.default.svc:8080", Name: ns + "rate",
			Breaker: &breaker.Config{ConsecutiveFailures: -1, MinSuccessRate: 0.5}},
		{Authority: "breaker-default.default.svc:8080", Name: ns + "breaker-default",
			Breaker: &breaker.Config{}},
	}
	srv := NewServer(Config{})
	if err := srv.SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	policyv1.RegisterPolicyServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(func() { srv.Close(); gs.Stop() })
	conn := control.NewConn(lis.Addr().String(), control.ConnConfig{})
	t.Cleanup(func() { conn.Close() })
	src := &control.PolicySource{Conn: conn}

	for _, want := range append(routes, route.Route{Authority: "plain.default.svc:8080"}) {
		t.Run(want.Authority, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			got := make(chan *route.Route, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				src.Watch(ctx, want.Authority, func(r *route.Route) {
					select {
					case got <- r:
					default:
					}
					cancel()
				})
			}()
			var r *route.Route
			select {
			case r = <-got:
			case <-time.After(time.Minute):
				t.Fatal("no policy from the controller") // a generous bound on a hang, not a timing claim
			}
			cancel()
			<-done
			if want.Name == "" { // no route: the controller's default policy
				if r != nil {
					t.Fatalf("default policy decoded as %+v, want no route", *r)
				}
				return
			}
			if r == nil {
				t.Fatal("decoded no route")
			}
			if want.Breaker != nil && want.Breaker.ConsecutiveFailures == 0 {
				// The controller states breaker.Config's default, 7, that
				// the zero value means.
				b := *want.Breaker
				b.ConsecutiveFailures = breaker.DefaultConsecutiveFailures
				want.Breaker = &b
			}
			if !reflect.DeepEqual(*r, want) {
				t.Errorf("through the Policy API\n got %+v\nwant %+v", *r, want)
			}
		})
	}
	if src.Rejected() != 0 {
		t.Errorf("the proxy rejected %d of the controller's policies", src.Rejected())
	}
}
