package control

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
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

// errLog is a slog handler that sends the err attribute of each record.
type errLog chan string

func (h errLog) Enabled(context.Context, slog.Level) bool { return true }
func (h errLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			select {
			case h <- a.Value.String():
			default:
			}
		}
		return true
	})
	return nil
}
func (h errLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errLog) WithGroup(string) slog.Handler      { return h }

// TestControlPlaneIdentityMismatch: a control plane whose certificate
// chains to the proxy's anchors but names another identity than the one
// expected is refused by both the Certifier and the DestinationSource,
// with an error naming the expected and the presented identity.
func TestControlPlaneIdentityMismatch(t *testing.T) {
	leakcheck.Check(t)
	pki := catest.New(t, "cluster.local", catest.Options{})
	impostor := spiffe.MustNew("cluster.local", "shop", "web")
	serverCert := pki.TLSCertificate(t, impostor)
	fakeID := &fakeIdentity{certify: func(context.Context, *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
		return &identityv1.CertifyResponse{LeafCertificate: []byte("leaf")}, nil
	}}
	srv := &grpcServer{t: t, addr: "127.0.0.1:0",
		reg: func(s *grpc.Server) {
			identityv1.RegisterIdentityServer(s, fakeID)
			destinationv1.RegisterDestinationServer(s, newFakeDestination())
		},
		opts: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*serverCert}, MinVersion: tls.VersionTLS13}))}}
	srv.start()
	t.Cleanup(srv.stop)

	want := spiffe.ControlPlaneID("cluster.local")
	cfg := certs.ControlPlaneTLSConfig(want, func() *spiffe.Bundle { return pki.Bundle }, nil)
	names := func(msg string) bool {
		return strings.Contains(msg, "expected server "+want.String()) && strings.Contains(msg, "certificate for "+impostor.String())
	}

	conn := NewConn(srv.addr, ConnConfig{TLS: cfg})
	t.Cleanup(conn.Close)
	_, _, err := (&Certifier{Conn: conn}).Certify(t.Context(), []byte("csr"), "spiffe://cluster.local/ns/a/sa/b", "tok")
	if StatusCode(err) != CodeUnavailable || !names(err.Error()) {
		t.Fatalf("Certify from an impostor: %v; want Unavailable naming %s and %s", err, want, impostor)
	}
	if !errors.Is(err, certs.ErrIdentityMismatch) {
		t.Errorf("Certify from an impostor: %v does not match certs.ErrIdentityMismatch", err)
	}
	t.Logf("Certify: %v", err)

	logged := make(errLog, 1)
	dconn := NewConn(srv.addr, ConnConfig{TLS: cfg})
	t.Cleanup(dconn.Close)
	src := &DestinationSource{Conn: dconn, Log: slog.New(logged)}
	snaps := watching(t, src, "web.shop.svc.cluster.local:8080")
	select {
	case msg := <-logged:
		if !names(msg) {
			t.Fatalf("Destination watch from an impostor: %s; want an error naming %s and %s", msg, want, impostor)
		}
	case <-time.After(waitLimit):
		t.Fatal("the Destination watch logged no error")
	}
	noSnapshot(t, snaps)
	if src.ConnectFailures() == 0 && src.Disconnects() == 0 {
		t.Error("the failed watch counted neither a connect failure nor a disconnect")
	}
}
