package main

import (
	"crypto/tls"
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
	msgPlaintextNoCert = "serving gRPC in plaintext: no certificate (give --tls-cert-file and --tls-key-file, or run the identity service in this process); " + plaintextHint
	plaintextHint      = "proxies with an identity (--identity-id) refuse a plaintext controller unless started with --control-plane-plaintext"
)

// serverTLS decides how the gRPC API is served, and returns nil for
// plaintext:
//
//   - --plaintext: plaintext, asked for (debugging with grpcurl -plaintext);
//   - the identity service in this process (identity, all): TLS with a
//     certificate its CA issues for --controller-identity;
//   - --tls-cert-file and --tls-key-file (destination, policy): TLS with
//     that certificate, re-read when the files change;
//   - otherwise plaintext, for want of a certificate, with a warning.
func (o *options) serverTLS(authority *ca.CA, log *slog.Logger) (*tls.Config, error) {
	files := o.tlsCertFile != "" || o.tlsKeyFile != ""
	switch {
	case o.plaintext && files:
		return nil, errors.New("--plaintext and --tls-cert-file/--tls-key-file contradict each other: drop one")
	case o.plaintext:
		log.Warn(msgPlaintextAsked)
		return nil, nil
	case authority != nil:
		id := spiffe.ControlPlaneID(authority.TrustDomain())
		if o.controllerID != "" {
			var err error
			if id, err = spiffe.Parse(o.controllerID); err != nil {
				return nil, fmt.Errorf("--controller-identity: %w", err)
			}
		}
		sc, err := identity.NewServingCert(identity.ServingConfig{CA: authority, ID: id, Log: log})
		if err != nil {
			return nil, fmt.Errorf("--controller-identity %s: %w", id, err)
		}
		log.Info("serving gRPC over TLS with a certificate from the identity service", "identity", id.String())
		return sc.TLSConfig(), nil
	case files:
		if o.tlsCertFile == "" || o.tlsKeyFile == "" {
			return nil, errors.New("--tls-cert-file and --tls-key-file go together: give both")
		}
		fc, err := loadFileCert(o.tlsCertFile, o.tlsKeyFile, log)
		if err != nil {
			return nil, err
		}
		log.Info("serving gRPC over TLS with the certificate of --tls-cert-file", "cert_file", o.tlsCertFile, "not_after", fc.cert.Leaf.NotAfter)
		return &tls.Config{
			MinVersion:     tls.VersionTLS13,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return fc.get(), nil },
			// No trust bundle in this process to verify client
			// certificates against, and no service here needs the
			// client's identity: none is asked for.
			ClientAuth:             tls.NoClientCert,
			SessionTicketsDisabled: true,
		}, nil
	}
	log.Warn(msgPlaintextNoCert)
	return nil, nil
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
