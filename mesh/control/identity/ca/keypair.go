package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Defaults applied by zero fields of [Options] and [Config].
const (
	// DefaultAnchorLifetime is the validity of a generated trust anchor:
	// 365 days, as `linkerd install` makes it. Rotate it (see the package
	// documentation) when less than 60 days remain.
	DefaultAnchorLifetime = 365 * 24 * time.Hour
	// DefaultIssuerLifetime is the validity of a generated issuer: 90
	// days. Shorter than Linkerd's one year on purpose: an issuer that is
	// rotated every couple of months keeps the procedure practised, and a
	// leaked issuer key is useful for less time. Rotating an issuer under
	// the same anchor touches only the CA, never the proxies.
	DefaultIssuerLifetime = 90 * 24 * time.Hour
	// DefaultLeafLifetime is the validity of a workload certificate, the
	// 24 h of Linkerd's issuanceLifetime and Istio's default workload TTL.
	DefaultLeafLifetime = 24 * time.Hour
	// DefaultClockSkew is how far NotBefore is backdated so that a peer
	// whose clock is slightly behind accepts a fresh certificate; Linkerd's
	// clockSkewAllowance.
	DefaultClockSkew = 20 * time.Second
)

// KeyPair is a CA certificate with its private key: a trust anchor or an
// issuer. Chain holds the certificates between Cert and the trust anchor,
// nearest first, for issuers signed by an intermediate (cert-manager
// setups); it is empty for an issuer signed directly by the anchor and for
// the anchor itself.
type KeyPair struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// Options tunes [NewAnchor] and [NewIssuer]. The zero value uses the
// defaults.
type Options struct {
	// Lifetime is the certificate's validity from now. Zero means
	// [DefaultAnchorLifetime] or [DefaultIssuerLifetime]. An issuer never
	// outlives its parent: its NotAfter is capped at the parent's.
	Lifetime time.Duration
	// ClockSkew backdates NotBefore. Zero means [DefaultClockSkew];
	// negative means none.
	ClockSkew time.Duration
	// Now reads the clock. Nil means time.Now.
	Now func() time.Time
}

func (o Options) window(defaultLifetime time.Duration) (notBefore, notAfter time.Time) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	lifetime := o.Lifetime
	if lifetime <= 0 {
		lifetime = defaultLifetime
	}
	t := now()
	return t.Add(-skewOrDefault(o.ClockSkew)), t.Add(lifetime)
}

func skewOrDefault(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultClockSkew
	case d < 0:
		return 0
	}
	return d
}

// NewAnchor generates a self-signed trust anchor (root) for trustDomain with
// a fresh ECDSA P-256 key. Its URI SAN is spiffe://<trustDomain> (the
// X509-SVID convention for signing certificates) and its path length is
// limited to 1: anchor, issuer, leaf.
func NewAnchor(trustDomain string, o Options) (*KeyPair, error) {
	if err := spiffe.ValidateTrustDomain(trustDomain); err != nil {
		return nil, err
	}
	notBefore, notAfter := o.window(DefaultAnchorLifetime)
	return newCA(trustDomain, "Skiff trust anchor", notBefore, notAfter, func(c *x509.Certificate) { c.MaxPathLen = 1 }, nil)
}

// NewIssuer generates an issuer (intermediate CA) signed by parent, usually
// a trust anchor from [NewAnchor], with a fresh ECDSA P-256 key. It can sign
// only leaves (path length 0). The trust domain is taken from parent's URI
// SAN; a parent without one is an error, use [NewIssuerFor] then.
func NewIssuer(parent *KeyPair, o Options) (*KeyPair, error) {
	if parent == nil || parent.Cert == nil {
		return nil, errors.New("new issuer: no parent certificate")
	}
	td, err := trustDomainOf(parent.Cert)
	if err != nil {
		return nil, fmt.Errorf("new issuer: %w", err)
	}
	return NewIssuerFor(td, parent, o)
}

// NewIssuerFor is [NewIssuer] with the trust domain given explicitly, for a
// parent that carries no spiffe:// URI SAN.
func NewIssuerFor(trustDomain string, parent *KeyPair, o Options) (*KeyPair, error) {
	if err := spiffe.ValidateTrustDomain(trustDomain); err != nil {
		return nil, err
	}
	if err := parent.check(); err != nil {
		return nil, fmt.Errorf("new issuer: parent: %w", err)
	}
	notBefore, notAfter := o.window(DefaultIssuerLifetime)
	if notAfter.After(parent.Cert.NotAfter) {
		notAfter = parent.Cert.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("new issuer: parent %q expired at %s", parent.Cert.Subject, parent.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	kp, err := newCA(trustDomain, "Skiff issuer", notBefore, notAfter, func(c *x509.Certificate) { c.MaxPathLenZero = true }, parent)
	if err != nil {
		return nil, err
	}
	if !parent.isSelfSigned() {
		kp.Chain = append([]*x509.Certificate{parent.Cert}, parent.Chain...)
	}
	return kp, nil
}

// caTemplate is the template of an anchor or issuer for key pub. Its
// common name carries the role, the trust domain, the issue date and the
// first bytes of the key identifier, so that an old and a new anchor (or
// issuer) are told apart in errors and by operators.
func caTemplate(trustDomain, role string, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	skid := sha256.Sum256(pubDER)
	return &x509.Certificate{
		Subject: pkix.Name{
			Organization: []string{"Skiff"},
			CommonName:   fmt.Sprintf("%s %s %s %x", role, trustDomain, notBefore.UTC().Format("2006-01-02"), skid[:4]),
		},
		SubjectKeyId:          skid[:20],
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
	}, nil
}

// newCA generates a P-256 key and signs a CA certificate for it with parent
// (self-signed when parent is nil); configure adjusts the template. The
// authority key identifier is filled in by crypto/x509.
func newCA(trustDomain, role string, notBefore, notAfter time.Time, configure func(*x509.Certificate), parent *KeyPair) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl, err := caTemplate(trustDomain, role, key.Public(), notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	configure(tmpl)
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, fmt.Errorf("sign %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse generated certificate: %w", err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// trustDomainOf reads the trust domain from a CA certificate's
// spiffe://<trust-domain> URI SAN.
func trustDomainOf(c *x509.Certificate) (string, error) {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			if err := spiffe.ValidateTrustDomain(u.Host); err != nil {
				return "", err
			}
			return u.Host, nil
		}
	}
	return "", fmt.Errorf("certificate %q has no spiffe:// URI SAN naming its trust domain", c.Subject)
}

// check verifies that kp is a usable CA: a CA certificate whose public key
// matches the private key.
func (kp *KeyPair) check() error {
	if kp == nil || kp.Cert == nil {
		return errors.New("no certificate")
	}
	if kp.Key == nil {
		return fmt.Errorf("certificate %q has no private key", kp.Cert.Subject)
	}
	if !kp.Cert.IsCA || !kp.Cert.BasicConstraintsValid {
		return fmt.Errorf("certificate %q is not a CA certificate", kp.Cert.Subject)
	}
	if kp.Cert.KeyUsage != 0 && kp.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q lacks the keyCertSign key usage", kp.Cert.Subject)
	}
	pub, ok := kp.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(kp.Cert.PublicKey) {
		return fmt.Errorf("private key does not match certificate %q", kp.Cert.Subject)
	}
	return nil
}

func (kp *KeyPair) isSelfSigned() bool {
	return bytes.Equal(kp.Cert.RawIssuer, kp.Cert.RawSubject) && kp.Cert.CheckSignatureFrom(kp.Cert) == nil
}

// MarshalPEM encodes the key pair for storage: certPEM holds Cert then
// Chain as PEM "CERTIFICATE" blocks; keyPEM holds the key as a PKCS #8
// "PRIVATE KEY" block.
func (kp *KeyPair) MarshalPEM() (certPEM, keyPEM []byte, err error) {
	if kp == nil || kp.Cert == nil || kp.Key == nil {
		return nil, nil, errors.New("marshal key pair: certificate or key missing")
	}
	der, err := x509.MarshalPKCS8PrivateKey(kp.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key pair: %w", err)
	}
	certPEM = spiffe.EncodeCertificatesPEM(append([]*x509.Certificate{kp.Cert}, kp.Chain...)...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPairPEM reads a key pair: certPEM is the CA certificate followed
// by its chain up to (not including) the anchor; keyPEM is a "PRIVATE KEY"
// (PKCS #8), "EC PRIVATE KEY" (SEC 1) or "RSA PRIVATE KEY" (PKCS #1) block,
// the forms cert-manager and openssl write. The key must match the
// certificate, and the certificate must be a CA.
func ParseKeyPairPEM(certPEM, keyPEM []byte) (*KeyPair, error) {
	certs, err := spiffe.ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parse key pair certificate: %w", err)
	}
	block, rest := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("parse key pair: no PEM block in the key data")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("parse key pair: the key data holds more than one PEM block")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("parse key pair: key PEM block is %q, want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key pair key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse key pair: %T cannot sign", key)
	}
	kp := &KeyPair{Cert: certs[0], Key: signer, Chain: certs[1:]}
	if err := kp.check(); err != nil {
		return nil, fmt.Errorf("parse key pair: %w", err)
	}
	return kp, nil
}

// LoadKeyPair reads a key pair from PEM files (see [ParseKeyPairPEM]).
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	kp, err := ParseKeyPairPEM(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
	}
	return kp, nil
}

// WriteFiles saves the key pair as PEM files (see [KeyPair.MarshalPEM]).
// The key file is created with mode 0600. Each file is written to a
// temporary name in the same directory and renamed into place, so a reader
// never sees half a file.
func (kp *KeyPair) WriteFiles(certFile, keyFile string) error {
	certPEM, keyPEM, err := kp.MarshalPEM()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, certPEM, 0o644)
}

func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
