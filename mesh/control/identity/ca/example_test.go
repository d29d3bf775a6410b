package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// What `skiff install` and the identity service do: make the hierarchy,
// then certify a workload that proves its identity with a token.
func Example() {
	anchor, _ := ca.NewAnchor("cluster.local", ca.Options{})
	issuer, _ := ca.NewIssuer(anchor, ca.Options{})
	bundle, _ := spiffe.NewBundle("cluster.local", anchor.Cert)
	key, _ := ca.NewHMACKey()
	tokens, _ := ca.NewHMACTokens(key, nil) // the simulator's per-pod tokens
	authority, err := ca.New(ca.Config{Issuer: issuer, Bundle: bundle, Tokens: tokens})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The proxy's side: a key in memory and a CSR naming its SPIFFE ID.
	id := spiffe.MustNew("cluster.local", "shop", "web")
	token, _ := tokens.Issue(id, time.Hour)
	workloadKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, workloadKey)

	cert, err := authority.Certify(context.Background(), csr, id.String(), token)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cert.Leaf.URIs[0], len(cert.Chain), cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore))

	// A token for one identity does not buy a certificate for another.
	other, _ := tokens.Issue(spiffe.MustNew("cluster.local", "shop", "db"), time.Hour)
	_, err = authority.Certify(context.Background(), csr, id.String(), other)
	fmt.Println(errors.Is(err, ca.ErrIdentityMismatch), ca.ClassOf(err))
	// Output:
	// spiffe://cluster.local/ns/shop/sa/web 2 24h0m20s
	// true PermissionDenied
}
