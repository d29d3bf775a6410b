package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Certifier obtains a certificate for a CSR: the proxy's side of the
// control plane's Identity.Certify. chain is DER, leaf first, without the
// trust anchor; expiry is the leaf's NotAfter (the manager reads the leaf's
// own NotAfter and uses this value only as a hint). Implementations: the
// gRPC client of mesh/api; in tests, the CA itself through [CertifierFunc].
type Certifier interface {
	Certify(ctx context.Context, csrDER []byte, id string, token string) (chain [][]byte, expiry time.Time, err error)
}

// CertifierFunc adapts a function to [Certifier].
type CertifierFunc func(ctx context.Context, csrDER []byte, id string, token string) ([][]byte, time.Time, error)

// Certify calls f.
func (f CertifierFunc) Certify(ctx context.Context, csrDER []byte, id, token string) ([][]byte, time.Time, error) {
	return f(ctx, csrDER, id, token)
}

var _ Certifier = CertifierFunc(nil)

// Defaults applied by zero fields of [Config].
const (
	// DefaultRenewAt is the fraction of a certificate's lifetime after
	// which it is renewed, Linkerd's 70 %.
	DefaultRenewAt = 0.7
	// DefaultJitter spreads renewals: the renewal point is uniform in
	// [RenewAt-Jitter, RenewAt+Jitter] of the lifetime, 60-80 % by
	// default, so proxies started together do not renew together.
	DefaultJitter = 0.1
	// DefaultMinBackoff is the wait after the first failed attempt.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff caps the wait between failed attempts.
	DefaultMaxBackoff = time.Minute
	// DefaultRequestTimeout bounds one Certify call.
	DefaultRequestTimeout = 10 * time.Second
)

// ErrNotReady is returned when a TLS handshake needs this proxy's
// certificate before the first one has been obtained.
var ErrNotReady = errors.New("no workload certificate yet (the identity service has not answered)")

// Config configures a [Manager]. ID, Certifier and Bundle are required;
// every other zero field takes the default stated on it.
type Config struct {
	// ID is the proxy's workload identity, the one its token proves.
	ID spiffe.ID
	// Certifier obtains certificates.
	Certifier Certifier
	// Bundle is the initial trust bundle, used to verify peers and the
	// manager's own new certificates. [Manager.SetBundle] replaces it.
	Bundle *spiffe.Bundle
	// Token returns the token proving ID, read before each request (a
	// projected ServiceAccount token rotates on disk). Nil sends an empty
	// token.
	Token func(ctx context.Context) (string, error)
	// RenewAt is the fraction of the lifetime (from receipt to NotAfter)
	// after which a certificate is renewed. Zero means [DefaultRenewAt].
	RenewAt float64
	// Jitter is the half-width of the renewal window, as a fraction of the
	// lifetime. Zero means [DefaultJitter]; negative means none.
	// RenewAt±Jitter must lie strictly between 0 and 1.
	Jitter float64
	// MinBackoff is the wait after the first failure; it doubles per
	// consecutive failure up to MaxBackoff, and each wait is drawn from
	// [d/2, d]. Zero means [DefaultMinBackoff] and [DefaultMaxBackoff].
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one Certify call. Zero means
	// [DefaultRequestTimeout].
	RequestTimeout time.Duration
	// Now reads the clock for certificate validity and renewal times. Nil
	// means time.Now. Waiting uses the runtime's timers, so tests that
	// exercise renewal timing run in a testing/synctest bubble.
	Now func() time.Time
	// Float64 returns a uniform random number in [0, 1) for jitter. Nil
	// means math/rand/v2.Float64. It must be safe for concurrent use.
	Float64 func() float64
	// Logger receives renewals (Debug) and failures (Warn). Nil discards.
	Logger *slog.Logger
}

// Manager keeps a proxy's workload certificate current and builds the TLS
// configurations that present it and verify peers. It generates a fresh
// ECDSA P-256 key in memory for every certificate (keys never touch disk),
// renews at 70 % ± 10 % of the lifetime, retries failures with capped
// exponential backoff, and never drops the current certificate before a
// verified new one is in hand. Safe for concurrent use.
type Manager struct {
	id         spiffe.ID
	certifier  Certifier
	token      func(ctx context.Context) (string, error)
	renewAt    float64
	jitter     float64
	minBackoff time.Duration
	maxBackoff time.Duration
	timeout    time.Duration
	now        func() time.Time
	float64    func() float64
	log        *slog.Logger

	cur      atomic.Pointer[current]
	verified atomic.Pointer[verifyCache] // holds the trust bundle

	refreshMu sync.Mutex // one Refresh at a time
	ready     chan struct{}
	readyOnce sync.Once
	kick      chan struct{} // RenewNow → Run

	refreshes atomic.Uint64
	failures  atomic.Uint64
	lastErr   atomic.Pointer[error] // the last failed attempt; nil after a success
}

// current is one installed certificate.
type current struct {
	cert    *tls.Certificate // Leaf set
	renewAt time.Time
}

// New checks cfg and returns a Manager with no certificate yet; call
// [Manager.Run] to obtain and renew one.
func New(cfg Config) (*Manager, error) {
	if err := cfg.ID.Validate(); err != nil {
		return nil, fmt.Errorf("certificate manager: %w", err)
	}
	if cfg.Certifier == nil {
		return nil, errors.New("certificate manager: no Certifier configured")
	}
	if cfg.Bundle == nil {
		return nil, errors.New("certificate manager: no trust bundle configured")
	}
	if cfg.Bundle.TrustDomain() != cfg.ID.TrustDomain {
		return nil, fmt.Errorf("certificate manager: trust bundle is for %q but the identity %s is in %q", cfg.Bundle.TrustDomain(), cfg.ID, cfg.ID.TrustDomain)
	}
	m := &Manager{
		id:         cfg.ID,
		certifier:  cfg.Certifier,
		token:      cfg.Token,
		renewAt:    cfg.RenewAt,
		jitter:     cfg.Jitter,
		minBackoff: cfg.MinBackoff,
		maxBackoff: cfg.MaxBackoff,
		timeout:    cfg.RequestTimeout,
		now:        cfg.Now,
		float64:    cfg.Float64,
		log:        cfg.Logger,
		ready:      make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
	if m.token == nil {
		m.token = func(context.Context) (string, error) { return "", nil }
	}
	if m.renewAt == 0 {
		m.renewAt = DefaultRenewAt
	}
	switch {
	case m.jitter == 0:
		m.jitter = DefaultJitter
	case m.jitter < 0:
		m.jitter = 0
	}
	if lo, hi := m.renewAt-m.jitter, m.renewAt+m.jitter; lo <= 0 || hi >= 1 {
		return nil, fmt.Errorf("certificate manager: renewal window %.2f-%.2f of the lifetime must lie strictly between 0 and 1", lo, hi)
	}
	if m.minBackoff <= 0 {
		m.minBackoff = DefaultMinBackoff
	}
	if m.maxBackoff <= 0 {
		m.maxBackoff = DefaultMaxBackoff
	}
	if m.maxBackoff < m.minBackoff {
		m.maxBackoff = m.minBackoff
	}
	if m.timeout <= 0 {
		m.timeout = DefaultRequestTimeout
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.float64 == nil {
		m.float64 = mathrand.Float64
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "identity", "id", cfg.ID.String())
	m.verified.Store(newVerifyCache(cfg.Bundle))
	return m, nil
}

// ID returns the proxy's workload identity.
func (m *Manager) ID() spiffe.ID { return m.id }

// Ready is closed once the first certificate is installed.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// WaitReady blocks until the first certificate is installed or ctx ends.
func (m *Manager) WaitReady(ctx context.Context) error {
	select {
	case <-m.ready:
		return nil
	case <-ctx.Done():
		if last := m.LastError(); last != nil {
			return fmt.Errorf("waiting for the first workload certificate for %s: %w; the last attempt failed: %w", m.id, ctx.Err(), last)
		}
		return fmt.Errorf("waiting for the first workload certificate for %s: %w", m.id, ctx.Err())
	}
}

// LastError returns why the last attempt to obtain a certificate failed,
// or nil when it succeeded or none was made yet.
func (m *Manager) LastError() error {
	if p := m.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Certificate returns the certificate currently presented, or nil before
// the first one. The result must not be modified.
func (m *Manager) Certificate() *tls.Certificate {
	if c := m.cur.Load(); c != nil {
		return c.cert
	}
	return nil
}

// Expiry returns the current certificate's NotAfter, or the zero time
// before the first one (metric identity_cert_expiration_timestamp_seconds).
func (m *Manager) Expiry() time.Time {
	if c := m.cur.Load(); c != nil {
		return c.cert.Leaf.NotAfter
	}
	return time.Time{}
}

// NextRenewal returns when [Manager.Run] will renew the current
// certificate, or the zero time before the first one.
func (m *Manager) NextRenewal() time.Time {
	if c := m.cur.Load(); c != nil {
		return c.renewAt
	}
	return time.Time{}
}

// Refreshes counts certificates obtained and installed, the first one
// included (metric identity_cert_refresh_count).
func (m *Manager) Refreshes() uint64 { return m.refreshes.Load() }

// Failures counts failed attempts to obtain a certificate, including
// certificates received but rejected by the manager's own checks.
func (m *Manager) Failures() uint64 { return m.failures.Load() }

// Bundle returns the trust bundle peers are verified against.
func (m *Manager) Bundle() *spiffe.Bundle { return m.verified.Load().bundle }

// SetBundle replaces the trust bundle (anchor rotation). Handshakes that
// start afterwards verify against it; established connections are not
// touched. If the current certificate does not verify under the new
// bundle, a renewal is requested at once. A bundle for another trust domain
// is refused.
func (m *Manager) SetBundle(b *spiffe.Bundle) error {
	if b == nil {
		return errors.New("set bundle: nil bundle")
	}
	if b.TrustDomain() != m.id.TrustDomain {
		return fmt.Errorf("set bundle: bundle is for trust domain %q, this proxy is in %q", b.TrustDomain(), m.id.TrustDomain)
	}
	m.verified.Store(newVerifyCache(b)) // forgets chains verified under the old bundle
	if c := m.cur.Load(); c != nil {
		if _, err := verifyChain(b, c.cert, m.now()); err != nil {
			m.log.Warn("current certificate is not trusted by the new bundle; renewing now", "err", err)
			m.RenewNow()
		}
	}
	return nil
}

// RenewNow asks a running [Manager.Run] to renew at once rather than at the
// scheduled time (e.g. in step 3 of an anchor rotation). It does not block.
func (m *Manager) RenewNow() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run obtains the first certificate, then renews it at its renewal time,
// until ctx ends; it returns ctx's error. After a failure it retries with
// backoff and keeps presenting the current certificate, even an expired
// one (peers then reject it with a clear "expired" error, and the failure
// count says why).
func (m *Manager) Run(ctx context.Context) error {
	failures := 0
	for {
		var wait time.Duration
		if err := m.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			wait = m.backoff(failures)
			m.log.Warn("workload certificate request failed; retrying", "err", err, "attempt", failures, "retry_in", wait, "current_expiry", m.Expiry())
		} else {
			failures = 0
			wait = m.NextRenewal().Sub(m.now())
			if plant.On(plant.RenewalOff) {
				<-ctx.Done() // the first certificate is the last
				return ctx.Err()
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-m.kick:
			t.Stop()
		}
	}
}

// backoff returns the wait after n consecutive failures: MinBackoff·2^(n-1)
// capped at MaxBackoff, drawn uniformly from its upper half.
func (m *Manager) backoff(n int) time.Duration {
	d := m.minBackoff
	for i := 1; i < n && d < m.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, m.maxBackoff)
	return d/2 + time.Duration(m.float64()*float64(d/2))
}

// Refresh makes one attempt to obtain a certificate now: a new key, a CSR
// for the proxy's ID, a Certify call, and checks of the result (the chain
// verifies under the bundle for both server and client use, names exactly
// this ID, and holds the new key). Only then is it installed; on any error
// the current certificate stays. [Manager.Run] calls it; tests and
// operators may too.
func (m *Manager) Refresh(ctx context.Context) error {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	c, err := m.obtain(ctx)
	if err != nil {
		m.failures.Add(1)
		err = fmt.Errorf("renew workload certificate for %s: %w", m.id, err)
		m.lastErr.Store(&err)
		return err
	}
	m.lastErr.Store(nil)
	m.cur.Store(c)
	m.refreshes.Add(1)
	m.readyOnce.Do(func() { close(m.ready) })
	m.log.Debug("workload certificate installed", "serial", fmt.Sprintf("%x", c.cert.Leaf.SerialNumber),
		"not_after", c.cert.Leaf.NotAfter, "renew_at", c.renewAt)
	return nil
}

func (m *Manager) obtain(ctx context.Context) (*current, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{m.id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	token, err := m.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	chainDER, _, err := m.certifier.Certify(ctx, csr, m.id.String(), token)
	if err != nil {
		return nil, err
	}
	received := m.now()
	cert, err := m.accept(chainDER, key, received)
	if err != nil {
		return nil, fmt.Errorf("certificate from the identity service rejected: %w", err)
	}
	lifetime := cert.Leaf.NotAfter.Sub(received)
	frac := m.renewAt + m.jitter*(2*m.float64()-1)
	return &current{cert: cert, renewAt: received.Add(time.Duration(frac * float64(lifetime)))}, nil
}

// accept parses and checks a received chain for key.
func (m *Manager) accept(chainDER [][]byte, key crypto.Signer, now time.Time) (*tls.Certificate, error) {
	if len(chainDER) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	cert := &tls.Certificate{Certificate: chainDER, PrivateKey: key}
	leaf, err := x509.ParseCertificate(chainDER[0])
	if err != nil {
		return nil, fmt.Errorf("parse leaf: %w", err)
	}
	cert.Leaf = leaf
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the leaf does not hold the key of our CSR")
	}
	id, err := verifyChain(m.Bundle(), cert, now)
	if err != nil {
		return nil, err
	}
	if id != m.id {
		return nil, fmt.Errorf("the leaf names %s, we asked for %s", id, m.id)
	}
	return cert, nil
}

// verifyChain checks that cert is usable on both sides of a connection
// under bundle at now, and returns its ID.
func verifyChain(b *spiffe.Bundle, cert *tls.Certificate, now time.Time) (spiffe.ID, error) {
	chain := make([]*x509.Certificate, len(cert.Certificate))
	chain[0] = cert.Leaf
	for i := 1; i < len(chain); i++ {
		c, err := x509.ParseCertificate(cert.Certificate[i])
		if err != nil {
			return spiffe.ID{}, fmt.Errorf("parse chain certificate %d: %w", i, err)
		}
		chain[i] = c
	}
	id, err := b.Verify(chain, now, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return spiffe.ID{}, err
	}
	if _, err := b.Verify(chain, now, x509.ExtKeyUsageClientAuth); err != nil {
		return spiffe.ID{}, err
	}
	return id, nil
}
