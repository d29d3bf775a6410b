package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Peer verification failures besides those of [spiffe.Bundle.Verify]
// (spiffe.ErrNoCertificate, ErrExpired, ErrNotYetValid, ErrUntrusted,
// ErrTrustDomain, ErrNoID), which handshake errors also match.
var (
	// ErrIdentityMismatch: the server's verified identity is not the one
	// the client expected for this connection; the concrete type is
	// [*MismatchError].
	ErrIdentityMismatch = errors.New("peer identity mismatch")
	// ErrNoExpectedIdentity: a client connection was configured with the
	// zero identity, so there is nothing to check the server against.
	ErrNoExpectedIdentity = errors.New("no expected server identity")
	// ErrNotTLS: the peer did not speak TLS (a plaintext or unmeshed
	// peer); returned by [Handshake].
	ErrNotTLS = errors.New("peer is not speaking TLS")
)

// MismatchError is a server whose certificate is valid but names another
// identity than the one expected (from Destination) for the connection.
type MismatchError struct {
	Want, Got spiffe.ID
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s: expected server %s, it presented a valid certificate for %s", ErrIdentityMismatch, e.Want, e.Got)
}

// Is reports whether target is [ErrIdentityMismatch].
func (e *MismatchError) Is(target error) bool { return target == ErrIdentityMismatch }

// ServerTLSConfig returns the configuration for the proxy's inbound side:
// TLS 1.3 only, presents the current certificate (read per handshake, so a
// renewal applies to the next connection and never to an established one),
// requires a client certificate and verifies it against the current bundle
// for client use. After the handshake, [PeerID] returns the verified
// client identity. Callers may set NextProtos on the result; they must not
// replace the callbacks.
func (m *Manager) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		MaxVersion:     tls.VersionTLS13,
		Time:           m.now,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return m.present() },
		// RequestClientCert, not RequireAnyClientCert: a client without a
		// certificate then reaches VerifyConnection, which rejects it with
		// spiffe.ErrNoCertificate and a message saying what that means,
		// instead of crypto/tls's bare "client didn't provide a
		// certificate".
		ClientAuth: tls.RequestClientCert,
		// Mesh clients keep no session cache (each connection re-verifies
		// the full chain against the current bundle), so tickets would be
		// sealed and sent for nothing.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := m.verifyPeer(cs, x509.ExtKeyUsageClientAuth)
			return err
		},
	}
}

// ClientTLSConfig returns the configuration for one outbound connection to
// a server that must prove the identity expected: TLS 1.3 only, presents
// the current certificate, verifies the server's chain against the current
// bundle for server use and checks that its SPIFFE ID equals expected.
// Mesh certificates carry no DNS names, so crypto/tls's hostname check is
// replaced by this identity check. Callers may set NextProtos and
// ServerName (used only for SNI) on the result.
func (m *Manager) ClientTLSConfig(expected spiffe.ID) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		MaxVersion:           tls.VersionTLS13,
		Time:                 m.now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return m.present() },
		// The built-in verification checks a DNS name that SPIFFE
		// certificates do not have; VerifyConnection below does the full
		// chain verification against the bundle instead. It runs on every
		// handshake, resumed ones included.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if expected.IsZero() {
				return fmt.Errorf("%w: the connection was not given the server's SPIFFE ID (does service discovery know it?)", ErrNoExpectedIdentity)
			}
			got, err := m.verifyPeer(cs, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if got != expected {
				return &MismatchError{Want: expected, Got: got}
			}
			return nil
		},
	}
}

// ControlPlaneTLSConfig returns the configuration of the proxy's
// connections to the control plane (Destination and Identity): TLS 1.3
// only, the server's chain verified for server use against bundle() and
// its SPIFFE ID equal to expected (else a [*MismatchError]). bundle is
// called at every handshake, so an anchor rotation applies from the next
// connection; a proxy passes [Manager.Bundle], or the bundle it read from
// its file while it has no manager yet.
//
// The proxy presents cert() only while that certificate is valid and
// trusted by bundle(); otherwise, and when cert or its result is nil, it
// presents none. The control plane's Identity service authenticates a
// request by its token, not by a client certificate: a proxy without a
// certificate yet, or whose certificate expired while the control plane
// was away, must still be able to get a new one, and an expired
// certificate would make the server refuse the handshake.
//
// Errors name the control plane, so a failed handshake says whose
// certificate was refused and why.
func ControlPlaneTLSConfig(expected spiffe.ID, bundle func() *spiffe.Bundle, cert func() *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert != nil {
				if c := cert(); c != nil && bundle != nil && presentable(bundle(), c, time.Now()) {
					return c, nil
				}
			}
			return &tls.Certificate{}, nil // none
		},
		// As in ClientTLSConfig: SPIFFE certificates have no DNS name for
		// crypto/tls to check; VerifyConnection verifies the chain and the
		// identity instead, on every handshake.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if expected.IsZero() {
				return fmt.Errorf("control plane: %w: give the control plane's SPIFFE ID", ErrNoExpectedIdentity)
			}
			var b *spiffe.Bundle
			if bundle != nil {
				b = bundle()
			}
			if b == nil {
				return errors.New("control plane: no trust bundle to verify the server's certificate against")
			}
			got, err := b.Verify(cs.PeerCertificates, time.Now(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("control plane: server certificate rejected (expected %s): %w", expected, err)
			}
			if got != expected {
				return fmt.Errorf("control plane: %w", &MismatchError{Want: expected, Got: got})
			}
			return nil
		},
	}
}

// presentable reports whether c is within its validity and trusted by b
// for both uses, so that a server verifying it against the same anchors
// accepts it.
func presentable(b *spiffe.Bundle, c *tls.Certificate, now time.Time) bool {
	if b == nil || len(c.Certificate) == 0 {
		return false
	}
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return false
		}
		c = &tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey, Leaf: leaf}
	}
	_, err := verifyChain(b, c, now)
	return err == nil
}

func (m *Manager) present() (*tls.Certificate, error) {
	if c := m.cur.Load(); c != nil {
		return c.cert, nil
	}
	return nil, fmt.Errorf("%w for %s", ErrNotReady, m.id)
}

func (m *Manager) verifyPeer(cs tls.ConnectionState, usage x509.ExtKeyUsage) (spiffe.ID, error) {
	now := m.now()
	vc := m.verified.Load()
	key := chainKey(cs.PeerCertificates, usage)
	if id, ok := vc.get(key, now); ok {
		return id, nil
	}
	id, err := vc.bundle.Verify(cs.PeerCertificates, now, usage)
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("mTLS peer rejected: %w", err)
	}
	vc.put(key, id, cs.PeerCertificates)
	return id, nil
}

// PeerID returns the SPIFFE ID of the peer of a completed handshake on a
// connection configured by [Manager.ServerTLSConfig] or
// [Manager.ClientTLSConfig], whose callbacks have verified it. On a
// connection configured otherwise the result is unverified.
func PeerID(cs tls.ConnectionState) (spiffe.ID, error) {
	if !cs.HandshakeComplete {
		return spiffe.ID{}, errors.New("peer identity: handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return spiffe.ID{}, fmt.Errorf("peer identity: %w", spiffe.ErrNoCertificate)
	}
	return spiffe.FromCertificate(cs.PeerCertificates[0])
}

// Handshake runs conn's handshake under ctx and returns the peer's verified
// SPIFFE ID. A peer that does not speak TLS yields an error matching
// [ErrNotTLS]; verification failures match the errors listed at
// [ErrIdentityMismatch] on the side that detected them (the other side sees
// a TLS alert).
func Handshake(ctx context.Context, conn *tls.Conn) (spiffe.ID, error) {
	if err := conn.HandshakeContext(ctx); err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) {
			return spiffe.ID{}, fmt.Errorf("%w (plaintext or unmeshed peer at %s; mTLS is required): %w", ErrNotTLS, conn.RemoteAddr(), err)
		}
		return spiffe.ID{}, err
	}
	return PeerID(conn.ConnectionState())
}
