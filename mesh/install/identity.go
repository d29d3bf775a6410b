package install

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// MaxPEMFileSize bounds every PEM file install reads: a bundle of a few
// anchors, or an issuer with its chain, is a few KB.
const MaxPEMFileSize = 1 << 20

// WebhookCertLifetime is the validity of the generated webhook CA and of
// the injector's serving certificate. skiff check warns 60 days before
// it ends; re-rendering the install renews both.
const WebhookCertLifetime = 365 * 24 * time.Hour

// IdentityFiles names the PEM files of a trust anchor bundle and an
// issuer supplied by the user (e.g. made with step or cert-manager). The
// flag names are Linkerd's.
type IdentityFiles struct {
	// TrustAnchors is --identity-trust-anchors-file: one or more root
	// certificates.
	TrustAnchors string
	// IssuerCert is --identity-issuer-certificate-file: the issuer's
	// certificate, then any intermediates up to (not including) an anchor.
	IssuerCert string
	// IssuerKey is --identity-issuer-key-file: the issuer's private key.
	IssuerKey string
}

// IsZero says that no file is named, so the identity is generated.
func (f IdentityFiles) IsZero() bool { return f == IdentityFiles{} }

// Identity is the mesh's trust anchors and the issuer the controller's CA
// signs workload certificates with.
type Identity struct {
	Bundle *spiffe.Bundle
	Issuer *ca.KeyPair
}

// GenerateIdentity makes a fresh trust anchor and an issuer signed by it,
// with mesh/control/identity/ca's lifetimes (365 and 90 days). The
// anchor's key is discarded: rotating the issuer then means making a new
// anchor too (docs/identity.md); supply files to keep the anchor's key
// offline instead. now nil means time.Now.
func GenerateIdentity(trustDomain string, now func() time.Time) (*Identity, error) {
	anchor, err := ca.NewAnchor(trustDomain, ca.Options{Now: now})
	if err != nil {
		return nil, fmt.Errorf("generate trust anchor: %w", err)
	}
	issuer, err := ca.NewIssuer(anchor, ca.Options{Now: now})
	if err != nil {
		return nil, fmt.Errorf("generate issuer: %w", err)
	}
	bundle, err := spiffe.NewBundle(trustDomain, anchor.Cert)
	if err != nil {
		return nil, err
	}
	return &Identity{Bundle: bundle, Issuer: issuer}, nil
}

// LoadIdentity reads and checks supplied identity files: the anchors
// parse as CA certificates, the issuer is a CA whose key matches its
// certificate, it chains to one of the anchors and is valid at now, and
// it is not for another trust domain. Every error names the flag and the
// file. All three files are required.
func LoadIdentity(files IdentityFiles, trustDomain string, now func() time.Time) (*Identity, error) {
	if now == nil {
		now = time.Now
	}
	const (
		anchorsFlag = "--identity-trust-anchors-file"
		certFlag    = "--identity-issuer-certificate-file"
		keyFlag     = "--identity-issuer-key-file"
	)
	var missing []string
	for _, f := range []struct{ flag, path string }{{anchorsFlag, files.TrustAnchors}, {certFlag, files.IssuerCert}, {keyFlag, files.IssuerKey}} {
		if f.path == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("a supplied identity needs %s, %s and %s together: %v missing", anchorsFlag, certFlag, keyFlag, missing)
	}
	anchorsPEM, err := readPEMFile(anchorsFlag, files.TrustAnchors)
	if err != nil {
		return nil, err
	}
	certPEM, err := readPEMFile(certFlag, files.IssuerCert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readPEMFile(keyFlag, files.IssuerKey)
	if err != nil {
		return nil, err
	}
	bundle, err := spiffe.ParseBundlePEM(trustDomain, anchorsPEM)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", anchorsFlag, files.TrustAnchors, err)
	}
	if _, err := spiffe.ParseCertificatesPEM(certPEM); err != nil {
		return nil, fmt.Errorf("%s %s: %w", certFlag, files.IssuerCert, err)
	}
	issuer, err := ca.ParseKeyPairPEM(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s %s, %s %s: %w", certFlag, files.IssuerCert, keyFlag, files.IssuerKey, err)
	}
	for _, u := range issuer.Cert.URIs {
		if u.Scheme == "spiffe" && u.Host != trustDomain {
			return nil, fmt.Errorf("%s %s: the issuer %q is for trust domain %q, the install is for %q (set --trust-domain)", certFlag, files.IssuerCert, issuer.Cert.Subject, u.Host, trustDomain)
		}
	}
	if err := verifyIssuer(issuer, bundle, now()); err != nil {
		return nil, fmt.Errorf("%s %s: %w (anchors from %s %s)", certFlag, files.IssuerCert, err, anchorsFlag, files.TrustAnchors)
	}
	return &Identity{Bundle: bundle, Issuer: issuer}, nil
}

// verifyIssuer checks that issuer chains to an anchor of bundle at now.
func verifyIssuer(issuer *ca.KeyPair, bundle *spiffe.Bundle, now time.Time) error {
	roots := x509.NewCertPool()
	for _, a := range bundle.Anchors() {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range issuer.Chain {
		inter.AddCert(c)
	}
	_, err := issuer.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("the issuer %q or a certificate above it is not valid at %s (the issuer's validity is %s to %s): %w",
			issuer.Cert.Subject, now.UTC().Format(time.RFC3339), issuer.Cert.NotBefore.UTC().Format(time.RFC3339), issuer.Cert.NotAfter.UTC().Format(time.RFC3339), err)
	}
	return fmt.Errorf("the issuer %q does not chain to any of the %d trust anchors: %w", issuer.Cert.Subject, len(bundle.Anchors()), err)
}

// readPEMFile reads at most MaxPEMFileSize bytes of path, saying which
// flag named it when it cannot.
func readPEMFile(flag, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: not a regular file", flag, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxPEMFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if len(data) > MaxPEMFileSize {
		return nil, fmt.Errorf("%s %s: larger than %d bytes; a PEM bundle of certificates is a few KB", flag, path, MaxPEMFileSize)
	}
	if p, _ := pem.Decode(data); p == nil {
		return nil, fmt.Errorf("%s %s: no PEM block found (want -----BEGIN ...----- text)", flag, path)
	}
	return data, nil
}

// webhookCerts are the injector's serving certificate and the CA the API
// server verifies it with (the webhook's caBundle).
type webhookCerts struct {
	caPEM, certPEM, keyPEM []byte
}

// webhookDNSNames are the names the API server may dial the injector
// Service by; it uses <service>.<namespace>.svc.
func webhookDNSNames() []string {
	svc := kubemeta.Injector + "." + kubemeta.Namespace
	return []string{svc + ".svc", svc + ".svc.cluster.local", svc, kubemeta.Injector}
}

// newWebhookCerts generates a CA and a serving certificate it signs for
// the injector Service, both valid for WebhookCertLifetime from now.
// Randomness is crypto/rand's (tests fix it with
// testing/cryptotest.SetGlobalRandom).
func newWebhookCerts(now time.Time) (*webhookCerts, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := now.Add(-ca.DefaultClockSkew), now.Add(WebhookCertLifetime)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Skiff"}, CommonName: "Skiff webhook CA " + now.UTC().Format("2006-01-02")},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("webhook CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	names := webhookDNSNames()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"Skiff"}, CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("webhook serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &webhookCerts{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// serial is a random positive 127-bit serial number.
func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	b[0] &= 0x7f
	b[0] |= 0x01 // nonzero, positive
	return new(big.Int).SetBytes(b)
}
