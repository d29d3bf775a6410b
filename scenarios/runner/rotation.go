package runner

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
	"github.com/skiff-mesh/skiff/scenarios/spec"
	"github.com/skiff-mesh/skiff/simulator/local"
)

// rotationInterval is the pause between two rounds of rotation probes.
const rotationInterval = 500 * time.Millisecond

// rotationMetrics are the metrics the rotation prober provides; a
// scenario that asserts on one of them gets the prober.
var rotationMetrics = []string{
	"rotation_probes", "rotation_probe_failures", "served_leaves_min",
	"current_issuer_share", "cert_refreshes_min", "cert_refresh_failures",
}

// needsRotation says whether an assertion uses a rotation metric.
func needsRotation(sc *spec.Scenario) bool {
	for _, a := range sc.Assertions {
		for _, m := range rotationMetrics {
			if strings.Contains(a.Expr, m) {
				return true
			}
		}
	}
	return false
}

// rotationProber watches certificate rotation from outside the sidecars.
// Every round it opens a new mutual-TLS connection to each server pod's
// inbound port, as a client of the mesh would: it presents a certificate
// from the environment's current issuer, verifies the sidecar's chain
// against the environment's current trust bundle and its SPIFFE ID against
// the pod's service account, and sends one request through it. Pooled
// connections between sidecars outlive a rotation; these fresh handshakes
// are what shows that, at every moment of the run, a newcomer can still
// get in and gets the certificate of the moment.
type rotationProber struct {
	env  *local.Env
	pods []*local.Pod

	mu       sync.Mutex
	probes   int
	failures []string            // one line each, for the log
	leaves   map[string][]string // pod -> distinct leaf serials served, in order
	lastLeaf map[string]*x509.Certificate
}

func newRotationProber(env *local.Env, pods []*local.Pod) *rotationProber {
	return &rotationProber{env: env, pods: pods, leaves: map[string][]string{}, lastLeaf: map[string]*x509.Certificate{}}
}

// run probes every rotationInterval until ctx ends.
func (rp *rotationProber) run(ctx context.Context) {
	t := time.NewTicker(rotationInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rp.round(ctx)
	}
}

// round probes each ready pod once. A pod that is down is skipped: its
// absence is the failover scenarios' business, not identity's.
func (rp *rotationProber) round(ctx context.Context) {
	for _, p := range rp.pods {
		if !p.Ready() {
			continue
		}
		leaf, err := rp.probe(ctx, p)
		rp.mu.Lock()
		rp.probes++
		if err != nil {
			rp.failures = append(rp.failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), p.Name(), err))
		} else {
			serial := leaf.SerialNumber.Text(16)
			seen := rp.leaves[p.Name()]
			if len(seen) == 0 || seen[len(seen)-1] != serial {
				rp.leaves[p.Name()] = append(seen, serial)
			}
			rp.lastLeaf[p.Name()] = leaf
		}
		rp.mu.Unlock()
	}
}

// probe makes one mTLS request to p's inbound and returns the leaf the
// sidecar presented.
func (rp *rotationProber) probe(ctx context.Context, p *local.Pod) (*x509.Certificate, error) {
	issuer, bundle := rp.env.Issuer(), rp.env.TrustBundle()
	if issuer == nil || bundle == nil {
		return nil, errors.New("the environment has no identity")
	}
	now := time.Now()
	cert, err := signLeaf(issuer, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		return nil, err
	}
	want := spiffe.MustNew(local.TrustDomain, local.Namespace, p.Service())
	var leaf *x509.Certificate
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := rp.env.Dial(dctx, "tcp", p.InboundAddr())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(now.Add(3 * time.Second))
	tc := tls.Client(c, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"},
		// Verified below against the SPIFFE bundle, as a sidecar does:
		// there is no DNS name to check.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := bundle.Verify(cs.PeerCertificates, time.Now(), x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if id != want {
				return fmt.Errorf("server identity %s, want %s", id, want)
			}
			leaf = cs.PeerCertificates[0]
			return nil
		},
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+p.Service()+"\r\nConnection: close\r\n\r\n"); err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("response: %s", resp.Status)
	}
	return leaf, nil
}

// metrics adds the prober's findings and the sidecars' own identity
// counters to m.
func (rp *rotationProber) metrics(m map[string]float64) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	m["rotation_probes"] = float64(rp.probes)
	m["rotation_probe_failures"] = float64(len(rp.failures))
	served := math.Inf(1)
	current, probed := 0, 0
	issuer := rp.env.Issuer()
	for _, p := range rp.pods {
		served = math.Min(served, float64(len(rp.leaves[p.Name()])))
		if leaf := rp.lastLeaf[p.Name()]; leaf != nil {
			probed++
			if issuer != nil && leaf.CheckSignatureFrom(issuer.Cert) == nil {
				current++
			}
		}
	}
	if len(rp.pods) > 0 {
		m["served_leaves_min"] = served
	}
	if probed > 0 {
		m["current_issuer_share"] = float64(current) / float64(probed)
	}
}

// sidecarIdentity reads every meshed sidecar's identity counters:
// cert_refreshes_min is the fewest certificates any sidecar obtained (the
// first included), cert_refresh_failures the failed attempts of all.
func sidecarIdentity(ctx context.Context, env *local.Env, m map[string]float64) error {
	var pods []*local.Pod
	for _, svc := range env.Services() {
		pods = append(pods, env.Pods(svc.Name)...)
	}
	if p, err := env.Pod(local.ClientPod); err == nil {
		pods = append(pods, p)
	}
	least, failures := math.Inf(1), 0.0
	for _, p := range pods {
		if !p.Meshed() {
			continue
		}
		vals, err := p.Gauges(ctx, "identity_cert_refresh_count", "identity_cert_refresh_failures")
		if err != nil {
			return err
		}
		least = math.Min(least, vals[0])
		failures += vals[1]
	}
	if !math.IsInf(least, 1) {
		m["cert_refreshes_min"] = least
	}
	m["cert_refresh_failures"] = failures
	return nil
}
