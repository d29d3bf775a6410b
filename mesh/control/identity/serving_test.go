package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// testClock is a settable clock shared by a CA and its serving
// certificate.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestServingCertRenewal(t *testing.T) {
	clock := &testClock{t: time.Now()}
	p := catest.New(t, "cluster.local", catest.Options{Now: clock.Now})
	id := spiffe.ControlPlaneID("cluster.local")
	sc, err := NewServingCert(ServingConfig{CA: p.CA, ID: id, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	get := func() *tls.Certificate {
		t.Helper()
		c, err := sc.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := get()
	chain := make([]*x509.Certificate, len(first.Certificate))
	for i, der := range first.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := p.Bundle.Verify(chain, clock.Now(), x509.ExtKeyUsageServerAuth); err != nil || got != id {
		t.Fatalf("serving certificate verifies as %v, %v; want %s", got, err, id)
	}
	lifetime := first.Leaf.NotAfter.Sub(clock.Now())

	clock.Advance(lifetime * 69 / 100)
	if get() != first {
		t.Fatal("renewed before 70 % of the lifetime")
	}
	clock.Advance(lifetime * 2 / 100)
	second := get()
	if second == first || second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("not renewed after 70 % of the lifetime")
	}
	if get() != second {
		t.Fatal("renewed again at once")
	}

	// An issuer rotation: the next handshake gets a leaf of the new issuer.
	issuer2, err := ca.NewIssuer(p.Anchor, ca.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CA.SetIssuer(issuer2); err != nil {
		t.Fatal(err)
	}
	third := get()
	if err := third.Leaf.CheckSignatureFrom(issuer2.Cert); err != nil {
		t.Fatalf("after the issuer rotation the serving certificate is not signed by the new issuer: %v", err)
	}
	if get() != third {
		t.Fatal("renewed again after the rotation")
	}
}

// TestServingCertIssuerExpired: when the issuer can no longer sign, the
// current certificate is presented until it expires, then handshakes fail
// saying why.
func TestServingCertIssuerExpired(t *testing.T) {
	clock := &testClock{t: time.Now()}
	p := catest.New(t, "cluster.local", catest.Options{Now: clock.Now, IssuerLifetime: 2 * time.Hour}) // leaves are capped at the issuer's 2 h
	sc, err := NewServingCert(ServingConfig{CA: p.CA, ID: spiffe.ControlPlaneID("cluster.local"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	first, err := sc.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(first.Leaf.NotAfter.Sub(clock.Now()) - time.Second) // due, but the issuer expires with the leaf
	c, err := sc.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatal("a leaf outlives its issuer")
	}
	clock.Advance(time.Hour)
	if _, err := sc.Certificate(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("past the issuer's expiry: %v, want an error saying it expired", err)
	}
}

func TestServingCertConfig(t *testing.T) {
	clock := &testClock{t: time.Now()}
	authority := catest.New(t, "cluster.local", catest.Options{Now: clock.Now}).CA
	for _, tc := range []struct {
		name string
		cfg  ServingConfig
		want string
	}{
		{"no CA", ServingConfig{ID: spiffe.ControlPlaneID("cluster.local")}, "CA is nil"},
		{"no ID", ServingConfig{CA: authority}, "invalid SPIFFE ID"},
		{"other trust domain", ServingConfig{CA: authority, ID: spiffe.ControlPlaneID("example.org")}, `trust domain "example.org"`},
		{"renew at 1", ServingConfig{CA: authority, ID: spiffe.ControlPlaneID("cluster.local"), RenewAt: 1}, "strictly between 0 and 1"},
	} {
		if _, err := NewServingCert(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestServingTLS runs handshakes between the serving configuration and
// the proxies' control-plane client configuration: without a client
// certificate, with one the CA issued, and with one from another anchor.
func TestServingTLS(t *testing.T) {
	leakcheck.Check(t)
	clock := &testClock{t: time.Now()}
	p := catest.New(t, "cluster.local", catest.Options{Now: clock.Now})
	ctl := spiffe.ControlPlaneID("cluster.local")
	sc, err := NewServingCert(ServingConfig{CA: p.CA, ID: ctl, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	web := spiffe.MustNew("cluster.local", "shop", "web")
	other := catest.New(t, "cluster.local", catest.Options{Now: clock.Now})

	// handshake returns how many certificates the client presented and
	// each side's error.
	handshake := func(clientCfg *tls.Config) (presented int, serverErr, clientErr error) {
		// Loopback TCP, not net.Pipe: a side sending an alert must not
		// block until the other reads it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c2, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		c1, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			srv := tls.Server(c1, sc.TLSConfig())
			err := srv.HandshakeContext(ctx)
			if err == nil {
				// The client's byte: neither side closes before the
				// other is done with the connection.
				_, err = srv.Read(make([]byte, 1))
				presented = len(srv.ConnectionState().PeerCertificates)
			}
			c1.Close()
			done <- err
		}()
		cli := tls.Client(c2, clientCfg)
		clientErr = cli.HandshakeContext(ctx)
		if clientErr == nil {
			_, clientErr = cli.Write([]byte("x"))
		}
		c2.Close()
		serverErr = <-done
		return presented, serverErr, clientErr
	}
	trust := func() *spiffe.Bundle { return p.Bundle }

	for _, tc := range []struct {
		name      string
		cert      *tls.Certificate
		presented int
	}{
		{"no client certificate", nil, 0},
		{"client certificate from the CA", p.TLSCertificate(t, web), 2},
	} {
		cert := func() *tls.Certificate { return tc.cert }
		presented, srvErr, cliErr := handshake(certs.ControlPlaneTLSConfig(ctl, trust, cert))
		if srvErr != nil || cliErr != nil || presented != tc.presented {
			t.Errorf("%s: server %v, client %v, %d certificates presented; want both to succeed with %d", tc.name, srvErr, cliErr, presented, tc.presented)
		}
	}

	// A certificate of another anchor, presented regardless: the server
	// refuses it.
	foreign := other.TLSCertificate(t, web)
	cfg := certs.ControlPlaneTLSConfig(ctl, trust, nil)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return foreign, nil }
	if _, srvErr, _ := handshake(cfg); srvErr == nil || !strings.Contains(srvErr.Error(), "client certificate rejected") {
		t.Errorf("foreign client certificate: server %v, want it rejected", srvErr)
	}
	// The proxies' configuration does not present a certificate its own
	// bundle does not trust (nor an expired one): the handshake succeeds
	// without one, and the token authenticates the Identity calls.
	if presented, srvErr, cliErr := handshake(certs.ControlPlaneTLSConfig(ctl, trust, func() *tls.Certificate { return foreign })); srvErr != nil || cliErr != nil || presented != 0 {
		t.Errorf("untrusted own certificate: server %v, client %v, %d certificates presented; want success with none", srvErr, cliErr, presented)
	}
	// A client trusting another anchor refuses the server.
	if _, srvErr, cliErr := handshake(certs.ControlPlaneTLSConfig(ctl, func() *spiffe.Bundle { return other.Bundle }, func() *tls.Certificate { return foreign })); cliErr == nil || srvErr == nil {
		t.Errorf("a client trusting another anchor connected: server %v, client %v", srvErr, cliErr)
	} else if !strings.Contains(cliErr.Error(), "control plane: server certificate rejected") {
		t.Errorf("a client trusting another anchor: %v, want the server's certificate rejected", cliErr)
	}
	// A client expecting another identity.
	want := spiffe.MustNew("cluster.local", "skiff", "other")
	if _, _, cliErr := handshake(certs.ControlPlaneTLSConfig(want, trust, nil)); cliErr == nil ||
		!strings.Contains(cliErr.Error(), want.String()) || !strings.Contains(cliErr.Error(), ctl.String()) {
		t.Errorf("wrong expected identity: %v, want an error naming %s and %s", cliErr, want, ctl)
	}
}
