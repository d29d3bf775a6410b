package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// TestTLSPassthrough: an application's own TLS (not the mesh's mutual
// TLS: this proxy has no identity) is detected as TLS, counted so, and
// passed through untouched: the client completes its handshake with the
// application's certificate and gets its answer.
func TestTLSPassthrough(t *testing.T) {
	leakcheck.Check(t)
	app := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from the application over its own TLS")
	}))
	defer app.Close()
	p := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: app.Listener.Addr().String()})
	client := app.Client() // trusts the application's certificate, and only it
	tr := client.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, p.Addr("inbound").String())
	}
	defer tr.CloseIdleConnections()
	resp, err := client.Get(app.URL)
	if err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "from the application over its own TLS" {
		t.Fatalf("body %q", body)
	}
	if !resp.TLS.PeerCertificates[0].Equal(app.Certificate()) {
		t.Error("the client saw another certificate than the application's")
	}
	metrics := scrape(t, p)
	if !strings.Contains(metrics, `protocol_detect_total{direction="inbound",protocol="tls"} 1`) {
		t.Errorf("TLS not counted as detected TLS:\n%s", grepLines(metrics, "protocol_detect"))
	}
	if strings.Contains(metrics, "protocol_detect_opaque_total{") {
		t.Errorf("TLS counted as a fallback to opaque TCP:\n%s", grepLines(metrics, "protocol_detect"))
	}
}

// TestOpaqueConnectFailureRetried: an opaque TCP connection whose first
// endpoint refuses goes to another one; the client never sees the dead
// endpoint.
func TestOpaqueConnectFailureRetried(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "alive")
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now: connection refused
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcTCP: {{Addr: deadAddr}, {Addr: backend.TCPAddr()}}})
	p := startProxy(t, Config{Endpoints: src, TCPRoutes: []TCPRoute{{Addr: "127.0.0.1:0", Authority: svcTCP}}})
	addr := routeAddr(p, svcTCP)
	for i := range 30 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		payload := []byte(strings.Repeat("x", i+1))
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("connection %d: echoed %q, %v", i, got, err)
		}
	}
	if strings.Contains(scrape(t, p), "outbound_connect_retries_total 0") {
		t.Error("no connection failure was retried: was the dead endpoint ever picked?")
	}
}
