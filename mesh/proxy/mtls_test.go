package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca/catest"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// pki is a trust domain's CA for tests, issuing to certificate managers.
type pki struct{ *catest.PKI }

func newPKI(t testing.TB) *pki {
	t.Helper()
	return &pki{catest.New(t, "cluster.local", catest.Options{})}
}

// identity returns a ready certificate manager for id, renewing until the
// test ends.
func (k *pki) identity(t testing.TB, id spiffe.ID) *certs.Manager {
	t.Helper()
	m, err := certs.New(certs.Config{
		ID: id, Bundle: k.Bundle,
		Certifier: certs.CertifierFunc(func(ctx context.Context, csr []byte, id, token string) ([][]byte, time.Time, error) {
			c, err := k.CA.Certify(ctx, csr, id, token)
			if err != nil {
				return nil, time.Time{}, err
			}
			return c.Chain, c.NotAfter, nil
		}),
		Token: func(context.Context) (string, error) { return k.Tokens.Issue(id, time.Hour) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	clientID = spiffe.MustNew("cluster.local", "shop", "web")
	serverID = spiffe.MustNew("cluster.local", "shop", "echo")
)

// newMTLSMesh is the two-hop mesh with mutual TLS between the proxies.
func newMTLSMesh(t *testing.T, k *pki, expect spiffe.ID) *mesh {
	t.Helper()
	m := &mesh{backend: startDemo(t, "echo-1")}
	server := k.identity(t, serverID)
	m.inbound = startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: m.backend.Addr(),
		Identity: server, RequireMTLS: true, ForwardClientID: true})
	tcpIn := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: m.backend.TCPAddr(), Identity: server, RequireMTLS: true})
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{
		svcHTTP: {{Addr: m.inbound.Addr("inbound").String(), Meshed: true, Identity: expect.String()}},
		svcTCP:  {{Addr: tcpIn.Addr("inbound").String(), Meshed: true, Identity: expect.String()}},
	})
	m.outbound = startProxy(t, Config{Endpoints: src, Identity: k.identity(t, clientID), TCPRoutes: []TCPRoute{{Addr: "127.0.0.1:0", Authority: svcTCP}}})
	m.entry = m.outbound.Addr("outbound").String()
	m.tcpAddr = routeAddr(m.outbound, svcTCP)
	return m
}

// TestMTLS runs the protocol matrix with mutual TLS between the proxies,
// in strict mode, and checks identities both ways.
func TestMTLS(t *testing.T) {
	leakcheck.Check(t)
	k := newPKI(t)
	m := newMTLSMesh(t, k, serverID)
	t.Run("http1", func(t *testing.T) { testHTTP(t, m, h1Client(t), "HTTP/1.1") })
	t.Run("h2c", func(t *testing.T) { testHTTP(t, m, h2cClient(t), "HTTP/2.0") })
	t.Run("grpc", func(t *testing.T) { testGRPC(t, m.entry) })
	t.Run("tcp", func(t *testing.T) { testTCP(t, m.tcpAddr) })
	t.Run("client-identity", func(t *testing.T) {
		// The app learns who called from the handshake; a forged header
		// is replaced.
		resp, _ := do(t, h1Client(t), "GET", "http://"+m.entry+"/", svcHTTP, nil, http.Header{
			ClientIDHeader: {"spiffe://evil/ns/x/sa/y"}, "X-Echo-Seen": {"1"}})
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		in := scrape(t, m.inbound)
		if !strings.Contains(in, `tls="true",client_id="`+clientID.String()+`"`) {
			t.Errorf("inbound metrics lack the client identity:\n%s", grepLines(in, "request_total"))
		}
		out := scrape(t, m.outbound)
		if !strings.Contains(out, `request_total{direction="outbound",authority="`+svcHTTP+`",tls="true"}`) {
			t.Errorf("outbound requests not labelled tls=true:\n%s", grepLines(out, "request_total"))
		}
		if !strings.Contains(out, `peer="dst",authority="`+m.inbound.Addr("inbound").String()+`",tls="true"`) {
			t.Errorf("the connection to the peer is not TLS:\n%s", grepLines(out, "tcp_open_total"))
		}
	})
	t.Run("plaintext-refused", func(t *testing.T) {
		// Strict mode: a client that skips the mesh gets nothing.
		c, err := net.Dial("tcp", m.inbound.Addr("inbound").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Fatalf("a plaintext client got an answer: %q", b)
		}
		if !strings.Contains(scrape(t, m.inbound), `inbound_tcp_authz_deny_total{reason="plaintext"} 1`) {
			t.Error("refusal not counted")
		}
	})
}

// TestMTLSRejects: a server proving another identity than discovery gave,
// and a client from another trust root, are both refused.
func TestMTLSRejects(t *testing.T) {
	leakcheck.Check(t)
	k := newPKI(t)
	t.Run("wrong-server-identity", func(t *testing.T) {
		m := newMTLSMesh(t, k, spiffe.MustNew("cluster.local", "shop", "payments"))
		resp, _ := do(t, h1Client(t), "GET", "http://"+m.entry+"/", svcHTTP, nil, nil)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get(ErrorHeader), "mTLS handshake") {
			t.Fatalf("status %d %q; want 502 naming the handshake", resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
	})
	t.Run("client-from-another-root", func(t *testing.T) {
		m := newMTLSMesh(t, k, serverID)
		rogue := newPKI(t).identity(t, clientID) // same name, other anchor
		c, err := net.Dial("tcp", m.inbound.Addr("inbound").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tc := tlsClient(c, rogue, serverID)
		if err := tc.Handshake(); err == nil {
			// TLS 1.3: the server's verdict may arrive with the first read.
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := tc.Read(make([]byte, 1)); err == nil {
				t.Fatal("a client certificate from another root was accepted")
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(scrape(t, m.inbound), "inbound_tls_handshake_failures_total 1") {
			if time.Now().After(deadline) {
				t.Fatal("the failed handshake was not counted")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	_ = demo.ReplicaHeader
}
