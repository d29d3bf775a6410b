package spiffe

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Verification failures. Errors from [Bundle.Verify] match exactly one of
// them with errors.Is and carry details in their message.
var (
	// ErrNoCertificate: the peer presented no certificate (a plaintext or
	// unmeshed peer, or a TLS client without a client certificate).
	ErrNoCertificate = errors.New("peer presented no certificate")
	// ErrExpired: the leaf or a certificate of its chain is past NotAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: the leaf is before its NotBefore (clock skew beyond
	// the CA's allowance, or a certificate from the future).
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrUntrusted: the chain does not lead to any anchor of the bundle (a
	// certificate from another root, or an anchor removed by rotation), or
	// it is otherwise invalid for its use.
	ErrUntrusted = errors.New("certificate not trusted")
	// ErrTrustDomain: the chain is trusted but the leaf's SPIFFE ID belongs
	// to another trust domain.
	ErrTrustDomain = errors.New("SPIFFE ID outside the trust domain")
)

// Bundle is an immutable set of trust anchors for one trust domain. During
// a rotation it holds the old and the new anchor, so certificates chaining to
// either verify. Use [NewBundle] or [ParseBundlePEM]; methods never modify a
// Bundle, they return a new one. A nil *Bundle trusts nothing.
type Bundle struct {
	trustDomain string
	anchors     []*x509.Certificate
	pool        *x509.CertPool
}

// NewBundle returns a bundle trusting the given anchors, which must be CA
// certificates. Duplicates are dropped. At least one anchor is required.
func NewBundle(trustDomain string, anchors ...*x509.Certificate) (*Bundle, error) {
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return nil, err
	}
	b := &Bundle{trustDomain: trustDomain, pool: x509.NewCertPool()}
	for i, a := range anchors {
		if a == nil {
			return nil, fmt.Errorf("trust bundle: anchor %d is nil", i)
		}
		if !a.IsCA || !a.BasicConstraintsValid {
			return nil, fmt.Errorf("trust bundle: anchor %q (serial %x) is not a CA certificate", a.Subject, a.SerialNumber)
		}
		if slices.ContainsFunc(b.anchors, a.Equal) {
			continue
		}
		b.anchors = append(b.anchors, a)
		b.pool.AddCert(a)
	}
	if len(b.anchors) == 0 {
		return nil, errors.New("trust bundle: no anchors; a bundle needs at least one root certificate")
	}
	return b, nil
}

// ParseBundlePEM reads a bundle from concatenated PEM "CERTIFICATE" blocks
// (other block types are an error, so a private key pasted by mistake is
// caught).
func ParseBundlePEM(trustDomain string, data []byte) (*Bundle, error) {
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	return NewBundle(trustDomain, certs...)
}

// ParseCertificatesPEM reads concatenated PEM "CERTIFICATE" blocks, in
// order. Any other block type, or trailing data that is not PEM, is an error.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%d bytes after PEM block %d are not PEM", len(rest), len(certs))
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// EncodeCertificatesPEM encodes certificates as concatenated PEM blocks.
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // writes to a bytes.Buffer do not fail
	}
	return buf.Bytes()
}

// TrustDomain returns the trust domain the bundle serves.
func (b *Bundle) TrustDomain() string {
	if b == nil {
		return ""
	}
	return b.trustDomain
}

// Anchors returns a copy of the bundle's anchors.
func (b *Bundle) Anchors() []*x509.Certificate {
	if b == nil {
		return nil
	}
	return slices.Clone(b.anchors)
}

// MarshalPEM encodes the anchors as concatenated PEM blocks, the format
// [ParseBundlePEM] reads.
func (b *Bundle) MarshalPEM() []byte {
	if b == nil {
		return nil
	}
	return EncodeCertificatesPEM(b.anchors...)
}

// Contains reports whether anchor is one of the bundle's anchors.
func (b *Bundle) Contains(anchor *x509.Certificate) bool {
	return b != nil && slices.ContainsFunc(b.anchors, anchor.Equal)
}

// Equal reports whether b and o hold the same trust domain and the same
// set of anchors, in any order: a reload of an unchanged bundle file is
// then no change at all.
func (b *Bundle) Equal(o *Bundle) bool {
	if b == nil || o == nil {
		return b == o
	}
	if b.trustDomain != o.trustDomain || len(b.anchors) != len(o.anchors) {
		return false
	}
	for _, a := range b.anchors {
		if !o.Contains(a) {
			return false
		}
	}
	return true
}

// With returns a bundle with anchor added (step 1 of an anchor rotation).
func (b *Bundle) With(anchor *x509.Certificate) (*Bundle, error) {
	return NewBundle(b.TrustDomain(), append(b.Anchors(), anchor)...)
}

// Without returns a bundle without anchor (the last step of an anchor
// rotation). Removing the last anchor is an error.
func (b *Bundle) Without(anchor *x509.Certificate) (*Bundle, error) {
	kept := slices.DeleteFunc(b.Anchors(), anchor.Equal)
	return NewBundle(b.TrustDomain(), kept...)
}

// Verify checks a presented chain (leaf first, then intermediates, as in a
// TLS Certificate message) against the bundle at time now, for the given
// extended key usage (x509.ExtKeyUsageServerAuth when verifying a server,
// ClientAuth when verifying a client), and returns the leaf's SPIFFE ID.
// No DNS name is checked: mesh certificates carry only the SPIFFE ID, and
// callers compare the returned ID with the identity they expect.
//
// Errors match one of [ErrNoCertificate], [ErrExpired], [ErrNotYetValid],
// [ErrUntrusted], [ErrTrustDomain] or [ErrNoID].
func (b *Bundle) Verify(chain []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) (ID, error) {
	if len(chain) == 0 || chain[0] == nil {
		return ID{}, fmt.Errorf("%w: a meshed peer must present a certificate chain (is the peer plaintext or unmeshed?)", ErrNoCertificate)
	}
	if b == nil {
		return ID{}, fmt.Errorf("%w: no trust bundle loaded", ErrUntrusted)
	}
	leaf := chain[0]
	// The leaf's validity is checked first so that the most common failure
	// gets a message with both times; x509 reports the same only as
	// "expired" for either bound.
	if now.After(leaf.NotAfter) {
		return ID{}, fmt.Errorf("%w: leaf %s expired at %s, %s before now (%s); is its certificate manager renewing?",
			ErrExpired, describe(leaf), leaf.NotAfter.UTC().Format(time.RFC3339), now.Sub(leaf.NotAfter).Round(time.Second), now.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return ID{}, fmt.Errorf("%w: leaf %s is valid from %s, %s after now (%s); check the clocks",
			ErrNotYetValid, describe(leaf), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotBefore.Sub(now).Round(time.Second), now.UTC().Format(time.RFC3339))
	}
	if leaf.IsCA {
		return ID{}, fmt.Errorf("%w: leaf %s is a CA certificate", ErrUntrusted, describe(leaf))
	}
	opts := x509.VerifyOptions{
		Roots:       b.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}
	if len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range chain[1:] {
			if c != nil {
				opts.Intermediates.AddCert(c)
			}
		}
	}
	if _, err := leaf.Verify(opts); err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			return ID{}, fmt.Errorf("%w: chain of %s: %w", ErrExpired, describe(leaf), err)
		}
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return ID{}, fmt.Errorf("%w: chain of %s leads to none of the %d anchors of the %q bundle (a certificate from another root, or an anchor removed by rotation): %w",
				ErrUntrusted, describe(leaf), len(b.anchors), b.trustDomain, err)
		}
		return ID{}, fmt.Errorf("%w: chain of %s: %w", ErrUntrusted, describe(leaf), err)
	}
	id, err := FromCertificate(leaf)
	if err != nil {
		return ID{}, err
	}
	if id.TrustDomain != b.trustDomain {
		return ID{}, fmt.Errorf("%w: leaf identity %s is not in trust domain %q", ErrTrustDomain, id, b.trustDomain)
	}
	return id, nil
}

// describe names a certificate in errors: its URI SAN when it has one, its
// subject otherwise, and its serial number.
func describe(c *x509.Certificate) string {
	name := c.Subject.String()
	if len(c.URIs) > 0 {
		name = c.URIs[0].String()
	}
	return fmt.Sprintf("%q (serial %x)", name, c.SerialNumber)
}
