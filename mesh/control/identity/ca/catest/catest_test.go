package catest_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

func TestPKI(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	p := catest.New(t, "cluster.local", catest.Options{Now: clock, IssuerLifetime: 2 * time.Hour})
	if got, want := p.Issuer.Cert.NotAfter, now.Add(2*time.Hour); !got.Equal(want) {
		t.Errorf("issuer NotAfter = %v, want %v (Options.Now plus IssuerLifetime)", got, want)
	}
	web := spiffe.MustNew("cluster.local", "shop", "web")

	tok, err := p.Tokens.Issue(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.CA.Certify(t.Context(), catest.CSR(t, web), web.String(), tok)
	if err != nil {
		t.Fatalf("Certify a CSR with a token of the PKI: %v", err)
	}
	if !c.NotAfter.Equal(p.Issuer.Cert.NotAfter) {
		t.Errorf("leaf NotAfter = %v, want it capped at the issuer's %v", c.NotAfter, p.Issuer.Cert.NotAfter)
	}

	cert := p.TLSCertificate(t, web)
	chain := make([]*x509.Certificate, len(cert.Certificate))
	for i, der := range cert.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := p.Bundle.Verify(chain, now, x509.ExtKeyUsageServerAuth); err != nil || got != web {
		t.Errorf("TLSCertificate verifies as %v, %v; want %v", got, err, web)
	}
	if _, err := catest.New(t, "cluster.local", catest.Options{Now: clock}).Bundle.Verify(chain, now, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("another PKI trusts this one's certificate")
	}
}
