// Package catest builds throwaway trust hierarchies for the tests of the
// packages built on package ca: the certificate managers, the Identity
// service, the proxies and the controller.
//
// Only tests may import it. It reports failures through a testing.TB
// instead of returning errors, and it must stay out of every binary (the
// sidecar's dependency closure is checked with go list -deps).
//
// Package ca's own tests build their hierarchy by hand: they are about
// building it.
package catest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// PKI is a development trust hierarchy: a trust anchor, an issuer it
// signed, a bundle holding the anchor, HMAC workload tokens and a CA over
// all of them. Each [New] makes a fresh anchor, so two PKIs do not trust
// each other.
type PKI struct {
	Anchor *ca.KeyPair
	Issuer *ca.KeyPair
	// Bundle holds Anchor alone.
	Bundle *spiffe.Bundle
	// TokenKey is the secret Tokens signs with, for a process under test
	// that must verify them itself (a --token-key-file).
	TokenKey []byte
	Tokens   *ca.HMACTokens
	// CA signs with Issuer, trusts Bundle and verifies Tokens, with the
	// default leaf lifetime.
	CA *ca.CA
}

// Options tunes [New]. The zero value uses package ca's defaults and the
// system clock.
type Options struct {
	// Now reads the clock for the anchor, the issuer, the tokens and the
	// CA. Nil means time.Now.
	Now func() time.Time
	// IssuerLifetime is the issuer's validity. Zero means
	// [ca.DefaultIssuerLifetime].
	IssuerLifetime time.Duration
}

// New builds a PKI for trustDomain, failing tb on any error.
func New(tb testing.TB, trustDomain string, o Options) *PKI {
	tb.Helper()
	p := &PKI{}
	var err error
	if p.Anchor, err = ca.NewAnchor(trustDomain, ca.Options{Now: o.Now}); err != nil {
		tb.Fatal(err)
	}
	if p.Issuer, err = ca.NewIssuer(p.Anchor, ca.Options{Now: o.Now, Lifetime: o.IssuerLifetime}); err != nil {
		tb.Fatal(err)
	}
	if p.Bundle, err = spiffe.NewBundle(trustDomain, p.Anchor.Cert); err != nil {
		tb.Fatal(err)
	}
	if p.TokenKey, err = ca.NewHMACKey(); err != nil {
		tb.Fatal(err)
	}
	if p.Tokens, err = ca.NewHMACTokens(p.TokenKey, o.Now); err != nil {
		tb.Fatal(err)
	}
	if p.CA, err = ca.New(ca.Config{Issuer: p.Issuer, Bundle: p.Bundle, Tokens: p.Tokens, Now: o.Now}); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TLSCertificate returns a certificate for id with a fresh P-256 key,
// issued by the CA without a CSR ([ca.CA.IssueServing]): its chain
// (leaf, then issuer), its key and its parsed leaf.
func (p *PKI) TLSCertificate(tb testing.TB, id spiffe.ID) *tls.Certificate {
	tb.Helper()
	key := newKey(tb)
	c, err := p.CA.IssueServing(key.Public(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Certificate{Certificate: c.Chain, PrivateKey: key, Leaf: c.Leaf}
}

// CSR returns a DER certificate signing request for id, as a proxy sends
// it: a fresh P-256 key and id as the only name.
func CSR(tb testing.TB, id spiffe.ID) []byte {
	tb.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, newKey(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}
