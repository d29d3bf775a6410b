// Package spiffe holds the two things both ends of Skiff's mTLS agree on: the
// workload identity, a SPIFFE ID of the form
//
//	spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
//
// and the trust [Bundle], the set of trust anchors (root certificates) that
// a certificate chain must lead to.
//
// The package uses only the standard library and is imported by the proxy
// (which verifies peers) and by the control plane's certificate authority
// (which issues the certificates), so both read and check identities the
// same way.
package spiffe

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrInvalidID is matched (with errors.Is) by every error that rejects a
// SPIFFE ID string; the concrete type is [*IDError].
var ErrInvalidID = errors.New("invalid SPIFFE ID")

// Limits from the SPIFFE ID specification and from Kubernetes names.
const (
	maxIDLength          = 2048 // SPIFFE: URI at most 2048 bytes
	maxTrustDomainLength = 255  // SPIFFE: trust domain at most 255 bytes
	maxNamespaceLength   = 63   // Kubernetes: a namespace is a DNS-1123 label
	maxSALength          = 253  // Kubernetes: a service account is a DNS-1123 subdomain
	scheme               = "spiffe://"
	idFormat             = "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
)

// ID is a workload identity: a trust domain, a Kubernetes namespace and a
// service account. The zero value is not a valid identity ([ID.IsZero]
// reports it); IDs are comparable with ==.
type ID struct {
	// TrustDomain names the trust root, e.g. "cluster.local".
	TrustDomain string
	// Namespace is the workload's Kubernetes namespace (or the simulator's).
	Namespace string
	// ServiceAccount is the workload's service account.
	ServiceAccount string
}

// IDError says why a SPIFFE ID was rejected. It matches [ErrInvalidID].
type IDError struct {
	// Input is the rejected string (for [New], the ID it would format to).
	Input string
	// Reason says what is wrong with it.
	Reason string
}

func (e *IDError) Error() string {
	return fmt.Sprintf("invalid SPIFFE ID %q: %s (want %s)", e.Input, e.Reason, idFormat)
}

// Is reports whether target is [ErrInvalidID].
func (e *IDError) Is(target error) bool { return target == ErrInvalidID }

// New validates the three parts and returns the ID. The trust domain must
// be lowercase letters, digits, '.', '-' or '_'; the namespace a DNS-1123
// label; the service account a DNS-1123 subdomain.
func New(trustDomain, namespace, serviceAccount string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Namespace: namespace, ServiceAccount: serviceAccount}
	if err := id.Validate(); err != nil {
		return ID{}, err
	}
	return id, nil
}

// MustNew is [New] for constants in tests and examples; it panics on an
// invalid ID.
func MustNew(trustDomain, namespace, serviceAccount string) ID {
	id, err := New(trustDomain, namespace, serviceAccount)
	if err != nil {
		panic(err)
	}
	return id
}

// Parse reads a SPIFFE ID string. It is strict: lowercase scheme, no port,
// user info, query, fragment, percent-encoding, empty segment or trailing
// slash, and exactly the path /ns/<namespace>/sa/<service-account>.
func Parse(s string) (ID, error) {
	fail := func(format string, args ...any) (ID, error) {
		return ID{}, &IDError{Input: s, Reason: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return fail("empty")
	}
	if len(s) > maxIDLength {
		return fail("%d bytes long, the limit is %d", len(s), maxIDLength)
	}
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		return fail("scheme must be %q", scheme)
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return fail("no path after the trust domain")
	}
	if err := validateTrustDomain(td); err != nil {
		return fail("%s", err)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return fail("path must be /ns/<namespace>/sa/<service-account>, got /%s", path)
	}
	id := ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.validateNames(); err != nil {
		return fail("%s", err)
	}
	return id, nil
}

// MustParse is [Parse] for constants in tests and examples; it panics on an
// invalid ID.
func MustParse(s string) ID {
	id, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return id
}

// String formats the ID as spiffe://<trust-domain>/ns/<ns>/sa/<sa>. It does
// not validate; an invalid ID formats to a string [Parse] rejects.
func (id ID) String() string {
	return scheme + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns the ID as a URL, the form x509 certificates carry in their
// URI subject alternative names.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// IsZero reports whether id is the zero ID (no identity).
func (id ID) IsZero() bool { return id == ID{} }

// Where the control plane runs by default: the controller's ServiceAccount
// is skiff-controller in namespace skiff.
const (
	ControlPlaneNamespace      = "skiff"
	ControlPlaneServiceAccount = "skiff-controller"
)

// ControlPlaneID returns the control plane's default identity in
// trustDomain, spiffe://<trust-domain>/ns/skiff/sa/skiff-controller: the
// controller serves its gRPC API with a certificate for it, and the
// proxies require it of the server they connect to, so both ends agree
// without configuration. It does not validate trustDomain.
func ControlPlaneID(trustDomain string) ID {
	return ID{TrustDomain: trustDomain, Namespace: ControlPlaneNamespace, ServiceAccount: ControlPlaneServiceAccount}
}

// Validate reports whether the ID is well formed, with an [*IDError] saying
// which part is wrong.
func (id ID) Validate() error {
	err := validateTrustDomain(id.TrustDomain)
	if err == nil {
		err = id.validateNames()
	}
	if err != nil {
		return &IDError{Input: id.String(), Reason: err.Error()}
	}
	return nil
}

func (id ID) validateNames() error {
	if err := validateDNSLabel(id.Namespace, maxNamespaceLength); err != nil {
		return fmt.Errorf("namespace %q: %w", id.Namespace, err)
	}
	if err := validateDNSSubdomain(id.ServiceAccount, maxSALength); err != nil {
		return fmt.Errorf("service account %q: %w", id.ServiceAccount, err)
	}
	return nil
}

// ValidateTrustDomain reports whether td is a valid SPIFFE trust domain
// name: 1 to 255 of lowercase letters, digits, '.', '-' and '_'.
func ValidateTrustDomain(td string) error {
	if err := validateTrustDomain(td); err != nil {
		return fmt.Errorf("invalid SPIFFE trust domain %q: %w", td, err)
	}
	return nil
}

func validateTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	if len(td) > maxTrustDomainLength {
		return fmt.Errorf("trust domain is %d bytes long, the limit is %d", len(td), maxTrustDomainLength)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(isLowerAlnum(c) || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q has %q at byte %d; only lowercase letters, digits, '.', '-' and '_' are allowed (no port, no user info)", td, c, i)
		}
	}
	return nil
}

// validateDNSLabel checks a Kubernetes DNS-1123 label: lowercase
// alphanumerics and '-', starting and ending with an alphanumeric.
func validateDNSLabel(s string, maxLen int) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxLen {
		return fmt.Errorf("%d bytes long, the limit is %d", len(s), maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLowerAlnum(c) || c == '-') {
			return fmt.Errorf("has %q at byte %d; a DNS-1123 label holds lowercase letters, digits and '-'", c, i)
		}
	}
	if !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return errors.New("must start and end with a lowercase letter or digit")
	}
	return nil
}

// validateDNSSubdomain checks a Kubernetes DNS-1123 subdomain: DNS-1123
// labels joined by '.'.
func validateDNSSubdomain(s string, maxLen int) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxLen {
		return fmt.Errorf("%d bytes long, the limit is %d", len(s), maxLen)
	}
	for label := range strings.SplitSeq(s, ".") {
		if err := validateDNSLabel(label, maxLen); err != nil {
			return fmt.Errorf("label %q %w", label, err)
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// ErrNoID is matched by the error of [FromCertificate] when a certificate
// carries no usable SPIFFE ID.
var ErrNoID = errors.New("certificate carries no SPIFFE ID")

// FromCertificate returns the SPIFFE ID in a leaf certificate's URI subject
// alternative names. Exactly one URI SAN is allowed (X509-SVID rule), and it
// must parse as a Skiff SPIFFE ID. It does not verify the certificate; use
// [Bundle.Verify] for that.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, fmt.Errorf("%w: no certificate", ErrNoID)
	}
	switch len(cert.URIs) {
	case 0:
		return ID{}, fmt.Errorf("%w: certificate %q has no URI subject alternative name", ErrNoID, cert.Subject)
	case 1:
	default:
		return ID{}, fmt.Errorf("%w: certificate %q has %d URI subject alternative names, an X509-SVID has exactly one", ErrNoID, cert.Subject, len(cert.URIs))
	}
	id, err := Parse(cert.URIs[0].String())
	if err != nil {
		return ID{}, fmt.Errorf("%w: %w", ErrNoID, err)
	}
	return id, nil
}
