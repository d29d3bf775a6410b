package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// MaxCSRSize bounds the CSR bytes [CA.Certify] parses. A P-256 CSR with one
// SPIFFE ID is about 300 bytes.
const MaxCSRSize = 16 << 10

// Config configures a [CA]. Issuer, Bundle and Tokens are required; every
// other zero field takes the default stated on it.
type Config struct {
	// TrustDomain is the trust domain the CA issues identities in. Empty
	// means the one named by the issuer's spiffe:// URI SAN (an issuer from
	// [NewIssuer] has it).
	TrustDomain string
	// Issuer signs the workload certificates. It must chain to an anchor of
	// Bundle and be currently valid.
	Issuer *KeyPair
	// Bundle holds the trust anchors the proxies trust. The CA refuses an
	// issuer that does not chain to one of them, so it never hands out
	// certificates the mesh would reject.
	Bundle *spiffe.Bundle
	// Tokens proves the identity of a requesting workload.
	Tokens TokenVerifier
	// LeafLifetime is the validity of a workload certificate. Zero means
	// [DefaultLeafLifetime] (24h). A leaf never outlives its issuer's
	// chain: its NotAfter is capped at the earliest NotAfter of the issuer
	// and the certificates above it.
	LeafLifetime time.Duration
	// ClockSkew backdates a leaf's NotBefore so peers whose clocks are
	// behind accept it at once. Zero means [DefaultClockSkew] (20s);
	// negative means none.
	ClockSkew time.Duration
	// AllowExtraSANs lets a CSR carry DNS names and IP addresses besides
	// its SPIFFE ID (for a workload that must also be reached by name from
	// outside the mesh). False, the default, issues SPIFFE-only
	// certificates and rejects CSRs that ask for more.
	AllowExtraSANs bool
	// Now reads the clock. Nil means time.Now.
	Now func() time.Time
}

// CA is the mesh's certificate authority: it checks certification requests
// and signs workload certificates with its current issuer. The issuer and
// the bundle can be replaced while requests are served ([CA.SetIssuer],
// [CA.SetBundle]). Safe for concurrent use.
type CA struct {
	td         string
	tokens     TokenVerifier
	lifetime   time.Duration
	skew       time.Duration
	allowExtra bool
	now        func() time.Time

	mu    sync.Mutex // serialises SetIssuer and SetBundle
	state atomic.Pointer[caState]
}

// caState is the immutable signing state swapped on rotation.
type caState struct {
	issuer   *KeyPair
	bundle   *spiffe.Bundle
	chainDER [][]byte  // issuer, then its Chain: what follows the leaf
	notAfter time.Time // earliest NotAfter from the issuer to its anchor
}

// Certificate is a signed workload certificate.
type Certificate struct {
	// Chain is the DER chain to present in TLS: the leaf, then the issuer
	// and any intermediates above it. The trust anchor is not included;
	// peers hold it in their bundle.
	Chain [][]byte
	// Leaf is the parsed leaf, Chain[0].
	Leaf *x509.Certificate
	// NotAfter is the leaf's expiry.
	NotAfter time.Time
}

// New returns a CA ready to certify, or an error saying which part of cfg
// is missing or wrong.
func New(cfg Config) (*CA, error) {
	if cfg.Tokens == nil {
		return nil, errors.New("identity CA: no TokenVerifier configured")
	}
	if cfg.Bundle == nil {
		return nil, errors.New("identity CA: no trust bundle configured")
	}
	if cfg.Issuer == nil || cfg.Issuer.Cert == nil {
		return nil, errors.New("identity CA: no issuer configured")
	}
	c := &CA{
		td:         cfg.TrustDomain,
		tokens:     cfg.Tokens,
		lifetime:   cfg.LeafLifetime,
		skew:       skewOrDefault(cfg.ClockSkew),
		allowExtra: cfg.AllowExtraSANs,
		now:        cfg.Now,
	}
	if c.lifetime <= 0 {
		c.lifetime = DefaultLeafLifetime
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.td == "" {
		td, err := trustDomainOf(cfg.Issuer.Cert)
		if err != nil {
			return nil, fmt.Errorf("identity CA: no TrustDomain configured and the issuer names none: %w", err)
		}
		c.td = td
	}
	if err := spiffe.ValidateTrustDomain(c.td); err != nil {
		return nil, fmt.Errorf("identity CA: %w", err)
	}
	st, err := c.newState(cfg.Issuer, cfg.Bundle)
	if err != nil {
		return nil, fmt.Errorf("identity CA: %w", err)
	}
	c.state.Store(st)
	return c, nil
}

// TrustDomain returns the trust domain the CA issues identities in.
func (c *CA) TrustDomain() string { return c.td }

// Issuer returns the issuer currently signing certificates.
func (c *CA) Issuer() *KeyPair { return c.state.Load().issuer }

// Bundle returns the trust bundle the issuer is checked against.
func (c *CA) Bundle() *spiffe.Bundle { return c.state.Load().bundle }

// IssuerNotAfter returns when the current issuer's chain stops being able
// to sign: the earliest NotAfter from the issuer up to its anchor. Alert
// well before it; leaves issued close to it are shortened to end with it.
func (c *CA) IssuerNotAfter() time.Time { return c.state.Load().notAfter }

// SetIssuer switches signing to a new issuer without interrupting
// requests: a request in flight finishes with the issuer it started with,
// the next one uses the new issuer. The issuer must chain to an anchor of
// the current bundle and be valid now; otherwise the CA keeps the old one
// and returns the reason.
func (c *CA) SetIssuer(issuer *KeyPair) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.newState(issuer, c.state.Load().bundle)
	if err != nil {
		return fmt.Errorf("set issuer: %w", err)
	}
	c.state.Store(st)
	return nil
}

// SetBundle replaces the trust bundle. The current issuer must still chain
// to one of its anchors: removing the anchor that signed the active issuer
// would make every new leaf untrusted, so it is refused (switch the issuer
// first, see the rotation procedure).
func (c *CA) SetBundle(b *spiffe.Bundle) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b == nil {
		return errors.New("set bundle: nil bundle")
	}
	st, err := c.newState(c.state.Load().issuer, b)
	if err != nil {
		return fmt.Errorf("set bundle: %w", err)
	}
	c.state.Store(st)
	return nil
}

// Set replaces the issuer and the trust bundle together, checked as a
// pair exactly as [CA.SetIssuer] and [CA.SetBundle] check them. It is what
// a reload of the CA's files calls: a step of the rotation procedure may
// change both at once, and in either order one of the two single-step
// calls would refuse a state that is valid as a whole. On error the CA
// keeps its current issuer and bundle.
func (c *CA) Set(issuer *KeyPair, bundle *spiffe.Bundle) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if issuer == nil || bundle == nil {
		return errors.New("set issuer and bundle: both are required")
	}
	st, err := c.newState(issuer, bundle)
	if err != nil {
		return fmt.Errorf("set issuer and bundle: %w", err)
	}
	c.state.Store(st)
	return nil
}

func (c *CA) newState(issuer *KeyPair, bundle *spiffe.Bundle) (*caState, error) {
	if err := issuer.check(); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if bundle.TrustDomain() != c.td {
		return nil, fmt.Errorf("trust bundle is for trust domain %q, the CA issues for %q", bundle.TrustDomain(), c.td)
	}
	if td, err := trustDomainOf(issuer.Cert); err == nil && td != c.td {
		return nil, fmt.Errorf("issuer %q is for trust domain %q, the CA issues for %q", issuer.Cert.Subject, td, c.td)
	}
	now := c.now()
	roots := x509.NewCertPool()
	for _, a := range bundle.Anchors() {
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, ic := range issuer.Chain {
		inter.AddCert(ic)
	}
	chains, err := issuer.Cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			return nil, fmt.Errorf("%w: issuer %q: %w", ErrIssuerExpired, issuer.Cert.Subject, err)
		}
		return nil, fmt.Errorf("issuer %q does not chain to any of the %d anchors of the trust bundle (add its anchor to the bundle first): %w",
			issuer.Cert.Subject, len(bundle.Anchors()), err)
	}
	notAfter := issuer.Cert.NotAfter
	for _, cert := range chains[0] {
		if cert.NotAfter.Before(notAfter) {
			notAfter = cert.NotAfter
		}
	}
	chainDER := [][]byte{issuer.Cert.Raw}
	for _, ic := range issuer.Chain {
		chainDER = append(chainDER, ic.Raw)
	}
	st := &caState{issuer: issuer, bundle: bundle, chainDER: chainDER, notAfter: notAfter}
	if err := c.canary(st, now); err != nil {
		return nil, fmt.Errorf("issuer %q cannot issue certificates the bundle trusts: %w", issuer.Cert.Subject, err)
	}
	return st, nil
}

// canary signs a throwaway leaf with st's issuer and verifies it under st's
// bundle exactly as a proxy would, for both server and client use. It
// catches what verifying the issuer alone does not: a parent's path-length
// limit, name constraints, or extended key usages that exclude a leaf's.
func (c *CA) canary(st *caState, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	id := spiffe.ID{TrustDomain: c.td, Namespace: "skiff-identity", ServiceAccount: "canary"}
	leaf, err := c.sign(st, id, &key.PublicKey, nil, now)
	if err != nil {
		return err
	}
	chain := []*x509.Certificate{leaf.Leaf}
	for _, der := range leaf.Chain[1:] {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		chain = append(chain, cert)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := st.bundle.Verify(chain, now, usage); err != nil {
			return err
		}
	}
	return nil
}

// Certify checks a certification request and signs a workload certificate.
//
// csrDER is a PKCS #10 request whose only subject alternative name is the
// URI requestedID; token proves the caller's identity through the
// [TokenVerifier]. The checks, in order: requestedID is a valid SPIFFE ID
// of the CA's trust domain; the token is valid and proves exactly
// requestedID (checked before any CSR parsing, so unauthenticated callers
// cost no signature verification); the CSR parses, its key is ECDSA P-256,
// its signature verifies, and it names exactly requestedID. The leaf is
// valid from now minus the clock-skew allowance until now plus the leaf
// lifetime (capped at the issuer chain's expiry), with key usage
// digitalSignature and extended key usages serverAuth and clientAuth.
//
// Rejections are [*RejectError]s; see [ClassOf]. A verifier's transient or
// context error is returned wrapped, not as a rejection.
func (c *CA) Certify(ctx context.Context, csrDER []byte, requestedID, token string) (*Certificate, error) {
	want, err := spiffe.Parse(requestedID)
	if err != nil {
		return nil, reject(ErrInvalidID, err, "requested identity")
	}
	if want.TrustDomain != c.td {
		return nil, reject(ErrInvalidID, nil, fmt.Sprintf("requested identity %s is in trust domain %q; this CA issues for %q", want, want.TrustDomain, c.td))
	}

	proved, err := c.tokens.Verify(ctx, token)
	switch {
	case err == nil:
	case errors.Is(err, ErrExpiredToken):
		return nil, reject(ErrExpiredToken, err, "request for "+requestedID)
	case errors.Is(err, ErrVerifierUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("certify %s: verify token: %w", requestedID, err)
	default:
		return nil, reject(ErrInvalidToken, err, "request for "+requestedID)
	}
	if proved != want.String() {
		return nil, reject(ErrIdentityMismatch, nil, fmt.Sprintf("the token proves %s but the request is for %s", proved, want))
	}

	if len(csrDER) > MaxCSRSize {
		return nil, reject(ErrMalformedCSR, nil, fmt.Sprintf("CSR is %d bytes, the limit is %d", len(csrDER), MaxCSRSize))
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, reject(ErrMalformedCSR, err, "the CSR must be a DER-encoded PKCS #10 request")
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, reject(ErrUnsupportedKey, nil, fmt.Sprintf("the CSR's key is %s; this CA signs ECDSA P-256 keys only", describeKey(csr.PublicKey)))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, reject(ErrCSRSignature, err, "the CSR's signature does not verify with its own public key")
	}
	if err := c.checkNames(csr, want); err != nil {
		return nil, err
	}

	var extra *x509.CertificateRequest
	if c.allowExtra {
		extra = csr
	}
	return c.sign(c.state.Load(), want, csr.PublicKey, extra, c.now())
}

// IssueServing signs a leaf for the CA's own process, without a token:
// the control plane's serving certificate, which proxies verify like any
// workload's (chain to the bundle, SPIFFE ID). id must be a SPIFFE ID of
// the CA's trust domain and pub an ECDSA P-256 key; the leaf is the same
// as [CA.Certify] makes (lifetime, clock skew, usages), signed by the
// current issuer. The caller holds the private key, so nothing crosses a
// trust boundary: it must never be reachable from a request.
func (c *CA) IssueServing(pub crypto.PublicKey, id spiffe.ID) (*Certificate, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	if id.TrustDomain != c.td {
		return nil, fmt.Errorf("serving certificate: %s is in trust domain %q; this CA issues for %q", id, id.TrustDomain, c.td)
	}
	if k, ok := pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("serving certificate: the key is %s; this CA signs ECDSA P-256 keys only", describeKey(pub))
	}
	return c.sign(c.state.Load(), id, pub, nil, c.now())
}

// sign issues a leaf for id and pub with st's issuer at now. DNS names and
// IP addresses are copied from extra when it is not nil.
func (c *CA) sign(st *caState, id spiffe.ID, pub any, extra *x509.CertificateRequest, now time.Time) (*Certificate, error) {
	if !now.Before(st.notAfter) {
		return nil, reject(ErrIssuerExpired, nil, fmt.Sprintf("issuer %q can sign until %s; install a new issuer (see the rotation procedure)",
			st.issuer.Cert.Subject, st.notAfter.UTC().Format(time.RFC3339)))
	}
	notAfter := now.Add(c.lifetime)
	if notAfter.After(st.notAfter) {
		notAfter = st.notAfter
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-c.skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
	}
	if extra != nil {
		tmpl.DNSNames = extra.DNSNames
		tmpl.IPAddresses = extra.IPAddresses
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, st.issuer.Cert, pub, st.issuer.Key)
	if err != nil {
		return nil, fmt.Errorf("certify %s: sign: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certify %s: parse signed leaf: %w", id, err)
	}
	chain := make([][]byte, 0, 1+len(st.chainDER))
	chain = append(append(chain, der), st.chainDER...)
	return &Certificate{Chain: chain, Leaf: leaf, NotAfter: leaf.NotAfter}, nil
}

// checkNames enforces that the CSR asks for exactly the identity want.
func (c *CA) checkNames(csr *x509.CertificateRequest, want spiffe.ID) error {
	if len(csr.EmailAddresses) > 0 {
		return reject(ErrCSRNames, nil, fmt.Sprintf("the CSR asks for e-mail addresses %v; workload certificates carry none", csr.EmailAddresses))
	}
	if !c.allowExtra && (len(csr.DNSNames) > 0 || len(csr.IPAddresses) > 0) {
		return reject(ErrCSRNames, nil, fmt.Sprintf("the CSR asks for DNS names %v and IP addresses %v; this CA issues SPIFFE-only certificates (AllowExtraSANs is off)",
			csr.DNSNames, csr.IPAddresses))
	}
	if len(csr.URIs) != 1 {
		uris := make([]string, len(csr.URIs))
		for i, u := range csr.URIs {
			uris[i] = u.String()
		}
		return reject(ErrCSRNames, nil, fmt.Sprintf("the CSR has %d URI SANs [%s]; it must have exactly one, the SPIFFE ID %s", len(csr.URIs), strings.Join(uris, " "), want))
	}
	got, err := spiffe.Parse(csr.URIs[0].String())
	if err != nil {
		return reject(ErrCSRNames, err, "the CSR's URI SAN")
	}
	if got != want {
		return reject(ErrIdentityMismatch, nil, fmt.Sprintf("the CSR asks for %s but the request (and token) is for %s", got, want))
	}
	return nil
}

// describeKey names a public key's type and size for error messages.
func describeKey(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "missing or of an unknown algorithm"
	}
	return fmt.Sprintf("%T", k)
}
