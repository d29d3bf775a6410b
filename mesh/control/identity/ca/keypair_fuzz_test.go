package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// FuzzParseKeyPairPEM feeds arbitrary certificate and key files to the
// parser of the CA's issuer and anchor (the controller's --issuer-cert and
// --issuer-key, cert-manager's and openssl's output). Errors say they are
// about the key pair. A success is a CA certificate whose public key is
// the key's, followed by the rest of the certificate file as its chain,
// and it survives MarshalPEM and a parse again.
func FuzzParseKeyPairPEM(f *testing.F) {
	fx := newFixture(f)
	anchorCert, anchorKey, err := fx.anchor.MarshalPEM()
	if err != nil {
		f.Fatal(err)
	}
	issuerCert, issuerKey, err := fx.issuer.MarshalPEM()
	if err != nil {
		f.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(fx.issuer.Key.(*ecdsa.PrivateKey))
	if err != nil {
		f.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		f.Fatal(err)
	}
	pkcs8Ed := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	leaf, err := fx.ca.Certify(f.Context(), csrForID(f, web), web.String(), fx.token(f, web))
	if err != nil {
		f.Fatal(err)
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Chain[0]})
	for _, s := range [][2][]byte{
		{anchorCert, anchorKey},
		{issuerCert, issuerKey},
		{issuerCert, sec1},
		{append(bytes.Clone(issuerCert), anchorCert...), issuerKey}, // chain up to the anchor
		{issuerCert, anchorKey}, // the wrong key
		{issuerCert, pkcs1},     // an RSA key for an ECDSA certificate
		{issuerCert, pkcs8Ed},   // an Ed25519 key
		{leafPEM, issuerKey},    // not a CA
		{issuerCert, append(bytes.Clone(issuerKey), issuerKey...)},
		{issuerKey, issuerCert}, // swapped
		{issuerCert, []byte(strings.Replace(string(issuerKey), "PRIVATE KEY", "PUBLIC KEY", 2))},
		{issuerCert, issuerKey[:len(issuerKey)/2]},
		{issuerCert[:len(issuerCert)-30], issuerKey},
		{issuerCert, bytes.ReplaceAll(issuerKey, []byte("\n"), []byte("\r\n"))},
		{nil, nil},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		kp, err := ca.ParseKeyPairPEM(certPEM, keyPEM)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "parse key pair") {
				t.Fatalf("error %q does not say it is about the key pair", err)
			}
			return
		}
		if !kp.Cert.IsCA || !kp.Cert.BasicConstraintsValid {
			t.Fatalf("certificate %q is not a CA", kp.Cert.Subject)
		}
		pub, ok := kp.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(kp.Cert.PublicKey) {
			t.Fatalf("the key does not match certificate %q", kp.Cert.Subject)
		}
		certs, err := spiffe.ParseCertificatesPEM(certPEM)
		if err != nil {
			t.Fatalf("accepted a certificate file ParseCertificatesPEM rejects: %v", err)
		}
		if !certs[0].Equal(kp.Cert) || len(kp.Chain) != len(certs)-1 {
			t.Fatalf("certificate and chain are not the file's %d certificates", len(certs))
		}
		for i, c := range kp.Chain {
			if !c.Equal(certs[i+1]) {
				t.Fatalf("chain certificate %d is not the file's certificate %d", i, i+1)
			}
		}
		c2, k2, err := kp.MarshalPEM()
		if err != nil {
			t.Fatalf("MarshalPEM: %v", err)
		}
		again, err := ca.ParseKeyPairPEM(c2, k2)
		if err != nil {
			t.Fatalf("MarshalPEM then ParseKeyPairPEM: %v", err)
		}
		if !again.Cert.Equal(kp.Cert) || len(again.Chain) != len(kp.Chain) || !again.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(kp.Key.Public()) {
			t.Fatal("MarshalPEM then ParseKeyPairPEM changed the key pair")
		}
	})
}
