package local

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
	"github.com/skiff-mesh/skiff/scenarios"
)

// AnchorPropagationTimeout bounds the wait, after a change of the trust
// bundle, for every running sidecar to report it.
const AnchorPropagationTimeout = 15 * time.Second

// pki is what an install keeps of the mesh's identity: the trust anchors
// (their keys would be offline in a real cluster) and the issuer the
// controller signs with. The simulator holds them to perform rotations.
type pki struct {
	mu      sync.Mutex
	anchors []*ca.KeyPair // the trust bundle, oldest first
	issuer  *ca.KeyPair
	clients map[string]*clientCert // ControlTLSConfig's certificates, by service account
	signer  *ca.CA                 // signs them, with issuer; nil until the first
}

// clientCert is a control-plane client's certificate and what it was
// issued under.
type clientCert struct {
	cert    *tls.Certificate
	issuer  *ca.KeyPair
	renewAt time.Time
}

// setUpIdentity makes the trust anchor, the issuer, the token key the
// controller verifies with and one identity token per pod, in
// RunDir/identity.
func (e *Env) setUpIdentity() error {
	e.idDir = filepath.Join(e.runDir, "identity")
	if err := os.MkdirAll(e.idDir, 0o700); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	// The trust anchor and issuer are made once, as an install would:
	// a restarted controller must keep signing under the same anchor, or
	// the pods it certifies next are strangers to the others.
	anchor, err := ca.NewAnchor(TrustDomain, ca.Options{})
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	issuer, err := ca.NewIssuer(anchor, ca.Options{})
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	e.pki.anchors, e.pki.issuer = []*ca.KeyPair{anchor}, issuer
	if err := e.writeIssuer(issuer); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := e.writeBundle(e.pki.anchors); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	key, err := ca.NewHMACKey()
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := os.WriteFile(filepath.Join(e.idDir, "token.key"), []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	e.tokens, err = ca.NewHMACTokens(key, nil)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	pods := []string{ClientPod}
	for _, s := range e.services {
		for _, p := range s.pods {
			pods = append(pods, p.name)
		}
	}
	for i, name := range pods {
		p := e.pods[name]
		if name == ClientPod {
			p = e.client
		}
		id, err := spiffe.Parse(p.spiffeID())
		if err != nil {
			return fmt.Errorf("identity of %s: %w", name, err)
		}
		// Each pod's token is its own, as a pod-bound ServiceAccount token
		// is in Kubernetes: replicas of a service, issued within the same
		// second, would otherwise get the same bytes (and share the
		// controller's per-token rate limit of Certify).
		tok, err := e.tokens.Issue(id, 7*24*time.Hour+time.Duration(i)*time.Second)
		if err != nil {
			return fmt.Errorf("identity token of %s: %w", name, err)
		}
		if err := os.WriteFile(e.tokenPath(name), []byte(tok), 0o600); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	return nil
}

func (e *Env) issuerFiles() (certFile, keyFile string) {
	return filepath.Join(e.idDir, "issuer.crt"), filepath.Join(e.idDir, "issuer.key")
}

// writeIssuer replaces the issuer files, each renamed into place. The
// controller reloads them (--identity-reload-interval); between the two
// renames it sees a certificate without its key, which it ignores.
func (e *Env) writeIssuer(issuer *ca.KeyPair) error {
	certFile, keyFile := e.issuerFiles()
	return issuer.WriteFiles(certFile, keyFile)
}

// writeBundle replaces the trust anchors file that the controller and
// every sidecar read, renamed into place.
func (e *Env) writeBundle(anchors []*ca.KeyPair) error {
	var pem []byte
	for _, a := range anchors {
		pem = append(pem, spiffe.EncodeCertificatesPEM(a.Cert)...)
	}
	path := e.TrustAnchorsPath()
	tmp, err := os.CreateTemp(e.idDir, ".trust-anchors-*.pem")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(pem)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// RotateIssuer gives the controller a new issuer signed by the newest
// trust anchor: step 2 of an anchor rotation, or a routine issuer
// rotation. Leaves signed from then on chain to it; existing ones stay
// valid until their sidecars renew them.
func (e *Env) RotateIssuer(context.Context) error {
	if e.idDir == "" {
		return errors.New("local: rotate issuer: no control plane")
	}
	e.pki.mu.Lock()
	defer e.pki.mu.Unlock()
	anchor := e.pki.anchors[len(e.pki.anchors)-1]
	issuer, err := ca.NewIssuer(anchor, ca.Options{})
	if err != nil {
		return fmt.Errorf("local: rotate issuer: %w", err)
	}
	if err := e.writeIssuer(issuer); err != nil {
		return fmt.Errorf("local: rotate issuer: %w", err)
	}
	e.pki.issuer = issuer
	e.log.Debug("issuer rotated", "issuer_serial", issuer.Cert.SerialNumber.Text(16), "anchor", len(e.pki.anchors))
	return nil
}

// AddTrustAnchor makes a new trust anchor, adds it to the bundle file,
// and waits until every running sidecar reports the larger bundle: step 1
// of an anchor rotation. Nothing is signed under the new anchor until
// RotateIssuer.
func (e *Env) AddTrustAnchor(ctx context.Context) error {
	if e.idDir == "" {
		return errors.New("local: add trust anchor: no control plane")
	}
	e.pki.mu.Lock()
	anchor, err := ca.NewAnchor(TrustDomain, ca.Options{})
	if err != nil {
		e.pki.mu.Unlock()
		return fmt.Errorf("local: add trust anchor: %w", err)
	}
	anchors := append(append([]*ca.KeyPair(nil), e.pki.anchors...), anchor)
	if err := e.writeBundle(anchors); err != nil {
		e.pki.mu.Unlock()
		return fmt.Errorf("local: add trust anchor: %w", err)
	}
	e.pki.anchors = anchors
	e.pki.mu.Unlock()
	e.log.Debug("trust anchor added", "anchors", len(anchors))
	return e.waitAnchors(ctx, len(anchors))
}

// RetireTrustAnchors keeps only the newest anchor in the bundle file and
// waits until every running sidecar reports it: step 4 of an anchor
// rotation. It is refused while the issuer still chains to an older
// anchor: the controller would refuse the bundle, and every leaf it signs
// would be untrusted.
func (e *Env) RetireTrustAnchors(ctx context.Context) error {
	if e.idDir == "" {
		return errors.New("local: retire trust anchors: no control plane")
	}
	e.pki.mu.Lock()
	newest := e.pki.anchors[len(e.pki.anchors)-1]
	if len(e.pki.anchors) == 1 {
		e.pki.mu.Unlock()
		return errors.New("local: retire trust anchors: the bundle holds one anchor; add_trust_anchor first")
	}
	if err := e.pki.issuer.Cert.CheckSignatureFrom(newest.Cert); err != nil {
		e.pki.mu.Unlock()
		return errors.New("local: retire trust anchors: the issuer still chains to an older anchor; rotate_issuer first")
	}
	if err := e.writeBundle([]*ca.KeyPair{newest}); err != nil {
		e.pki.mu.Unlock()
		return fmt.Errorf("local: retire trust anchors: %w", err)
	}
	e.pki.anchors = []*ca.KeyPair{newest}
	e.pki.mu.Unlock()
	e.log.Debug("older trust anchors retired")
	return e.waitAnchors(ctx, 1)
}

// Issuer returns the issuer the controller is given to sign with; nil
// without a control plane.
func (e *Env) Issuer() *ca.KeyPair {
	e.pki.mu.Lock()
	defer e.pki.mu.Unlock()
	return e.pki.issuer
}

// TrustBundle returns the anchors of the trust bundle file; nil without
// a control plane.
func (e *Env) TrustBundle() *spiffe.Bundle {
	e.pki.mu.Lock()
	defer e.pki.mu.Unlock()
	if len(e.pki.anchors) == 0 {
		return nil
	}
	certs := make([]*x509.Certificate, len(e.pki.anchors))
	for i, a := range e.pki.anchors {
		certs[i] = a.Cert
	}
	b, err := spiffe.NewBundle(TrustDomain, certs...)
	if err != nil {
		return nil
	}
	return b
}

// ControlTLSConfig returns the TLS configuration of a client of the
// controller's gRPC API that checks it as a proxy does: the controller's
// chain verified against the current trust bundle ([Env.TrustBundle], so
// it follows rotations), its SPIFFE ID the default one
// (spiffe.ControlPlaneID). Like a proxy, it presents a mesh certificate,
// for spiffe://TrustDomain/ns/Namespace/sa/<serviceAccount>, issued by the
// current issuer (again after a rotation); the controller serves
// Destination and Policy to no one else. The certificate is issued at
// once, so that a first handshake does not wait for it. Use it with
// control.ConnConfig.TLS or grpc-go's credentials.NewTLS.
func (e *Env) ControlTLSConfig(serviceAccount string) *tls.Config {
	cert := func() *tls.Certificate {
		c, err := e.controlClientCert(serviceAccount)
		if err != nil {
			e.log.Warn("no client certificate for the controller", "service_account", serviceAccount, "err", err)
			return nil
		}
		return c
	}
	cert()
	return certs.ControlPlaneTLSConfig(spiffe.ControlPlaneID(TrustDomain), e.TrustBundle, cert)
}

// controlClientCert returns the certificate of ControlTLSConfig for
// serviceAccount, issuing a new one when there is none, the issuer has
// changed, or half of its lifetime has passed. Keys are made and signed
// outside the lock: the scale scenario's watchers ask for theirs at once.
func (e *Env) controlClientCert(serviceAccount string) (*tls.Certificate, error) {
	now := time.Now()
	e.pki.mu.Lock()
	if c := e.pki.clients[serviceAccount]; c != nil && c.issuer == e.pki.issuer && now.Before(c.renewAt) {
		e.pki.mu.Unlock()
		return c.cert, nil
	}
	signer, issuer, err := e.clientSigner()
	e.pki.mu.Unlock()
	if err != nil {
		return nil, err
	}
	id, err := spiffe.New(TrustDomain, Namespace, serviceAccount)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	issued, err := signer.IssueServing(key.Public(), id)
	if err != nil {
		return nil, err
	}
	c := &clientCert{
		cert:    &tls.Certificate{Certificate: issued.Chain, PrivateKey: key, Leaf: issued.Leaf},
		issuer:  issuer,
		renewAt: now.Add(issued.NotAfter.Sub(now) / 2),
	}
	e.pki.mu.Lock()
	defer e.pki.mu.Unlock()
	if e.pki.clients == nil {
		e.pki.clients = make(map[string]*clientCert)
	}
	e.pki.clients[serviceAccount] = c
	return c.cert, nil
}

// clientSigner returns the CA that signs ControlTLSConfig's certificates
// with the current issuer, made anew after a rotation; e.pki.mu is held.
func (e *Env) clientSigner() (*ca.CA, *ca.KeyPair, error) {
	issuer := e.pki.issuer
	if issuer == nil {
		return nil, nil, errors.New("local: no control plane")
	}
	if e.pki.signer != nil && e.pki.signer.Issuer() == issuer {
		return e.pki.signer, issuer, nil
	}
	anchors := make([]*x509.Certificate, len(e.pki.anchors))
	for i, a := range e.pki.anchors {
		anchors[i] = a.Cert
	}
	bundle, err := spiffe.NewBundle(TrustDomain, anchors...)
	if err != nil {
		return nil, nil, err
	}
	signer, err := ca.New(ca.Config{Issuer: issuer, Bundle: bundle, Tokens: e.tokens})
	if err != nil {
		return nil, nil, err
	}
	e.pki.signer = signer
	return signer, issuer, nil
}

// waitAnchors waits until every running meshed sidecar reports a bundle
// of n anchors (its identity_trust_anchors metric).
func (e *Env) waitAnchors(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, AnchorPropagationTimeout)
	defer cancel()
	for {
		var behind []string
		for _, p := range e.meshedPods() {
			if !p.Ready() {
				continue // down or paused: it reads the file when it comes back
			}
			if v, err := p.Gauges(ctx, "identity_trust_anchors"); err != nil || v[0] != float64(n) {
				behind = append(behind, p.name)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local: sidecars %s did not report %d trust anchors within %v", strings.Join(behind, ", "), n, AnchorPropagationTimeout)
		case <-time.After(e.cfg.EndpointsPoll):
		}
	}
}

// meshedPods lists the pods that run a sidecar, the client's included.
func (e *Env) meshedPods() []*Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Pod
	for _, s := range e.services {
		for _, p := range s.pods {
			if p.Meshed() {
				out = append(out, p)
			}
		}
	}
	if e.client != nil {
		out = append(out, e.client)
	}
	return out
}

// Gauges reads unlabelled samples from the pod's sidecar /metrics, in the
// order of names; a missing one is an error naming it.
func (p *Pod) Gauges(ctx context.Context, names ...string) ([]float64, error) {
	out := make([]float64, len(names))
	found := make([]bool, len(names))
	err := p.scanMetrics(ctx, func(line string) {
		for i, n := range names {
			if v, ok := strings.CutPrefix(line, n+" "); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					out[i], found[i] = f, true
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("%s: no %s in /metrics", p.name, names[i])
		}
	}
	return out, nil
}

// scanMetrics reads the pod's sidecar /metrics and hands each line to fn.
func (p *Pod) scanMetrics(ctx context.Context, fn func(line string)) error {
	ctx, cancel := context.WithTimeout(ctx, p.env.cfg.ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.AdminAddr()+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := p.env.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// A sidecar's page is a few KiB; the bound keeps a broken one from
	// costing the harness more than this.
	sc := bufio.NewScanner(io.LimitReader(resp.Body, maxMetricsBytes))
	for sc.Scan() {
		fn(sc.Text())
	}
	return sc.Err()
}

// maxMetricsBytes bounds what scanMetrics reads of a sidecar's /metrics.
const maxMetricsBytes = 8 << 20

// The identity faults act on the controller pod (faultinject.Authority).

// RotateIssuer does Env.RotateIssuer; only the controller pod can.
func (p *Pod) RotateIssuer(ctx context.Context) error {
	if !p.controller {
		return fmt.Errorf("local: %s does not run the certificate authority", p.name)
	}
	return p.env.RotateIssuer(ctx)
}

// AddTrustAnchor does Env.AddTrustAnchor; only the controller pod can.
func (p *Pod) AddTrustAnchor(ctx context.Context) error {
	if !p.controller {
		return fmt.Errorf("local: %s does not run the certificate authority", p.name)
	}
	return p.env.AddTrustAnchor(ctx)
}

// RetireTrustAnchors does Env.RetireTrustAnchors; only the controller
// pod can.
func (p *Pod) RetireTrustAnchors(ctx context.Context) error {
	if !p.controller {
		return fmt.Errorf("local: %s does not run the certificate authority", p.name)
	}
	return p.env.RetireTrustAnchors(ctx)
}

// Sums reads the pod's sidecar /metrics and sums, for each of names, every
// sample of that metric whatever its labels, or, for a name with label
// matchers (scenarios.ParseSeries), every sample whose labels include
// them; a metric with no sample is 0.
func (p *Pod) Sums(ctx context.Context, names ...string) ([]float64, error) {
	series := make([]scenarios.Series, len(names))
	for i, n := range names {
		s, err := scenarios.ParseSeries(n)
		if err != nil {
			return nil, fmt.Errorf("local: %s: %w", p.name, err)
		}
		series[i] = s
	}
	out := make([]float64, len(names))
	err := p.scanMetrics(ctx, func(line string) {
		for i, s := range series {
			if v, ok := s.Match(line); ok {
				out[i] += v
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
