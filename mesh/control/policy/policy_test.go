package policy

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
)

func newClient(t *testing.T) (policyv1.PolicyClient, *Server) {
	t.Helper()
	srv := NewServer(Config{})
	lis := bufconn.Listen(1 << 16)
	gs := grpc.NewServer()
	policyv1.RegisterPolicyServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return policyv1.NewPolicyClient(cc), srv
}

func TestWatchOutboundFirstMessage(t *testing.T) {
	c, _ := newClient(t)
	s, err := c.WatchOutbound(t.Context(), &policyv1.WatchOutboundRequest{Authority: "Web.Shop.:8080"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(p, DefaultOutbound("web.shop:8080")) {
		t.Fatalf("first message = %v", p)
	}
	rule := p.GetRoutes()[0].GetRules()[0]
	if p.GetAuthority() != "web.shop:8080" || rule.GetBackends()[0].GetAuthority() != "web.shop:8080" || rule.GetBackends()[0].GetWeight() != 1 ||
		rule.GetRetry() != nil || rule.GetTimeouts() != nil || p.GetBreaker() != nil ||
		p.GetBalancer().GetAlgorithm() != policyv1.BalancerAlgorithm_BALANCER_ALGORITHM_PEAK_EWMA ||
		p.GetRoutes()[0].GetMetadata().GetKind() != "default" {
		t.Errorf("default outbound policy is not the documented one: %v", p)
	}
}

func TestWatchInboundFirstMessage(t *testing.T) {
	c, srv := newClient(t)
	s, err := c.WatchInbound(t.Context(), &policyv1.WatchInboundRequest{Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if p.GetPort() != 8080 || p.GetDefaultAuthorization() != policyv1.DefaultAuthorization_DEFAULT_AUTHORIZATION_ALL_UNAUTHENTICATED {
		t.Fatalf("first message = %v", p)
	}
	srv.Close()
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("after Close: %v, want Unavailable", err)
	}
}

func TestInvalidRequests(t *testing.T) {
	c, _ := newClient(t)
	for _, auth := range []string{"", "web:0", "a b"} {
		s, err := c.WatchOutbound(t.Context(), &policyv1.WatchOutboundRequest{Authority: auth})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("WatchOutbound(%q): %v, want InvalidArgument", auth, err)
		}
	}
	for _, port := range []uint32{0, 65536} {
		s, err := c.WatchInbound(t.Context(), &policyv1.WatchInboundRequest{Port: port})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("WatchInbound(%d): %v, want InvalidArgument", port, err)
		}
	}
}
