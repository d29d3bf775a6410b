package idleconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
	"github.com/skiff-mesh/skiff/mesh/control/identity"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// The identities of the h2-mtls kind: the proxy measured, and the peer
// sidecar its clients stand for.
var (
	serverID = spiffe.MustNew(trustDomainName, "idle", "server")
	peerID   = spiffe.MustNew(trustDomainName, "idle", "peer")
)

const trustDomainName = "cluster.local"

// trustDomain is a throwaway mesh for the h2-mtls kind: a CA, the Identity
// API the proxy gets its certificate from (plaintext gRPC on loopback, as
// skiff-controller --plaintext serves it), and the peer's certificate.
type trustDomain struct {
	anchor *ca.KeyPair
	tokens *ca.HMACTokens
	peer   *certs.Manager
	grpc   *grpc.Server
	addr   string
	served chan struct{}
}

func newTrustDomain(ctx context.Context) (*trustDomain, error) {
	td := &trustDomain{}
	var err error
	if td.anchor, err = ca.NewAnchor(trustDomainName, ca.Options{}); err != nil {
		return nil, fmt.Errorf("idleconn: trust anchor: %w", err)
	}
	issuer, err := ca.NewIssuer(td.anchor, ca.Options{})
	if err != nil {
		return nil, fmt.Errorf("idleconn: issuer: %w", err)
	}
	bundle, err := spiffe.NewBundle(trustDomainName, td.anchor.Cert)
	if err != nil {
		return nil, fmt.Errorf("idleconn: bundle: %w", err)
	}
	key, err := ca.NewHMACKey()
	if err != nil {
		return nil, err
	}
	if td.tokens, err = ca.NewHMACTokens(key, nil); err != nil {
		return nil, err
	}
	authority, err := ca.New(ca.Config{Issuer: issuer, Bundle: bundle, Tokens: td.tokens})
	if err != nil {
		return nil, fmt.Errorf("idleconn: CA: %w", err)
	}
	// The peer's certificate comes from the CA directly: one Refresh, no
	// renewal loop (a measurement lasts minutes, the leaf a day).
	td.peer, err = certs.New(certs.Config{
		ID: peerID, Bundle: bundle,
		Certifier: certs.CertifierFunc(func(ctx context.Context, csr []byte, id, token string) ([][]byte, time.Time, error) {
			c, err := authority.Certify(ctx, csr, id, token)
			if err != nil {
				return nil, time.Time{}, err
			}
			return c.Chain, c.NotAfter, nil
		}),
		Token: func(context.Context) (string, error) { return td.tokens.Issue(peerID, time.Hour) },
	})
	if err != nil {
		return nil, err
	}
	if err := td.peer.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("idleconn: the peer's certificate: %w", err)
	}
	ids, err := identity.NewServer(identity.Config{CA: authority, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	td.addr = lis.Addr().String()
	td.grpc = grpc.NewServer()
	identityv1.RegisterIdentityServer(td.grpc, ids)
	td.served = make(chan struct{})
	go func() { td.grpc.Serve(lis); close(td.served) }()
	return td, nil
}

// proxyArgs writes the proxy's token and trust anchors into dir and
// returns the flags that give it its identity.
func (td *trustDomain) proxyArgs(dir string) ([]string, error) {
	tok, err := td.tokens.Issue(serverID, time.Hour)
	if err != nil {
		return nil, err
	}
	tokenFile, anchorsFile := filepath.Join(dir, "token"), filepath.Join(dir, "anchors.pem")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(anchorsFile, spiffe.EncodeCertificatesPEM(td.anchor.Cert), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"--identity-id", serverID.String(), "--identity-addr", td.addr, "--control-plane-plaintext",
		"--identity-token-file", tokenFile, "--trust-anchors", anchorsFile,
	}, nil
}

// clientTLS is a peer sidecar's TLS configuration towards the proxy: its
// certificate, the proxy's identity checked, ALPN h2.
func (td *trustDomain) clientTLS() *tls.Config {
	cfg := td.peer.ClientTLSConfig(serverID)
	cfg.NextProtos = []string{"h2"}
	return cfg
}

func (td *trustDomain) close() {
	td.grpc.Stop()
	<-td.served
}
