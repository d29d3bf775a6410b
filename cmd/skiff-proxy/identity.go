package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy"
	"github.com/skiff-mesh/skiff/mesh/proxy/control"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// identityWait bounds the wait for the first certificate at start-up: a
// proxy with an identity serves only once it can prove it.
const identityWait = 30 * time.Second

// identityFlags connect the proxy to the control plane.
type identityFlags struct {
	destinationAddr, identityAddr string
	id, tokenFile, anchorsFile    string
	anchorsPoll                   time.Duration
	controlPlaneID                string
	controlPlanePlaintext         bool
	policy                        bool

	dst *control.DestinationSource
	pol *control.PolicySource
	mgr *certs.Manager
}

// apply sets cfg.Endpoints and cfg.Identity from the flags, and starts the
// certificate manager (it renews until ctx ends).
//
// With --identity-id, both connections to the control plane (Destination
// and Identity) are TLS: the controller must prove --control-plane-identity
// with a certificate that chains to the trust bundle, and the proxy
// presents its own certificate, read at every handshake so that a renewed
// one is presented from the next connection on. Identity takes a request
// without one (the token authenticates it: that is how the first
// certificate is obtained); Destination serves only proxies that present
// one, so its connections are not even attempted without a valid
// certificate (see requireClientCert), and apply returns, letting the
// proxy open its watches, only once the first certificate is in.
//
// Without --identity-id the proxy has no certificate and no anchors, and
// talks h2c: only to a controller started with --plaintext, which it must
// say with --control-plane-plaintext.
//
// root is the process's logger without a component: each part adds its
// own, once.
func (f *identityFlags) apply(ctx context.Context, cfg *proxy.Config, root *slog.Logger) error {
	if f.id == "" {
		if f.tokenFile != "" || f.anchorsFile != "" || f.identityAddr != "" || f.controlPlaneID != "" {
			return errors.New("--identity-token-file, --trust-anchors, --identity-addr and --control-plane-identity need --identity-id")
		}
		if f.destinationAddr != "" && !f.controlPlanePlaintext {
			return errors.New("--destination-addr without --identity-id: the controller serves Destination only to proxies that present a mesh certificate; " +
				"give --identity-id, --identity-token-file and --trust-anchors, or --control-plane-plaintext for a controller started with --plaintext")
		}
		if f.destinationAddr != "" {
			log := root.With("component", "destination")
			log.Warn("control plane in plaintext (--control-plane-plaintext): endpoints and the identities they must prove are not authenticated")
			f.dst = &control.DestinationSource{Conn: control.NewConn(f.destinationAddr, control.ConnConfig{}), Log: log}
			cfg.Endpoints = f.dst
			f.watchPolicy(cfg, root)
		}
		return nil
	}
	id, err := spiffe.Parse(f.id)
	if err != nil {
		return fmt.Errorf("--identity-id: %w", err)
	}
	controlID := spiffe.ControlPlaneID(id.TrustDomain)
	switch {
	case f.controlPlaneID != "" && f.controlPlanePlaintext:
		return errors.New("--control-plane-identity and --control-plane-plaintext contradict each other: a plaintext control plane proves no identity")
	case f.controlPlaneID != "":
		if controlID, err = spiffe.Parse(f.controlPlaneID); err != nil {
			return fmt.Errorf("--control-plane-identity: %w", err)
		}
		if controlID.TrustDomain != id.TrustDomain {
			return fmt.Errorf("--control-plane-identity %s is in trust domain %q, --identity-id in %q: the trust anchors verify one trust domain", controlID, controlID.TrustDomain, id.TrustDomain)
		}
	}
	addr := f.identityAddr
	if addr == "" {
		addr = f.destinationAddr
	}
	if addr == "" || f.tokenFile == "" || f.anchorsFile == "" {
		return errors.New("--identity-id needs --identity-addr (or --destination-addr), --identity-token-file and --trust-anchors")
	}
	pem, err := os.ReadFile(f.anchorsFile)
	if err != nil {
		return fmt.Errorf("--trust-anchors: %w", err)
	}
	bundle, err := spiffe.ParseBundlePEM(id.TrustDomain, pem)
	if err != nil {
		return fmt.Errorf("--trust-anchors %s: %w", f.anchorsFile, err)
	}
	log := root.With("component", "identity")
	var (
		connCfg control.ConnConfig
		mgr     atomic.Pointer[certs.Manager] // f.mgr, for the handshakes
	)
	if f.controlPlanePlaintext {
		log.Warn("control plane in plaintext (--control-plane-plaintext): endpoints and the identities they must prove are not authenticated")
	} else {
		// The bundle of the manager once it exists (it follows the file),
		// the one just read before; the certificate once there is one.
		connCfg.TLS = certs.ControlPlaneTLSConfig(controlID,
			func() *spiffe.Bundle {
				if m := mgr.Load(); m != nil {
					return m.Bundle()
				}
				return bundle
			},
			func() *tls.Certificate {
				if m := mgr.Load(); m != nil {
					return m.Certificate()
				}
				return nil
			})
		log.Info("control plane over TLS", "control_plane_identity", controlID.String())
	}
	if f.destinationAddr != "" {
		dstCfg := connCfg
		if dstCfg.TLS != nil {
			dstCfg.TLS = requireClientCert(dstCfg.TLS)
		}
		f.dst = &control.DestinationSource{Conn: control.NewConn(f.destinationAddr, dstCfg), Log: root.With("component", "destination")}
		cfg.Endpoints = f.dst
		f.watchPolicy(cfg, root)
	}
	certifier := &control.Certifier{Conn: control.NewConn(addr, connCfg)}
	f.mgr, err = certs.New(certs.Config{
		ID: id, Bundle: bundle, Certifier: certifier, Logger: root, // it adds component=identity
		Token: func(context.Context) (string, error) {
			b, err := os.ReadFile(f.tokenFile)
			if err != nil {
				return "", fmt.Errorf("identity token: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		},
	})
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	mgr.Store(f.mgr)
	// The trust anchors come from the file alone (a ConfigMap in
	// Kubernetes, the simulator's bundle locally), never from the control
	// plane's answers: the control plane is verified against those very
	// anchors (and not at all with --control-plane-plaintext), and whoever
	// could add an anchor could impersonate every workload.
	go f.mgr.WatchBundleFile(ctx, f.anchorsFile, f.anchorsPoll)
	go f.mgr.Run(ctx)
	wctx, cancel := context.WithTimeout(ctx, identityWait)
	defer cancel()
	if err := f.mgr.WaitReady(wctx); err != nil {
		return fmt.Errorf("no certificate for %s from %s within %v: %w", id, addr, identityWait, err)
	}
	cfg.Identity = f.mgr
	log.Info("identity ready", "id", id.String(), "expires", f.mgr.Expiry())
	return nil
}

// requireClientCert returns a copy of tc (a certs.ControlPlaneTLSConfig)
// whose handshakes fail unless tc presents a client certificate. The
// control plane refuses Destination to a connection without one; without
// this, such a connection, made before the first certificate or while the
// current one is expired, would stay in the pool and have every watch on it
// refused, long after a certificate has arrived. Failing the handshake
// keeps it out: the watch retries with backoff and connects, presenting
// the certificate, once there is one.
func requireClientCert(tc *tls.Config) *tls.Config {
	tc = tc.Clone()
	present := tc.GetClientCertificate
	tc.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := present(cri)
		if err == nil && (c == nil || len(c.Certificate) == 0) {
			return nil, errors.New("no valid workload certificate to present to the control plane's Destination API, which serves only proxies that present one; " +
				"waiting for the identity service to issue one")
		}
		return c, err
	}
	return tc
}

// watchPolicy makes the proxy take each authority's route from the
// control plane's Policy API, over Destination's connection (its TLS
// included), unless --policy=false. A controller without the Policy API
// answers UNIMPLEMENTED: the proxy then goes on with its --routes file.
func (f *identityFlags) watchPolicy(cfg *proxy.Config, root *slog.Logger) {
	if !f.policy {
		return
	}
	f.pol = &control.PolicySource{Conn: f.dst.Conn, Proxy: f.dst.Proxy, Log: root.With("component", "policy")}
	cfg.Policy = f.pol
}

// registerMetrics exposes the identity and control-plane state, with
// Linkerd's names where they exist.
func (f *identityFlags) registerMetrics(p *proxy.Proxy) {
	m := p.Metrics()
	if f.mgr != nil {
		m.Gauge("identity_cert_expiration_timestamp_seconds", func() float64 { return float64(f.mgr.Expiry().Unix()) })
		m.Gauge("identity_cert_refresh_count", func() float64 { return float64(f.mgr.Refreshes()) })
		m.Gauge("identity_cert_refresh_failures", func() float64 { return float64(f.mgr.Failures()) })
		m.Gauge("identity_trust_anchors", func() float64 { return float64(len(f.mgr.Bundle().Anchors())) })
	}
	if f.dst != nil {
		m.Gauge("control_destination_connects", func() float64 { return float64(f.dst.Connects()) })
		m.Gauge("control_destination_disconnects", func() float64 { return float64(f.dst.Disconnects()) })
		m.Gauge("control_destination_updates", func() float64 { return float64(f.dst.Updates()) })
	}
	if f.pol != nil {
		m.Gauge("control_policy_connects", func() float64 { return float64(f.pol.Connects()) })
		m.Gauge("control_policy_disconnects", func() float64 { return float64(f.pol.Disconnects()) })
	}
}
