package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// DefaultServingRenewAt is the fraction of the serving certificate's
// lifetime after which a handshake gets a new one, when
// ServingConfig.RenewAt is zero: the proxies' 70 %.
const DefaultServingRenewAt = 0.7

// servingRetry is how long a failure to issue the serving certificate is
// not retried: handshakes meanwhile get the current certificate.
const servingRetry = 10 * time.Second

// ServingConfig configures a [ServingCert]. CA and ID are required; every
// other zero field takes the default stated on it.
type ServingConfig struct {
	// CA issues the certificate and holds the trust bundle client
	// certificates are verified against.
	CA *ca.CA
	// ID is the control plane's identity, the SPIFFE ID the proxies
	// expect (spiffe.ControlPlaneID by default, chosen by the caller).
	ID spiffe.ID
	// RenewAt is the fraction of a certificate's lifetime after which the
	// next handshake gets a new one. Zero means [DefaultServingRenewAt];
	// it must lie strictly between 0 and 1.
	RenewAt float64
	// Now reads the clock. Nil means time.Now.
	Now func() time.Time
	// Log receives the issuances and failures; nil discards them.
	Log *slog.Logger
}

// ServingCert is the control plane's own certificate for its gRPC API,
// issued by the certificate authority of the same process ([ca.CA.IssueServing])
// to a key that never leaves memory, and verified by the proxies like any
// workload's: the chain against their trust bundle, the SPIFFE ID against
// the one they expect.
//
// It is renewed when it is needed, at a handshake: a handshake after
// RenewAt of the certificate's lifetime, or after the CA's issuer has
// changed (a rotation through [Reloader]), gets a new certificate, so
// every new connection is served by the current issuer and a certificate
// well within its validity. Established connections keep the certificate
// they were verified with. No goroutine, no timer: the proxies hold their
// connections for long, and a check costs one atomic load per handshake.
// Safe for concurrent use.
type ServingCert struct {
	ca      *ca.CA
	id      spiffe.ID
	renewAt float64
	now     func() time.Time
	log     *slog.Logger

	mu  sync.Mutex // one issuance at a time
	cur atomic.Pointer[serving]
}

// serving is one issued certificate.
type serving struct {
	cert    *tls.Certificate // Leaf set
	issuer  *ca.KeyPair      // the CA's issuer when it was issued
	renewAt time.Time
	retryAt time.Time // after a failed renewal: when to try again
}

// NewServingCert checks cfg and issues the first certificate, so that an
// ID the CA cannot issue (another trust domain) fails at start-up.
func NewServingCert(cfg ServingConfig) (*ServingCert, error) {
	if cfg.CA == nil {
		return nil, errors.New("serving certificate: ServingConfig.CA is nil")
	}
	if err := cfg.ID.Validate(); err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	s := &ServingCert{ca: cfg.CA, id: cfg.ID, renewAt: cfg.RenewAt, now: cfg.Now, log: cfg.Log}
	if s.renewAt == 0 {
		s.renewAt = DefaultServingRenewAt
	}
	if s.renewAt <= 0 || s.renewAt >= 1 {
		return nil, fmt.Errorf("serving certificate: RenewAt %v must lie strictly between 0 and 1", s.renewAt)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "serving-cert", "id", cfg.ID.String())
	c, err := s.issue(s.now())
	if err != nil {
		return nil, err
	}
	s.cur.Store(c)
	return s, nil
}

// ID returns the identity the certificate is issued for.
func (s *ServingCert) ID() spiffe.ID { return s.id }

// Certificate returns the certificate to present now, renewed first if it
// is due (see [ServingCert]). When a renewal fails, the current
// certificate is returned, the failure logged, and the renewal tried again
// after a pause; the error is returned only when the current certificate
// has expired too.
func (s *ServingCert) Certificate() (*tls.Certificate, error) {
	now := s.now()
	c := s.cur.Load()
	if !s.due(c, now) {
		return c.cert, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c = s.cur.Load()
	if !s.due(c, now) { // another handshake renewed it meanwhile
		return c.cert, nil
	}
	next, err := s.issue(now)
	if err != nil {
		retry := *c
		retry.retryAt = now.Add(servingRetry)
		s.cur.Store(&retry)
		if !now.Before(c.cert.Leaf.NotAfter) {
			s.log.Error("serving certificate expired and cannot be renewed; proxies refuse new connections", "err", err)
			return nil, fmt.Errorf("serving certificate for %s expired and cannot be renewed: %w", s.id, err)
		}
		s.log.Warn("serving certificate not renewed; presenting the current one", "err", err, "not_after", c.cert.Leaf.NotAfter, "retry_in", servingRetry)
		return c.cert, nil
	}
	s.cur.Store(next)
	return next.cert, nil
}

// due reports whether c must be renewed at now.
func (s *ServingCert) due(c *serving, now time.Time) bool {
	if now.Before(c.retryAt) {
		return false
	}
	return c.issuer != s.ca.Issuer() || !now.Before(c.renewAt)
}

// issue makes a key and has the CA certify it.
func (s *ServingCert) issue(now time.Time) (*serving, error) {
	issuer := s.ca.Issuer() // before signing: a rotation in between only renews once more
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: generate key: %w", err)
	}
	c, err := s.ca.IssueServing(key.Public(), s.id)
	if err != nil {
		return nil, err
	}
	lifetime := c.NotAfter.Sub(now)
	s.log.Info("serving certificate issued", "serial", c.Leaf.SerialNumber.Text(16), "not_after", c.NotAfter,
		"issuer_serial", issuer.Cert.SerialNumber.Text(16))
	return &serving{
		cert:    &tls.Certificate{Certificate: c.Chain, PrivateKey: key, Leaf: c.Leaf},
		issuer:  issuer,
		renewAt: now.Add(time.Duration(s.renewAt * float64(lifetime))),
	}, nil
}

// TLSConfig returns the gRPC server's configuration: TLS 1.3 only,
// presenting [ServingCert.Certificate] at each handshake. Client
// certificates are requested, not required: the Identity service serves
// proxies that have no certificate yet (their token authenticates them).
// A certificate a client does present is verified for client use against
// the CA's current trust bundle, as tls.VerifyClientCertIfGiven would
// against a fixed pool; the bundle is read per handshake so that an anchor
// rotation applies at once. Callers may set NextProtos (grpc-go's
// credentials.NewTLS adds h2).
func (s *ServingCert) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		MaxVersion:     tls.VersionTLS13,
		Time:           s.now,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.Certificate() },
		ClientAuth:     tls.RequestClientCert,
		// Proxies keep no session cache: tickets would be sent for nothing.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			if _, err := s.ca.Bundle().Verify(cs.PeerCertificates, s.now(), x509.ExtKeyUsageClientAuth); err != nil {
				return fmt.Errorf("client certificate rejected: %w", err)
			}
			return nil
		},
	}
}
