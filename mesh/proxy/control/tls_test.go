package control

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestCertifyOverTLS(t *testing.T) {
	leakcheck.Check(t)
	cert, pool := selfSigned(t)
	fake := &fakeIdentity{certify: func(context.Context, *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
		return &identityv1.CertifyResponse{LeafCertificate: []byte("leaf"), TrustAnchors: [][]byte{[]byte("root")}}, nil
	}}
	srv := &grpcServer{t: t, addr: "127.0.0.1:0", reg: func(s *grpc.Server) { identityv1.RegisterIdentityServer(s, fake) },
		opts: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}))}}
	srv.start()
	t.Cleanup(srv.stop)

	conn := NewConn(srv.addr, ConnConfig{TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}})
	t.Cleanup(conn.Close)
	chain, _, err := (&Certifier{Conn: conn}).Certify(t.Context(), []byte("csr"), "spiffe://x/ns/a/sa/b", "tok")
	if err != nil || len(chain) != 1 || string(chain[0]) != "leaf" {
		t.Fatalf("Certify over TLS: %q, %v", chain, err)
	}

	// A client that does not trust the server's certificate fails, as
	// Unavailable, saying why.
	bad := NewConn(srv.addr, ConnConfig{TLS: &tls.Config{}})
	t.Cleanup(bad.Close)
	_, _, err = (&Certifier{Conn: bad}).Certify(t.Context(), []byte("csr"), "spiffe://x/ns/a/sa/b", "tok")
	if StatusCode(err) != CodeUnavailable {
		t.Fatalf("untrusted server: %v, want Unavailable", err)
	}
	t.Logf("untrusted server: %v", err)
}
