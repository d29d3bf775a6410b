package certs_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

// Two proxies get certificates from the CA and open a mutually
// authenticated connection; the server learns the client's identity, the
// client checks the server's.
func Example() {
	anchor, _ := ca.NewAnchor("cluster.local", ca.Options{})
	issuer, _ := ca.NewIssuer(anchor, ca.Options{})
	bundle, _ := spiffe.NewBundle("cluster.local", anchor.Cert)
	key, _ := ca.NewHMACKey()
	tokens, _ := ca.NewHMACTokens(key, nil)
	authority, _ := ca.New(ca.Config{Issuer: issuer, Bundle: bundle, Tokens: tokens})
	certifier := certs.CertifierFunc(func(ctx context.Context, csr []byte, id, token string) ([][]byte, time.Time, error) {
		c, err := authority.Certify(ctx, csr, id, token) // the gRPC Identity client in the proxy
		if err != nil {
			return nil, time.Time{}, err
		}
		return c.Chain, c.NotAfter, nil
	})
	proxy := func(id spiffe.ID) *certs.Manager {
		m, _ := certs.New(certs.Config{
			ID: id, Certifier: certifier, Bundle: bundle,
			Token: func(context.Context) (string, error) { return tokens.Issue(id, time.Hour) },
		})
		return m
	}
	web, app := spiffe.MustNew("cluster.local", "shop", "web"), spiffe.MustNew("cluster.local", "shop", "app")
	server, client := proxy(web), proxy(app)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go server.Run(ctx) // obtains, then renews at 70 % ± 10 % of the lifetime
	go client.Run(ctx)
	if server.WaitReady(ctx) != nil || client.WaitReady(ctx) != nil {
		return
	}

	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	serverSaw := make(chan spiffe.ID)
	go func() {
		id, _ := certs.Handshake(ctx, tls.Server(s, server.ServerTLSConfig()))
		serverSaw <- id
	}()
	clientSaw, err := certs.Handshake(ctx, tls.Client(c, client.ClientTLSConfig(web)))
	fmt.Println(clientSaw, err)
	fmt.Println(<-serverSaw)
	// Output:
	// spiffe://cluster.local/ns/shop/sa/web <nil>
	// spiffe://cluster.local/ns/shop/sa/app
}
