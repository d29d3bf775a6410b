package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// The log lines of a plaintext controller; each says what it costs.
const (
	msgPlaintextAsked  = "serving gRPC in plaintext, as --plaintext asks; " + plaintextHint
	plaintextHint      = "proxies with an identity (--identity-id) refuse a plaintext controller unless started with --control-plane-plaintext"
	msgUnauthenticated = "Destination and Policy answer every client in plaintext: no client certificate can be verified, so endpoints, the identities they must prove and routing are served to anyone who connects"
)

// serverTLS decides how the gRPC API is served, and returns nil for
// plaintext, with the trust bundle client certificates are verified
// against (nil in plaintext):
//
//   - --plaintext: plaintext, asked for (debugging with grpcurl -plaintext);
//   - the identity service in this process (identity, all): TLS with a
//     certificate its CA issues for --controller-identity; client
//     certificates verified against the CA's current bundle;
//   - --tls-cert-file and --tls-key-file (destination, policy): TLS with
//     that certificate, re-read when the files change; client
//     certificates verified against --trust-anchors, re-read likewise;
//   - otherwise an error: Destination and Policy serve only authenticated
//     proxies, and plaintext must be asked for.
//
// Client certificates are requested, not required: Identity.Certify
// serves proxies that have none yet, and a missing certificate is refused
// per call by the access guard with a status that says so, rather than by
// the handshake with a bare TLS alert. A certificate that is presented
// must verify, or the handshake fails.
func (o *options) serverTLS(authority *ca.CA, log *slog.Logger) (*tls.Config, func() *spiffe.Bundle, error) {
	files := o.tlsCertFile != "" || o.tlsKeyFile != ""
	switch {
	case o.plaintext && files:
		return nil, nil, errors.New("--plaintext and --tls-cert-file/--tls-key-file contradict each other: drop one")
	case o.plaintext:
		log.Warn(msgPlaintextAsked)
		return nil, nil, nil
	case authority != nil:
		id := spiffe.ControlPlaneID(authority.TrustDomain())
		if o.controllerID != "" {
			var err error
			if id, err = spiffe.Parse(o.controllerID); err != nil {
				return nil, nil, fmt.Errorf("--controller-identity: %w", err)
			}
		}
		sc, err := identity.NewServingCert(identity.ServingConfig{CA: authority, ID: id, Log: log})
		if err != nil {
			return nil, nil, fmt.Errorf("--controller-identity %s: %w", id, err)
		}
		log.Info("serving gRPC over TLS with a certificate from the identity service", "identity", id.String())
		return sc.TLSConfig(), authority.Bundle, nil
	case files:
		if o.tlsCertFile == "" || o.tlsKeyFile == "" {
			return nil, nil, errors.New("--tls-cert-file and --tls-key-file go together: give both")
		}
		if o.trustAnchors == "" {
			return nil, nil, errors.New("--tls-cert-file needs --trust-anchors: the mesh's trust anchors, which the proxies' client certificates are verified against")
		}
		fc, err := loadFileCert(o.tlsCertFile, o.tlsKeyFile, log)
		if err != nil {
			return nil, nil, err
		}
		fb, err := loadFileBundle(o.trustAnchors, o.trustDomain, log)
		if err != nil {
			return nil, nil, err
		}
		log.Info("serving gRPC over TLS with the certificate of --tls-cert-file", "cert_file", o.tlsCertFile, "not_after", fc.cert.Leaf.NotAfter,
			"trust_anchors", o.trustAnchors)
		return &tls.Config{
			MinVersion:     tls.VersionTLS13,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return fc.get(), nil },
			ClientAuth:     tls.RequestClientCert,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return nil // the access guard refuses its calls, saying why
				}
				if _, err := fb.get().Verify(cs.PeerCertificates, time.Now(), x509.ExtKeyUsageClientAuth); err != nil {
					return fmt.Errorf("client certificate rejected: %w", err)
				}
				return nil
			},
			SessionTicketsDisabled: true,
		}, fb.get, nil
	}
	return nil, nil, errors.New("no certificate to serve gRPC over TLS with: give --tls-cert-file, --tls-key-file and --trust-anchors " +
		"(Destination and Policy serve only proxies that present a mesh client certificate), or run the identity service in this process; " +
		"--plaintext serves everyone without TLS")
}

// fileCheckInterval is how often, at most, a handshake checks whether the
// certificate files have changed.
const fileCheckInterval = time.Second

// fileCert is a serving certificate read from PEM files (a cert-manager
// Secret, say), read again at a handshake when either file has changed
// since the last read; a pair that does not load (the certificate
// replaced before its key) leaves the current one in use.
type fileCert struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate // Leaf set
	stamps  [2]fileStamp
	checked time.Time
}

// fileStamp tells whether a file has changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func loadFileCert(certFile, keyFile string, log *slog.Logger) (*fileCert, error) {
	fc := &fileCert{certFile: certFile, keyFile: keyFile, log: log}
	stamps, err := fc.stat()
	if err != nil {
		return nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
	}
	fc.cert, fc.stamps, fc.checked = &cert, stamps, time.Now()
	return fc, nil
}

func (fc *fileCert) stat() ([2]fileStamp, error) {
	var st [2]fileStamp
	for i, name := range []string{fc.certFile, fc.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return st, err
		}
		st[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return st, nil
}

// get returns the certificate, read again first if the files changed.
func (fc *fileCert) get() *tls.Certificate {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if time.Since(fc.checked) < fileCheckInterval {
		return fc.cert
	}
	fc.checked = time.Now()
	stamps, err := fc.stat()
	if err != nil || stamps == fc.stamps {
		return fc.cert
	}
	cert, err := tls.LoadX509KeyPair(fc.certFile, fc.keyFile)
	if err != nil {
		fc.log.Warn("--tls-cert-file/--tls-key-file changed but do not load; serving the previous certificate", "err", err)
		return fc.cert // stamps kept: tried again at the next check
	}
	fc.cert, fc.stamps = &cert, stamps
	fc.log.Info("serving certificate reloaded", "cert_file", fc.certFile, "not_after", cert.Leaf.NotAfter)
	return fc.cert
}

// fileBundle is the trust bundle of a PEM file (a ConfigMap, say), read
// again when the file has changed, at most once per fileCheckInterval; a
// file that does not parse leaves the current bundle in use.
type fileBundle struct {
	path, trustDomain string
	log               *slog.Logger

	mu      sync.Mutex
	bundle  *spiffe.Bundle
	stamp   fileStamp
	checked time.Time
}

func loadFileBundle(path, trustDomain string, log *slog.Logger) (*fileBundle, error) {
	fb := &fileBundle{path: path, trustDomain: trustDomain, log: log}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--trust-anchors: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--trust-anchors: %w", err)
	}
	if fb.bundle, err = spiffe.ParseBundlePEM(trustDomain, data); err != nil {
		return nil, fmt.Errorf("--trust-anchors %s: %w", path, err)
	}
	fb.stamp, fb.checked = fileStamp{mod: fi.ModTime(), size: fi.Size()}, time.Now()
	return fb, nil
}

// get returns the bundle, read again first if the file changed.
func (fb *fileBundle) get() *spiffe.Bundle {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if time.Since(fb.checked) < fileCheckInterval {
		return fb.bundle
	}
	fb.checked = time.Now()
	fi, err := os.Stat(fb.path)
	if err != nil {
		return fb.bundle
	}
	stamp := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if stamp == fb.stamp {
		return fb.bundle
	}
	data, err := os.ReadFile(fb.path)
	var b *spiffe.Bundle
	if err == nil {
		b, err = spiffe.ParseBundlePEM(fb.trustDomain, data)
	}
	if err != nil {
		fb.log.Warn("--trust-anchors changed but does not load; verifying clients with the previous anchors", "err", err)
		return fb.bundle // stamp kept: tried again at the next check
	}
	fb.bundle, fb.stamp = b, stamp
	fb.log.Info("trust anchors reloaded", "trust_anchors", fb.path, "anchors", len(b.Anchors()))
	return fb.bundle
}
