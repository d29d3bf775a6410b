// Package identity serves the Identity API (skiff.identity.v1): it
// wraps the certificate authority of mesh/control/identity/ca in gRPC,
// mapping each rejection class (ca.ClassOf) to the status code of the same
// name, and answers with the leaf, its intermediates, the trust anchors and
// the leaf's expiry. [Reloader] keeps the CA in step with its files, and
// [ServingCert] is the controller's own TLS certificate from the same CA.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
)

// Config configures a Server. CA is required; the zero value of every
// other field means its default.
type Config struct {
	// CA certifies the requests.
	CA *ca.CA
	// Log receives the server's events; nil discards them.
	Log *slog.Logger
	// Registerer receives the server's metrics (see NewServer); nil leaves
	// them unregistered.
	Registerer prometheus.Registerer
	// CertifyRate is the sustained number of Certify calls per second one
	// token may make; beyond it and CertifyBurst a call is refused with
	// RESOURCE_EXHAUSTED before the token is verified. Zero means
	// [DefaultCertifyRate]; it must not be negative.
	CertifyRate float64
	// CertifyBurst is how many Certify calls one token may make at once.
	// Zero means [DefaultCertifyBurst]; it must not be negative.
	CertifyBurst int
	// MaxTrackedTokens bounds the tokens whose rate is tracked (see
	// tokenLimiter: a full table forgets buckets, never refuses because
	// of its size). Zero means [DefaultMaxTrackedTokens].
	MaxTrackedTokens int
	// Now reads the clock of the rate limit. Nil means time.Now.
	Now func() time.Time
}

// Server implements identityv1.IdentityServer over a *ca.CA. Make it with
// NewServer. Safe for concurrent use.
type Server struct {
	identityv1.UnimplementedIdentityServer

	ca          *ca.CA
	log         *slog.Logger
	limit       *tokenLimiter
	requests    *prometheus.CounterVec
	duration    prometheus.Histogram
	rateLimited prometheus.Counter
}

var _ identityv1.IdentityServer = (*Server)(nil)

// NewServer returns a Server certifying with cfg.CA. Its metrics,
// registered on cfg.Registerer, are:
//
//	skiff_identity_certify_total{code}                  counter: requests by gRPC status code (OK, InvalidArgument, ...)
//	skiff_identity_certify_duration_seconds             histogram: time to answer a request
//	skiff_identity_issuer_expiry_timestamp_seconds      gauge: the issuer chain's earliest NotAfter, Unix seconds
//	skiff_identity_certify_rate_limited_total           counter: requests refused by the per-token rate limit (also in certify_total{code="ResourceExhausted"})
//	skiff_identity_certify_rate_limit_tokens            gauge: tokens whose rate is tracked
func NewServer(cfg Config) (*Server, error) {
	if cfg.CA == nil {
		return nil, errors.New("identity: Config.CA is nil; make one with ca.New")
	}
	switch {
	case cfg.CertifyRate < 0 || math.IsNaN(cfg.CertifyRate) || math.IsInf(cfg.CertifyRate, 0):
		return nil, fmt.Errorf("identity: CertifyRate %v: want a positive number of requests per second per token", cfg.CertifyRate)
	case cfg.CertifyBurst < 0:
		return nil, fmt.Errorf("identity: CertifyBurst %d: want at least 1", cfg.CertifyBurst)
	case cfg.MaxTrackedTokens < 0:
		return nil, fmt.Errorf("identity: MaxTrackedTokens %d: want at least 1", cfg.MaxTrackedTokens)
	}
	if cfg.CertifyRate == 0 {
		cfg.CertifyRate = DefaultCertifyRate
	}
	if cfg.CertifyBurst == 0 {
		cfg.CertifyBurst = DefaultCertifyBurst
	}
	if cfg.MaxTrackedTokens == 0 {
		cfg.MaxTrackedTokens = DefaultMaxTrackedTokens
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		ca:    cfg.CA,
		log:   log.With("component", "identity"),
		limit: newTokenLimiter(cfg.CertifyRate, cfg.CertifyBurst, cfg.MaxTrackedTokens, cfg.Now),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_identity_certify_rate_limited_total",
			Help: "Identity.Certify requests refused with ResourceExhausted by the per-token rate limit.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_identity_certify_total",
			Help: "Identity.Certify requests, by gRPC status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_identity_certify_duration_seconds",
			Help:    "Time to answer an Identity.Certify request.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12), // 0.5ms .. ~1s
		}),
	}
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "skiff_identity_issuer_expiry_timestamp_seconds",
		Help: "Earliest NotAfter of the issuer and the certificates above it, in Unix seconds.",
	}, func() float64 { return float64(cfg.CA.IssuerNotAfter().Unix()) })
	tracked := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "skiff_identity_certify_rate_limit_tokens",
		Help: "Tokens whose Identity.Certify rate is tracked.",
	}, func() float64 { return float64(s.limit.tracked()) })
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.requests, s.duration, expiry, s.rateLimited, tracked} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("identity: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Certify implements identityv1.IdentityServer. A missing identity or
// CSR is INVALID_ARGUMENT and a missing token UNAUTHENTICATED; a token
// beyond its rate (Config.CertifyRate, CertifyBurst) is RESOURCE_EXHAUSTED;
// everything else is checked by the CA, whose error class becomes the status code.
// Internal failures are logged and answered without detail.
func (s *Server) Certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	start := time.Now()
	resp, err := s.certify(ctx, req)
	code := status.Code(err)
	s.requests.WithLabelValues(code.String()).Inc()
	s.duration.Observe(time.Since(start).Seconds())
	return resp, err
}

func (s *Server) certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	switch {
	case req.GetIdentity() == "":
		return nil, status.Error(codes.InvalidArgument, "identity: identity is required: spiffe://<trust-domain>/ns/<ns>/sa/<sa>")
	case len(req.GetToken()) == 0:
		return nil, status.Error(codes.Unauthenticated, "identity: token is required: the workload's ServiceAccount token or the simulator's pod token")
	case len(req.GetCsr()) == 0:
		return nil, status.Error(codes.InvalidArgument, "identity: csr is required: a DER-encoded PKCS #10 request")
	}
	// Before the token is verified: verification is the expensive part
	// (a TokenReview on Kubernetes), and what a flood would aim at.
	if !s.limit.allow(req.GetToken()) {
		s.rateLimited.Inc()
		s.log.Debug("certify refused: rate limit", "identity", req.GetIdentity())
		return nil, status.Errorf(codes.ResourceExhausted,
			"identity: too many certificate requests with this token: at most %d at once, then %g per second (the controller's --certify-burst-per-token and --certify-rate-per-token); retry with backoff",
			int(s.limit.burst), s.limit.rate)
	}
	cert, err := s.ca.Certify(ctx, req.GetCsr(), req.GetIdentity(), string(req.GetToken()))
	if err != nil {
		code := Code(err)
		if code == codes.Internal {
			s.log.Error("certify failed", "identity", req.GetIdentity(), "err", err)
			return nil, status.Error(codes.Internal, "identity: internal error; see the controller's log")
		}
		s.log.Info("certify refused", "identity", req.GetIdentity(), "code", code.String(), "err", err)
		return nil, status.Error(code, err.Error())
	}
	anchors := s.ca.Bundle().Anchors()
	resp := &identityv1.CertifyResponse{
		LeafCertificate:          cert.Chain[0],
		IntermediateCertificates: cert.Chain[1:],
		TrustAnchors:             make([][]byte, len(anchors)),
		ValidUntil:               timestamppb.New(cert.NotAfter),
	}
	for i, a := range anchors {
		resp.TrustAnchors[i] = a.Raw
	}
	s.log.Debug("certified", "identity", req.GetIdentity(), "valid_until", cert.NotAfter)
	return resp, nil
}

// Code maps an error of ca.CA.Certify to the gRPC status code named by
// its class (ca.ClassOf); nil is codes.OK.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	switch ca.ClassOf(err) {
	case ca.ClassInvalidArgument:
		return codes.InvalidArgument
	case ca.ClassPermissionDenied:
		return codes.PermissionDenied
	case ca.ClassUnauthenticated:
		return codes.Unauthenticated
	case ca.ClassUnavailable:
		return codes.Unavailable
	case ca.ClassFailedPrecondition:
		return codes.FailedPrecondition
	case ca.ClassCanceled:
		return codes.Canceled
	case ca.ClassDeadlineExceeded:
		return codes.DeadlineExceeded
	}
	return codes.Internal
}
