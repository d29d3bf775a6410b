package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// DefaultReloadInterval is how often a [Reloader] reads the CA's files
// when ReloaderConfig.Interval is zero.
const DefaultReloadInterval = time.Second

// ReloaderConfig configures a [Reloader]. CA and the three file names are
// required.
type ReloaderConfig struct {
	// CA is switched to the files' issuer and bundle whenever they change.
	CA *ca.CA
	// IssuerCert, IssuerKey and TrustAnchors are the PEM files the CA was
	// loaded from: the issuer certificate with its chain, the issuer's key,
	// and the trust anchors.
	IssuerCert, IssuerKey, TrustAnchors string
	// Interval is the pause between two reads; zero means
	// DefaultReloadInterval.
	Interval time.Duration
	// Log receives the reloads and the refusals; nil discards them.
	Log *slog.Logger
	// Registerer receives the reloader's metrics (see NewReloader); nil
	// leaves them unregistered.
	Registerer prometheus.Registerer
}

// Reloader keeps a CA in step with its files, so that the issuer and the
// trust anchors rotate without a restart of the controller: whoever holds
// the files (cert-manager renewing a Secret, an operator following the
// rotation procedure of package ca, the simulator) replaces them, and the
// next read switches the CA with [ca.CA.Set].
//
// A change is taken only whole: the new issuer must chain to the new
// bundle and be valid. Anything else (a key that does not match its
// certificate because only one of the two files has been replaced yet, a
// bundle without the issuer's anchor, a malformed file) is refused with a
// log line naming the file and the reason, counted, and the CA keeps
// signing with what it had. The files are read again at every interval,
// so the second half of a two-file update completes the change.
type Reloader struct {
	cfg     ReloaderConfig
	log     *slog.Logger
	reloads *prometheus.CounterVec
	anchors prometheus.GaugeFunc

	mu      sync.Mutex
	read    bool      // seen holds a read
	seen    [3][]byte // the files' contents at the last read
	pending error     // a refusal not yet reported: reported if the files stay as they are
	failed  error     // the refusal of the files as they are, nil when they were taken
}

// NewReloader checks cfg and returns a Reloader. Its metrics, registered on
// cfg.Registerer, are:
//
//	skiff_identity_reloads_total{result}   counter: changes of the files taken ("ok") or refused ("error")
//	skiff_identity_trust_anchors           gauge: anchors in the CA's trust bundle
func NewReloader(cfg ReloaderConfig) (*Reloader, error) {
	if cfg.CA == nil {
		return nil, errors.New("identity reloader: ReloaderConfig.CA is nil")
	}
	if cfg.IssuerCert == "" || cfg.IssuerKey == "" || cfg.TrustAnchors == "" {
		return nil, errors.New("identity reloader: the issuer certificate, issuer key and trust anchors files are all required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReloadInterval
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{
		cfg: cfg,
		log: log.With("component", "identity-reload"),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_identity_reloads_total",
			Help: "Changes of the issuer and trust-anchor files, taken (ok) or refused (error).",
		}, []string{"result"}),
		anchors: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "skiff_identity_trust_anchors",
			Help: "Anchors in the certificate authority's trust bundle.",
		}, func() float64 { return float64(len(cfg.CA.Bundle().Anchors())) }),
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.reloads, r.anchors} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("identity reloader: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Run reads the files every interval until ctx ends, and returns nil then.
func (r *Reloader) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.Check()
	}
}

// Check reads the files once. It returns true when the CA was switched,
// and the reason when the files hold a change the CA cannot take.
// Unchanged files cost three reads and nothing more.
//
// A refusal is logged and counted only when the files are still in the
// same state at the next read: a rotation that replaces the certificate
// and the key one after the other passes through a mismatched pair for a
// moment, and that is not worth an alarm.
func (r *Reloader) Check() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var (
		cur     [3][]byte
		readErr error
	)
	for i, name := range []string{r.cfg.IssuerCert, r.cfg.IssuerKey, r.cfg.TrustAnchors} {
		b, err := os.ReadFile(name)
		if err != nil && readErr == nil {
			readErr = fmt.Errorf("read %s: %w", name, err)
		}
		cur[i] = b
	}
	if r.read && bytes.Equal(cur[0], r.seen[0]) && bytes.Equal(cur[1], r.seen[1]) && bytes.Equal(cur[2], r.seen[2]) {
		if r.pending != nil { // the same refused state, a whole interval later
			r.refused(r.pending)
			r.pending = nil
		}
		return false, r.failed
	}
	r.seen, r.read, r.pending, r.failed = cur, true, nil, nil
	changed, err := r.apply(cur, readErr)
	if err != nil {
		r.pending, r.failed = err, err
	}
	return changed, err
}

// apply switches the CA to the issuer and bundle in cur, unless they are
// what it has.
func (r *Reloader) apply(cur [3][]byte, readErr error) (bool, error) {
	if readErr != nil {
		return false, readErr
	}
	issuer, err := ca.ParseKeyPairPEM(cur[0], cur[1])
	if err != nil {
		return false, fmt.Errorf("%s, %s: %w", r.cfg.IssuerCert, r.cfg.IssuerKey, err)
	}
	bundle, err := spiffe.ParseBundlePEM(r.cfg.CA.TrustDomain(), cur[2])
	if err != nil {
		return false, fmt.Errorf("%s: %w", r.cfg.TrustAnchors, err)
	}
	old := r.cfg.CA.Issuer()
	sameIssuer := old.Cert.Equal(issuer.Cert)
	sameBundle := r.cfg.CA.Bundle().Equal(bundle)
	if sameIssuer && sameBundle {
		return false, nil
	}
	if sameIssuer {
		issuer = old // same certificate: keep the key object in use
	}
	if err := r.cfg.CA.Set(issuer, bundle); err != nil {
		return false, err
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.log.Info("identity files reloaded",
		"issuer_changed", !sameIssuer, "bundle_changed", !sameBundle,
		"issuer_serial", issuer.Cert.SerialNumber.Text(16), "trust_anchors", len(bundle.Anchors()),
		"issuer_not_after", r.cfg.CA.IssuerNotAfter())
	return true, nil
}

// refused counts and logs a change the CA could not take.
func (r *Reloader) refused(err error) {
	r.reloads.WithLabelValues("error").Inc()
	r.log.Warn("identity files not reloaded; the CA keeps its issuer and trust anchors", "err", err)
}
