package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
)

// FuzzCertify feeds arbitrary bytes as the CSR of an authenticated request.
// Certify must never panic, must reject anything but a well-signed P-256 CSR
// for exactly the requested identity with an InvalidArgument or
// PermissionDenied error, and must issue only for that identity.
func FuzzCertify(f *testing.F) {
	fx := newFixture(f)
	token := fx.token(f, web)
	good := csrForID(f, web)
	f.Add(good)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 1
	f.Add(tampered)
	f.Add(csrForID(f, db))
	f.Add(csrFor(f, p256(f), &x509.CertificateRequest{URIs: []*url.URL{web.URL(), db.URL()}}))
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, csr []byte) {
		c, err := fx.ca.Certify(context.Background(), csr, web.String(), token)
		if err != nil {
			if cl := ca.ClassOf(err); cl != ca.ClassInvalidArgument && cl != ca.ClassPermissionDenied {
				t.Fatalf("error %v classed %v", err, cl)
			}
			return
		}
		if len(c.Leaf.URIs) != 1 || c.Leaf.URIs[0].String() != web.String() {
			t.Fatalf("issued for %v", c.Leaf.URIs)
		}
		if _, ok := c.Leaf.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Fatalf("issued for a %T key", c.Leaf.PublicKey)
		}
		if len(c.Leaf.DNSNames)+len(c.Leaf.IPAddresses)+len(c.Leaf.EmailAddresses) != 0 {
			t.Fatal("issued extra SANs")
		}
	})
}
