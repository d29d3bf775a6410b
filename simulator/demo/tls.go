package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// TLSCommonName is the subject common name of the certificate the TLS
// echo presents. A client that sees it knows it reached the workload's own
// TLS, not a proxy's: a mesh must pass application TLS through untouched.
const TLSCommonName = "skiff-demo TLS echo"

// tlsHandshakeTimeout bounds a TLS echo client's handshake.
const tlsHandshakeTimeout = 10 * time.Second

// selfSigned makes the TLS echo's certificate: a self-signed ECDSA P-256
// certificate for TLSCommonName, with the replica name as its DNS name. It
// is made in memory at start; clients are not expected to trust it, only
// to recognise it.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: TLSCommonName},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour), // a soak run outlives a day
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("demo: TLS echo certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// echoTLS serves one TLS echo connection: the handshake, then the echo of
// what the client sends over TLS until it closes its side (close_notify),
// then close_notify back. With the behaviour's ResetRate it is reset (RST)
// at once instead, before the handshake.
func (s *Server) echoTLS(c net.Conn) {
	s.stats.tlsConns.Add(1)
	rnd := s.rng.derive()
	if s.resetAtAccept(c, rnd) {
		return
	}
	tc := tls.Server(c, s.tlsConfig)
	ctx, cancel := context.WithTimeout(s.ctx, tlsHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("TLS echo handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	s.echo(tc, tc, rnd)
}
