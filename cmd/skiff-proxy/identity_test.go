package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	"github.com/skiff-mesh/skiff/mesh/control/access"
	"github.com/skiff-mesh/skiff/mesh/control/destination"
	"github.com/skiff-mesh/skiff/mesh/control/identity"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
	"github.com/skiff-mesh/skiff/mesh/proxy"
	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

const testAuthority = "db.shop.svc.cluster.local:5432"

// controller is the control plane as skiff-controller all serves it:
// Identity, Destination, the access guard, TLS from its own CA.
type controller struct {
	pki     *catest.PKI
	addr    string
	metrics *prometheus.Registry
}

func startController(t *testing.T) *controller {
	t.Helper()
	c := &controller{pki: catest.New(t, "cluster.local", catest.Options{}), metrics: prometheus.NewRegistry()}
	reg := &registry.Registry{}
	if err := reg.Set(testAuthority, []discovery.Endpoint{{Addr: "127.0.0.9:5432", Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	sc, err := identity.NewServingCert(identity.ServingConfig{CA: c.pki.CA, ID: spiffe.ControlPlaneID("cluster.local")})
	if err != nil {
		t.Fatal(err)
	}
	guard, err := access.New(access.Config{Bundle: c.pki.CA.Bundle, Public: []string{identityv1.Identity_Certify_FullMethodName}, Registerer: c.metrics})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(guard.ServerOptions(sc.TLSConfig())...)
	ids, err := identity.NewServer(identity.Config{CA: c.pki.CA})
	if err != nil {
		t.Fatal(err)
	}
	identityv1.RegisterIdentityServer(gs, ids)
	dst, err := destination.NewServer(destination.Config{Source: reg})
	if err != nil {
		t.Fatal(err)
	}
	destinationv1.RegisterDestinationServer(gs, dst)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() { gs.Serve(lis); close(served) }()
	t.Cleanup(func() {
		dst.Close()
		gs.Stop()
		<-served
	})
	return c
}

func (c *controller) unauthenticated(t *testing.T) float64 {
	t.Helper()
	mfs, err := c.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == access.MetricUnauthenticated {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestProxyIdentityAgainstAuthenticatingController: a proxy started with
// --identity-id obtains its certificate (without one: the token
// authenticates it), then opens its Destination watches presenting it;
// the controller never has to refuse it.
func TestProxyIdentityAgainstAuthenticatingController(t *testing.T) {
	leakcheck.Check(t)
	c := startController(t)
	dir := t.TempDir()
	web := spiffe.MustNew("cluster.local", "shop", "web")
	tok, err := c.pki.Tokens.Issue(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile, anchorsFile := filepath.Join(dir, "token"), filepath.Join(dir, "anchors.pem")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(anchorsFile, spiffe.EncodeCertificatesPEM(c.pki.Anchor.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := identityFlags{destinationAddr: c.addr, id: web.String(), tokenFile: tokenFile, anchorsFile: anchorsFile, anchorsPoll: time.Second}
	var cfg proxy.Config
	if err := f.apply(ctx, &cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	snaps := make(chan endpoint.Snapshot, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cfg.Endpoints.Watch(ctx, testAuthority, func(s endpoint.Snapshot) { snaps <- s })
	}()
	defer func() { cancel(); <-done }()
	select {
	case s := <-snaps:
		if len(s.Endpoints) != 1 || s.Endpoints[0].Addr != "127.0.0.9:5432" {
			t.Errorf("snapshot %+v", s)
		}
	case <-time.After(testwait.Timeout):
		t.Fatalf("no snapshot within %v (connect failures: %d)", testwait.Timeout, f.dst.ConnectFailures())
	}
	if n := c.unauthenticated(t); n != 0 {
		t.Errorf("the controller refused %v calls of the proxy as unauthenticated", n)
	}
}

// TestDestinationWaitsForCertificate: a Destination watch opened before
// the proxy has a certificate does not connect without one (a connection
// without a certificate would be refused and stay in the pool); it
// retries, and connects presenting the certificate once there is one.
func TestDestinationWaitsForCertificate(t *testing.T) {
	leakcheck.Check(t)
	c := startController(t)
	var cert atomic.Pointer[tls.Certificate]
	tc := certs.ControlPlaneTLSConfig(spiffe.ControlPlaneID("cluster.local"),
		func() *spiffe.Bundle { return c.pki.Bundle }, cert.Load)
	conn := control.NewConn(c.addr, control.ConnConfig{TLS: requireClientCert(tc)})
	defer conn.Close()
	src := &control.DestinationSource{Conn: conn, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	snaps := make(chan endpoint.Snapshot, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Watch(ctx, testAuthority, func(s endpoint.Snapshot) { snaps <- s })
	}()
	defer func() { cancel(); <-done }()
	testwait.For(t, "attempts without a certificate to fail", func() (bool, error) { return src.ConnectFailures() >= 3, nil })
	if n := c.unauthenticated(t); n != 0 {
		t.Errorf("a connection without a certificate reached the controller: %v calls refused", n)
	}
	cert.Store(c.pki.TLSCertificate(t, spiffe.MustNew("cluster.local", "shop", "web")))
	select {
	case <-snaps:
	case <-time.After(testwait.Timeout):
		t.Fatalf("no snapshot within %v once the certificate was there", testwait.Timeout)
	}
	if n := c.unauthenticated(t); n != 0 {
		t.Errorf("the controller refused %v calls as unauthenticated", n)
	}
}

// TestDestinationNeedsIdentity: a proxy without an identity cannot use a
// controller that authenticates; saying so at start-up beats a watch that
// fails forever.
func TestDestinationNeedsIdentity(t *testing.T) {
	err := run(t.Context(), []string{"--destination-addr", "127.0.0.1:1", "--inbound-addr", "-", "--outbound-addr", "-", "--admin-addr", "-"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--identity-id") || !strings.Contains(err.Error(), "--control-plane-plaintext") {
		t.Errorf("--destination-addr without --identity-id: %v, want an error naming --identity-id and --control-plane-plaintext", err)
	}
}
