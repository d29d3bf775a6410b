package access

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
	"github.com/skiff-mesh/skiff/mesh/control/identity"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/control/policy"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

const auth = "web.shop.svc.cluster.local:8080"

var controlID = spiffe.ControlPlaneID("cluster.local")

// env is a controller-like gRPC server on 127.0.0.1:0 with Policy (the
// watches) and Identity (Certify, public) behind a Guard.
type env struct {
	pki     *catest.PKI
	guard   *Guard
	metrics *prometheus.Registry
	addr    string
}

func newEnv(t *testing.T, cfg Config, useTLS bool) *env {
	t.Helper()
	e := &env{pki: catest.New(t, "cluster.local", catest.Options{}), metrics: prometheus.NewRegistry()}
	if cfg.Bundle == nil {
		cfg.Bundle = func() *spiffe.Bundle { return e.pki.Bundle }
	}
	cfg.Public = []string{identityv1.Identity_Certify_FullMethodName}
	cfg.Registerer = e.metrics
	var err error
	if e.guard, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	var tc *tls.Config
	if useTLS {
		serving := e.pki.TLSCertificate(t, controlID)
		// No VerifyConnection: what is verified here is the guard's own
		// check, which must hold even when the TLS configuration does not
		// verify anything.
		tc = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*serving}, ClientAuth: tls.RequestClientCert}
	}
	gs := grpc.NewServer(e.guard.ServerOptions(tc)...)
	pol := policy.NewServer(policy.Config{})
	policyv1.RegisterPolicyServer(gs, pol)
	ids, err := identity.NewServer(identity.Config{CA: e.pki.CA})
	if err != nil {
		t.Fatal(err)
	}
	identityv1.RegisterIdentityServer(gs, ids)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() { gs.Serve(lis); close(served) }()
	t.Cleanup(func() {
		pol.Close()
		gs.Stop()
		<-served
	})
	return e
}

// dial connects with creds; each call is a new connection.
func (e *env) dial(t *testing.T, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// meshCreds verify the controller as a proxy does and present cert (nil:
// none).
func (e *env) meshCreds(cert *tls.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(certs.ControlPlaneTLSConfig(controlID,
		func() *spiffe.Bundle { return e.pki.Bundle },
		func() *tls.Certificate { return cert }))
}

// watch opens a WatchOutbound and waits for its first message.
func watch(ctx context.Context, cc *grpc.ClientConn) error {
	s, err := policyv1.NewPolicyClient(cc).WatchOutbound(ctx, &policyv1.WatchOutboundRequest{Authority: auth})
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

func certify(t *testing.T, e *env, cc *grpc.ClientConn) error {
	t.Helper()
	web := spiffe.MustNew("cluster.local", "shop", "web")
	tok, err := e.pki.Tokens.Issue(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = identityv1.NewIdentityClient(cc).Certify(t.Context(), &identityv1.CertifyRequest{Identity: web.String(), Token: []byte(tok), Csr: catest.CSR(t, web)})
	return err
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msgs ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: %v, want %s", what, err, code)
		return
	}
	for _, m := range msgs {
		if !strings.Contains(status.Convert(err).Message(), m) {
			t.Errorf("%s: %v, want a message containing %q", what, err, m)
		}
	}
}

// TestAuthentication: before the guard, a client without a certificate
// was served endpoints and policy; now Destination and Policy need a
// verified mesh certificate, and Certify does not.
func TestAuthentication(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, Config{}, true)
	web := e.pki.TLSCertificate(t, spiffe.MustNew("cluster.local", "shop", "web"))

	anon := e.dial(t, e.meshCreds(nil))
	wantCode(t, "watch without a client certificate", watch(t.Context(), anon), codes.Unauthenticated,
		"/skiff.policy.v1.Policy/WatchOutbound needs a verified mesh client certificate", "presented no client certificate", "--identity-id")
	if err := certify(t, e, anon); err != nil {
		t.Errorf("Certify without a client certificate (token only): %v", err)
	}

	if err := watch(t.Context(), e.dial(t, e.meshCreds(web))); err != nil {
		t.Errorf("watch with a mesh certificate: %v", err)
	}

	// A certificate from another root: the guard verifies the chain itself.
	other := catest.New(t, "cluster.local", catest.Options{})
	forged := other.TLSCertificate(t, spiffe.MustNew("cluster.local", "shop", "web"))
	raw := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{*forged}})
	wantCode(t, "watch with a certificate from another root", watch(t.Context(), e.dial(t, raw)), codes.Unauthenticated,
		"client certificate was rejected", "none of the 1 anchors")

	// Plaintext to a TLS server never gets that far.
	if err := watch(t.Context(), e.dial(t, insecure.NewCredentials())); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext client of a TLS server: %v, want Unavailable", err)
	}

	if got := testutil.ToFloat64(e.guard.unauthenticated.WithLabelValues(policyv1.Policy_WatchOutbound_FullMethodName)); got != 2 {
		t.Errorf("%s{method=WatchOutbound} = %v, want 2", MetricUnauthenticated, got)
	}
}

// TestPlaintext: --plaintext serves everyone, as documented; without it a
// plaintext connection is refused like one without a certificate.
func TestPlaintext(t *testing.T) {
	leakcheck.Check(t)
	open := newEnv(t, Config{AllowPlaintext: true}, false)
	if err := watch(t.Context(), open.dial(t, insecure.NewCredentials())); err != nil {
		t.Errorf("AllowPlaintext: %v", err)
	}
	closed := newEnv(t, Config{}, false)
	cc := closed.dial(t, insecure.NewCredentials())
	wantCode(t, "plaintext without AllowPlaintext", watch(t.Context(), cc), codes.Unauthenticated, "the connection is plaintext")
	if err := certify(t, closed, cc); err != nil {
		t.Errorf("Certify in plaintext: %v", err)
	}
}

// TestWatchCaps: one connection could open 5,000 watches; now the
// per-connection and the per-identity caps refuse the excess with
// ResourceExhausted, and a freed slot can be used again.
func TestWatchCaps(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, Config{MaxWatchesPerConnection: 3, MaxWatchesPerIdentity: 5}, true)
	web := e.pki.TLSCertificate(t, spiffe.MustNew("cluster.local", "shop", "web"))
	db := e.pki.TLSCertificate(t, spiffe.MustNew("cluster.local", "shop", "db"))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	c1 := e.dial(t, e.meshCreds(web))
	first, cancelFirst := context.WithCancel(ctx)
	for i := range 3 {
		wctx := ctx
		if i == 0 {
			wctx = first
		}
		if err := watch(wctx, c1); err != nil {
			t.Fatalf("watch %d on the first connection: %v", i+1, err)
		}
	}
	wantCode(t, "4th watch on one connection", watch(ctx, c1), codes.ResourceExhausted,
		"this connection has 3 watches open", "--max-watches-per-connection", "is 3")

	c2 := e.dial(t, e.meshCreds(web))
	for i := range 2 {
		if err := watch(ctx, c2); err != nil {
			t.Fatalf("watch %d on the second connection: %v", i+1, err)
		}
	}
	wantCode(t, "6th watch of one identity", watch(ctx, c2), codes.ResourceExhausted,
		"identity spiffe://cluster.local/ns/shop/sa/web has 5 watches open", "--max-watches-per-identity")
	// Another identity is not affected.
	if err := watch(ctx, e.dial(t, e.meshCreds(db))); err != nil {
		t.Errorf("another identity: %v", err)
	}
	// A watch that ends frees its slot on both counts.
	cancelFirst()
	testwait.For(t, "the cancelled watch to be counted out", func() (bool, error) {
		w, _ := e.guard.Watches()
		return w == 5, fmt.Errorf("%d watches open", w)
	})
	if err := watch(ctx, c1); err != nil {
		t.Errorf("a watch after one ended: %v", err)
	}
	for limit, want := range map[string]float64{"connection": 1, "identity": 1} {
		if got := testutil.ToFloat64(e.guard.refused.WithLabelValues(limit)); got != want {
			t.Errorf("%s{limit=%q} = %v, want %v", MetricWatchesRefused, limit, got, want)
		}
	}
	if w, ids := e.guard.Watches(); w != 6 || ids != 2 {
		t.Errorf("Watches() = %d, %d; want 6 watches of 2 identities", w, ids)
	}
}

// TestWatchStateFreed opens many watches from several identities, cancels
// them, and checks that the guard's counts, its identity table and the
// goroutines return to where they started, and that the memory is handed
// back once.
func TestWatchStateFreed(t *testing.T) {
	leakcheck.Check(t)
	const identities, perConn = 4, 100
	var releases atomic.Int32
	e := newEnv(t, Config{Release: func() { releases.Add(1) }, ReleaseAfter: identities * perConn, ReleaseInterval: time.Millisecond}, true)
	var ccs []*grpc.ClientConn
	for i := range identities {
		cert := e.pki.TLSCertificate(t, spiffe.MustNew("cluster.local", "shop", fmt.Sprintf("web-%d", i)))
		ccs = append(ccs, e.dial(t, e.meshCreds(cert)))
	}
	// Connections up before counting goroutines: they stay.
	for _, cc := range ccs {
		if err := certify(t, e, cc); err != nil {
			t.Fatal(err)
		}
	}
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	errs := make(chan error, identities*perConn)
	for _, cc := range ccs {
		for range perConn {
			wg.Go(func() {
				if err := watch(ctx, cc); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if w, ids := e.guard.Watches(); w != identities*perConn || ids != identities {
		t.Fatalf("open: Watches() = %d, %d; want %d, %d", w, ids, identities*perConn, identities)
	}
	if releases.Load() != 0 {
		t.Errorf("memory released while the watches were open")
	}
	cancel()
	testwait.For(t, "the guard's counts and the goroutines back to their start", func() (bool, error) {
		w, ids := e.guard.Watches()
		g := runtime.NumGoroutine()
		return w == 0 && ids == 0 && g <= base, fmt.Errorf("%d watches of %d identities, %d goroutines (%d before)", w, ids, g, base)
	})
	if n := len(e.guard.byID); n != 0 {
		t.Errorf("identity table holds %d entries", n)
	}
	testwait.For(t, "one memory release", func() (bool, error) { return releases.Load() == 1, nil })
	if got := testutil.ToFloat64(e.guard.watchesGauge); got != 0 {
		t.Errorf("%s = %v after every watch ended", MetricWatches, got)
	}
}

// TestReleaseRateLimited: two falls within ReleaseInterval make two
// releases, the second one after the interval.
func TestReleaseRateLimited(t *testing.T) {
	released := make(chan time.Time, 4)
	g, err := New(Config{Release: func() { released <- time.Now() }, ReleaseAfter: 2, ReleaseInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ci := &connInfo{AuthInfo: credentials.TLSInfo{}, id: spiffe.MustNew("cluster.local", "shop", "web")}
	cycle := func() {
		for range 3 {
			if err := g.admit(ci, "/w"); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			g.done(ci)
		}
	}
	cycle()
	first := <-released
	cycle()
	second := <-released
	if d := second.Sub(first); d < 150*time.Millisecond {
		t.Errorf("second release %v after the first, want at least the interval", d)
	}
	if err := g.admit(ci, "/w"); err != nil { // a fall of one: below ReleaseAfter
		t.Fatal(err)
	}
	g.done(ci)
	select {
	case <-released:
		t.Error("released after a fall smaller than ReleaseAfter")
	case <-time.After(300 * time.Millisecond): // nothing must happen: waited for the interval to pass
	}
}

func TestNewRejectsNegative(t *testing.T) {
	for _, cfg := range []Config{{MaxWatchesPerConnection: -1}, {MaxWatchesPerIdentity: -1}, {ReleaseAfter: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a negative value", cfg)
		}
	}
	if _, err := New(Config{Registerer: prometheus.NewRegistry()}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	New(Config{Registerer: reg})
	if _, err := New(Config{Registerer: reg}); err == nil {
		t.Error("registering the metrics twice was not an error")
	}
}
