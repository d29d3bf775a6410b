package runner

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
	"github.com/skiff-mesh/skiff/simulator/local"
)

// Marker is the payload marker of mTLS scenarios: every request's body is
// the marker, echoed back, and the chaos links between sidecars count how
// often it crosses the network in plaintext (plaintext_marker_hits).
const Marker = "SKIFF-PLAINTEXT-CANARY-7f3a9"

// mtlsEvidence is what a run learns about mutual TLS, gathered before the
// environment is torn down.
type mtlsEvidence struct {
	inboundTLS  float64 // share of inbound requests over mTLS with a client identity
	probes      map[string]float64
	probeErrors []string
}

// gatherMTLS reads the inbound proxies' view, and
// runs the active probes: a plaintext client, a certificate from another
// trust root and an expired certificate, each against a pod's inbound.
func (r *run) gatherMTLS(ctx context.Context) *mtlsEvidence {
	ev := &mtlsEvidence{probes: map[string]float64{}}
	env := r.local
	if env == nil {
		ev.probeErrors = append(ev.probeErrors, "environment "+r.env.Name()+" does not offer the mTLS probes yet")
		return ev
	}
	var all, withID float64
	for _, svc := range env.Services() {
		for _, p := range env.Pods(svc.Name) {
			a, w := inboundTLS(ctx, env.Dial, p.AdminAddr())
			all, withID = all+a, withID+w
		}
	}
	if all > 0 {
		ev.inboundTLS = withID / all
	}
	pods := env.Pods(r.sc.Load.Target)
	if len(pods) == 0 || env.IdentityDir() == "" {
		return ev
	}
	target := pods[0].InboundAddr()
	probe := func(name string, refused bool, err error) {
		if err != nil {
			ev.probeErrors = append(ev.probeErrors, name+": "+err.Error())
			return
		}
		ev.probes[name] = 0
		if refused {
			ev.probes[name] = 1
		}
	}
	refused, err := plaintextRefused(ctx, env.Dial, target)
	probe("plaintext_refused", refused, err)
	cert, err := foreignCert()
	if err == nil {
		refused, err = tlsRefused(ctx, env.Dial, target, cert)
	}
	probe("foreign_root_refused", refused, err)
	cert, err = expiredCert(env.IdentityDir())
	if err == nil {
		refused, err = tlsRefused(ctx, env.Dial, target, cert)
	}
	probe("expired_cert_refused", refused, err)
	return ev
}

// dialFunc connects the harness to a pod's address (local.Env.Dial).
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// inboundTLS sums a sidecar's inbound request_total: all of them, and
// those over mutual TLS with a client identity.
func inboundTLS(ctx context.Context, dial dialFunc, admin string) (all, withID float64) {
	if admin == "" {
		return 0, 0
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	tr := &http.Transport{DialContext: dial, Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `request_total{direction="inbound"`) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		all += v
		if strings.Contains(line, `tls="true"`) && strings.Contains(line, `client_id="spiffe://`) {
			withID += v
		}
	}
	return all, withID
}

// plaintextRefused sends a plaintext request; refused when nothing answers.
func plaintextRefused(ctx context.Context, dial dialFunc, addr string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: probe\r\n\r\n")
	b, _ := io.ReadAll(c)
	return len(b) == 0, nil
}

// tlsRefused offers cert in a TLS 1.3 handshake; refused when the server
// aborts it (in TLS 1.3 the verdict may come with the first read).
func tlsRefused(ctx context.Context, dial dialFunc, addr string, cert tls.Certificate) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	tc := tls.Client(c, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		// The probe tests the server's judgement of the client, not the
		// other way round.
		InsecureSkipVerify: true, NextProtos: []string{"http/1.1"},
	})
	if err := tc.Handshake(); err != nil {
		return true, nil
	}
	io.WriteString(tc, "GET / HTTP/1.1\r\nHost: probe\r\n\r\n")
	_, err = tc.Read(make([]byte, 1))
	return err != nil, nil
}

// probeID is the client identity the probes claim.
var probeID = spiffe.MustNew(local.TrustDomain, local.Namespace, local.ClientPod)

// foreignCert is a current certificate for probeID from another trust
// root.
func foreignCert() (tls.Certificate, error) {
	anchor, err := ca.NewAnchor(local.TrustDomain, ca.Options{})
	if err != nil {
		return tls.Certificate{}, err
	}
	issuer, err := ca.NewIssuer(anchor, ca.Options{})
	if err != nil {
		return tls.Certificate{}, err
	}
	return signLeaf(issuer, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// expiredCert is a certificate for probeID from the environment's own
// issuer, which expired an hour ago.
func expiredCert(identityDir string) (tls.Certificate, error) {
	issuer, err := ca.LoadKeyPair(filepath.Join(identityDir, "issuer.crt"), filepath.Join(identityDir, "issuer.key"))
	if err != nil {
		return tls.Certificate{}, err
	}
	return signLeaf(issuer, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
}

// signLeaf has issuer sign a workload certificate for probeID, shaped as
// the CA's (URI SAN only, client and server use) but with any validity.
func signLeaf(issuer *ca.KeyPair, notBefore, notAfter time.Time) (tls.Certificate, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	u, _ := url.Parse(probeID.String())
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: notBefore, NotAfter: notAfter, URIs: []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, &priv.PublicKey, issuer.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign a probe certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, issuer.Cert.Raw}, PrivateKey: priv}, nil
}
