package identityv1_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"

	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
)

// A proxy generates its key in memory and asks for a certificate with a
// CSR whose only SAN is its SPIFFE ID.
func Example() {
	id := "spiffe://cluster.local/ns/shop/sa/web"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	uri, err := url.Parse(id)
	if err != nil {
		panic(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{uri}}, key)
	if err != nil {
		panic(err)
	}
	req := &identityv1.CertifyRequest{
		Identity: id,
		Token:    []byte("token-from-the-projected-volume-or-the-simulator"),
		Csr:      csr,
	}

	parsed, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		panic(err)
	}
	fmt.Println(parsed.URIs[0].String() == req.GetIdentity())
	// Output: true
}
