package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

type env struct {
	tokens  *ca.HMACTokens
	metrics *prometheus.Registry
	srv     *Server
	client  identityv1.IdentityClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	p := catest.New(t, "cluster.local", catest.Options{})
	e := &env{tokens: p.Tokens, metrics: prometheus.NewRegistry()}
	srv, err := NewServer(Config{CA: p.CA, Registerer: e.metrics})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	lis := bufconn.Listen(1 << 16)
	gs := grpc.NewServer()
	identityv1.RegisterIdentityServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	e.client = identityv1.NewIdentityClient(cc)
	return e
}

func (e *env) token(t *testing.T, id spiffe.ID) []byte {
	t.Helper()
	tok, err := e.tokens.Issue(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(tok)
}

func TestCertify(t *testing.T) {
	e := newEnv(t)
	id := spiffe.MustNew("cluster.local", "shop", "web")
	resp, err := e.client.Certify(t.Context(), &identityv1.CertifyRequest{
		Identity: id.String(), Token: e.token(t, id), Csr: catest.CSR(t, id),
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetIntermediateCertificates()) != 1 || len(resp.GetTrustAnchors()) != 1 {
		t.Fatalf("%d intermediates, %d anchors; want 1 and 1", len(resp.GetIntermediateCertificates()), len(resp.GetTrustAnchors()))
	}
	inter, err := x509.ParseCertificate(resp.GetIntermediateCertificates()[0])
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := x509.ParseCertificate(resp.GetTrustAnchors()[0])
	if err != nil {
		t.Fatal(err)
	}
	// The proxy's view: the returned anchors verify the returned chain.
	bundle, err := spiffe.NewBundle("cluster.local", anchor)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bundle.Verify([]*x509.Certificate{leaf, inter}, time.Now(), x509.ExtKeyUsageServerAuth)
	if err != nil || got != id {
		t.Fatalf("verify: %v %v, want %v", got, err, id)
	}
	if !resp.GetValidUntil().AsTime().Equal(leaf.NotAfter) {
		t.Errorf("valid_until %v, leaf NotAfter %v", resp.GetValidUntil().AsTime(), leaf.NotAfter)
	}
	if got := testutil.ToFloat64(e.srv.requests.WithLabelValues("OK")); got != 1 {
		t.Errorf("skiff_identity_certify_total{code=OK} = %v", got)
	}
	if n, err := testutil.GatherAndCount(e.metrics, "skiff_identity_issuer_expiry_timestamp_seconds"); err != nil || n != 1 {
		t.Errorf("issuer expiry gauge: %d series, %v", n, err)
	}
}

func TestCertifyRejections(t *testing.T) {
	e := newEnv(t)
	web := spiffe.MustNew("cluster.local", "shop", "web")
	db := spiffe.MustNew("cluster.local", "shop", "db")
	otherKey, _ := ca.NewHMACKey()
	forger, _ := ca.NewHMACTokens(otherKey, nil)
	forged, _ := forger.Issue(web, time.Hour)
	good := catest.CSR(t, web)
	tests := []struct {
		name string
		req  *identityv1.CertifyRequest
		code codes.Code
		msg  string
	}{
		{"no identity", &identityv1.CertifyRequest{Token: e.token(t, web), Csr: good}, codes.InvalidArgument, "identity is required"},
		{"not a SPIFFE ID", &identityv1.CertifyRequest{Identity: "web", Token: e.token(t, web), Csr: good}, codes.InvalidArgument, "invalid requested identity"},
		{"no token", &identityv1.CertifyRequest{Identity: web.String(), Csr: good}, codes.Unauthenticated, "token is required"},
		{"forged token", &identityv1.CertifyRequest{Identity: web.String(), Token: []byte(forged), Csr: good}, codes.Unauthenticated, "invalid token"},
		{"garbage token", &identityv1.CertifyRequest{Identity: web.String(), Token: []byte("nope"), Csr: good}, codes.Unauthenticated, "invalid token"},
		{"token of another identity", &identityv1.CertifyRequest{Identity: web.String(), Token: e.token(t, db), Csr: good}, codes.PermissionDenied, "identity mismatch"},
		{"no CSR", &identityv1.CertifyRequest{Identity: web.String(), Token: e.token(t, web)}, codes.InvalidArgument, "csr is required"},
		{"bad CSR", &identityv1.CertifyRequest{Identity: web.String(), Token: e.token(t, web), Csr: []byte("not DER")}, codes.InvalidArgument, "malformed CSR"},
		{"CSR of another identity", &identityv1.CertifyRequest{Identity: web.String(), Token: e.token(t, web), Csr: catest.CSR(t, db)}, codes.PermissionDenied, "identity mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.Certify(t.Context(), tt.req)
			if status.Code(err) != tt.code {
				t.Fatalf("Certify: %v, want %v", err, tt.code)
			}
			if !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Errorf("message %q does not contain %q", status.Convert(err).Message(), tt.msg)
			}
		})
	}
}

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{&ca.RejectError{Reason: ca.ErrMalformedCSR}, codes.InvalidArgument},
		{&ca.RejectError{Reason: ca.ErrIdentityMismatch}, codes.PermissionDenied},
		{&ca.RejectError{Reason: ca.ErrExpiredToken}, codes.Unauthenticated},
		{fmt.Errorf("verify: %w", ca.ErrVerifierUnavailable), codes.Unavailable},
		{&ca.RejectError{Reason: ca.ErrIssuerExpired}, codes.FailedPrecondition},
		{fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		if got := Code(tt.err); got != tt.want {
			t.Errorf("Code(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestNewServerNeedsCA(t *testing.T) {
	if _, err := NewServer(Config{}); err == nil {
		t.Fatal("NewServer without a CA: no error")
	}
}
