package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// TestIdentityFailsClosed: a meshed endpoint whose identity discovery gave
// but the proxy cannot use is never reached in plaintext. It used to be
// (a warning, then the request went through without TLS).
func TestIdentityFailsClosed(t *testing.T) {
	leakcheck.Check(t)
	k := newPKI(t)
	backend := startDemo(t, "echo-1")
	// The endpoint is a plaintext inbound proxy: a downgrade would reach
	// the backend and answer 200.
	in := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: backend.Addr()})
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{
		svcHTTP: {{Addr: in.Addr("inbound").String(), Meshed: true, Identity: "web.shop.serviceaccount.identity.cluster.local"}},
	})
	out := startProxy(t, Config{Endpoints: src, Identity: k.identity(t, clientID)})
	for _, c := range []*http.Client{h1Client(t), h2cClient(t)} {
		resp, _ := do(t, c, "GET", "http://"+out.Addr("outbound").String()+"/", svcHTTP, nil, nil)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get(ErrorHeader), "not a SPIFFE ID") {
			t.Fatalf("got %d %q; want 502 naming the unusable identity", resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
	}
	if got := backend.Stats().Requests; got != 0 {
		t.Fatalf("the backend received %d requests: the proxy downgraded to plaintext", got)
	}
	if m := scrape(t, out); !strings.Contains(m, `outbound_identity_errors_total{reason="invalid"} `) || strings.Contains(m, `outbound_identity_errors_total{reason="invalid"} 0`) {
		t.Fatalf("no identity error counted:\n%s", grepLines(m, "outbound_identity_errors_total"))
	}
}

// TestPeerIdentitiesExpire: the identity table holds only what watched
// authorities list now; agreement is required across authorities.
func TestPeerIdentitiesExpire(t *testing.T) {
	tab := newPeerIdentities(testLogger(t))
	const a, b = "10.0.0.1:4143", "10.0.0.2:4143"
	web, api := clientID.String(), serverID.String()
	tab.replace("svc-1", nil, map[string]string{a: web, b: api})
	tab.replace("svc-2", nil, map[string]string{a: web})
	if id, err := tab.lookup(a); err != nil || id != clientID {
		t.Fatalf("lookup(a) = %v, %v", id, err)
	}
	// svc-1 drops a: svc-2 still vouches for it.
	tab.replace("svc-1", map[string]string{a: web, b: api}, map[string]string{b: api})
	if _, err := tab.lookup(a); err != nil {
		t.Fatalf("a is still listed by svc-2: %v", err)
	}
	// svc-3 claims a is someone else: a conflict fails closed.
	tab.replace("svc-3", nil, map[string]string{a: api})
	if _, err := tab.lookup(a); identityErrorLabel(err) != "conflict" {
		t.Fatalf("conflicting identities: got %v", err)
	}
	tab.replace("svc-3", map[string]string{a: api}, nil)
	tab.replace("svc-2", map[string]string{a: web}, nil)
	tab.replace("svc-1", map[string]string{b: api}, nil)
	if n := tab.len(); n != 0 {
		t.Fatalf("%d entries left after every authority let go", n)
	}
	if _, err := tab.lookup(a); identityErrorLabel(err) != "unknown" {
		t.Fatalf("forgotten address: got %v", err)
	}
}

// TestIdentityForgottenWithEndpoint: when discovery drops a meshed
// endpoint, the proxy forgets the identity it had to prove.
func TestIdentityForgottenWithEndpoint(t *testing.T) {
	leakcheck.Check(t)
	k := newPKI(t)
	ep := endpoint.Endpoint{Addr: "127.0.0.1:1", Meshed: true, Identity: serverID.String()}
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {ep}})
	p := startProxy(t, Config{Endpoints: src, Identity: k.identity(t, clientID)})
	if _, err := p.destinations.get(context.Background(), svcHTTP); err != nil {
		t.Fatal(err)
	}
	if id, err := p.peers.lookup(ep.Addr); err != nil || id != serverID {
		t.Fatalf("learned %v, %v", id, err)
	}
	src.Set(map[string][]endpoint.Endpoint{svcHTTP: {}})
	testwait.For(t, "the identity to be forgotten", func() (bool, error) { return p.peers.len() == 0, nil })
}

// TestAuthoritiesBounded: distinct authorities beyond the cap make room by
// forgetting the least recently used, watches included. The proxy used to
// keep all of them: after 10,000, every new authority got 502, and each
// kept a watcher goroutine.
func TestAuthoritiesBounded(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "echo-1")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}, "late.test.svc": {{Addr: backend.Addr()}}})
	const max = 64
	p := startProxy(t, Config{Endpoints: src, MaxAuthorities: max})
	c := h2cClient(t)
	base := "http://" + p.Addr("outbound").String()
	for i := range 4 * max {
		resp, _ := do(t, c, "GET", base+"/", fmt.Sprintf("random-%d.example", i), nil, nil)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("unknown authority: %d", resp.StatusCode)
		}
	}
	if n := p.destinations.len(); n > max {
		t.Fatalf("%d authorities watched, cap %d", n, max)
	}
	resp, _ := do(t, c, "GET", base+"/", "late.test.svc", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a known authority after the flood: %d %s", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	if m := scrape(t, p); !strings.Contains(m, "outbound_authorities_evicted_total ") {
		t.Fatalf("evictions not counted:\n%s", grepLines(m, "authorities"))
	}
}

// TestAuthoritiesExpire runs the destination table in virtual time: an
// authority nobody asks for is forgotten after the idle timeout, and its
// watch ends (synctest fails the test if a watch goroutine outlives it).
func TestAuthoritiesExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := endpoint.NewStatic(map[string][]endpoint.Endpoint{"busy": {{Addr: "127.0.0.1:1"}}, "quiet": {{Addr: "127.0.0.1:2"}}})
		var evicted atomic.Uint64
		ds := newDestinations(src, balance.Options{}, nil, time.Minute, 100, testLogger(t), &evicted)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { ds.expire(ctx); close(done) }()
		for _, a := range []string{"busy", "quiet", "unknown"} {
			if _, err := ds.get(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		for range 8 { // two idle timeouts; "busy" is asked for throughout
			time.Sleep(15 * time.Second)
			ds.get(ctx, "busy")
		}
		synctest.Wait()
		if n := ds.len(); n != 1 {
			t.Fatalf("%d authorities left, want only the busy one", n)
		}
		if evicted.Load() != 2 {
			t.Fatalf("evicted %d, want 2", evicted.Load())
		}
		cancel()
		ds.close()
		<-done
	})
}

// idApp is an application that answers with the client identity header
// it received, so a test sees exactly what reached it.
func idApp(t *testing.T) *httptest.Server {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "client-id=%q", r.Header.Values(ClientIDHeader))
	}))
	t.Cleanup(app.Close)
	return app
}

const forgedID = "spiffe://cluster.local/ns/kube-system/sa/admin"

// rawRequest sends raw on c (written in the given pieces, with pause
// between them) and reads one response.
func rawRequest(t *testing.T, c net.Conn, pause time.Duration, pieces ...string) (*http.Response, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, piece := range pieces {
		if i > 0 {
			time.Sleep(pause) // the client's own slowness is the behaviour under test
		}
		if _, err := io.WriteString(c, piece); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestNoALPNIsDetected: a client with a valid mesh certificate that offers
// no ALPN is served by the HTTP layer after detection on the decrypted
// stream. It used to pass through as opaque TCP: uncounted, and its own
// Skiff-Client-Id header reached the application verbatim.
func TestNoALPNIsDetected(t *testing.T) {
	leakcheck.Check(t)
	k := newPKI(t)
	app := idApp(t)
	in := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: app.Listener.Addr().String(),
		Identity: k.identity(t, serverID), RequireMTLS: true, ForwardClientID: true})
	client := k.identity(t, clientID)
	for _, method := range []string{"GET", "PROPFIND"} {
		t.Run(method, func(t *testing.T) {
			raw, err := net.Dial("tcp", in.Addr("inbound").String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			tc := tls.Client(raw, client.ClientTLSConfig(serverID)) // no NextProtos: no ALPN
			resp, body := rawRequest(t, tc, 0, method+" / HTTP/1.1\r\nHost: app\r\n"+ClientIDHeader+": "+forgedID+"\r\n\r\n")
			if want := fmt.Sprintf("client-id=%q", []string{clientID.String()}); resp.StatusCode != 200 || body != want {
				t.Fatalf("the app got %s (status %d); want %s: only the handshake's identity", body, resp.StatusCode, want)
			}
		})
	}
	m := scrape(t, in)
	if !strings.Contains(m, `request_total{direction="inbound",authority="app",tls="true",client_id="`+clientID.String()+`"} 2`) {
		t.Fatalf("the requests were not counted:\n%s", grepLines(m, "request_total"))
	}
}

// TestForgedClientIDNeverForwarded: on plaintext paths too, an identity
// header a client wrote reaches the application on no path: extension
// methods, and a client that stalls in the middle of its first line past
// the detection timeout (both used to be forwarded as opaque bytes).
func TestForgedClientIDNeverForwarded(t *testing.T) {
	leakcheck.Check(t)
	app := idApp(t)
	in := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: app.Listener.Addr().String(), DetectTimeout: 100 * time.Millisecond})
	cases := []struct {
		name   string
		pause  time.Duration
		pieces []string
	}{
		{"get", 0, []string{"GET / HTTP/1.1\r\nHost: app\r\n" + ClientIDHeader + ": " + forgedID + "\r\n\r\n"}},
		{"extension-method", 0, []string{"PROPFIND / HTTP/1.1\r\nHost: app\r\n" + ClientIDHeader + ": " + forgedID + "\r\n\r\n"}},
		{"stalled-first-line", 300 * time.Millisecond, []string{"PROPF", "IND / HTTP/1.1\r\nHost: app\r\n" + ClientIDHeader + ": " + forgedID + "\r\n\r\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", in.Addr("inbound").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			resp, body := rawRequest(t, c, tc.pause, tc.pieces...)
			if resp.StatusCode != 200 || body != `client-id=[]` {
				t.Fatalf("the app got %s (status %d); want no identity header", body, resp.StatusCode)
			}
		})
	}
}

// TestObsFoldRejected: a request with a folded header line gets 400 (RFC
// 9112 §5.2); net/http used to unfold it silently and the proxy forwarded
// it. The scanner follows framing, so bodies that merely contain the
// pattern pass, and pipelined requests are each judged.
func TestObsFoldRejected(t *testing.T) {
	leakcheck.Check(t)
	m := newMesh(t, 1)
	host := "Host: " + svcHTTP + "\r\n"
	folded := "GET / HTTP/1.1\r\n" + host + "X-Long: first\r\n second\r\n\r\n"
	cases := []struct {
		name  string
		raw   string
		codes []int // the status of each response, in order
	}{
		{"folded", folded, []int{400}},
		{"folded-tab", "GET / HTTP/1.1\r\n" + host + "X-Long: first\r\n\tsecond\r\n\r\n", []int{400}},
		{"pipelined", "GET / HTTP/1.1\r\n" + host + "\r\n" + folded, []int{200, 400}},
		{"body-with-fold-pattern", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 12\r\n\r\nab\r\n cd\r\n\tef" + "GET / HTTP/1.1\r\n" + host + "\r\n", []int{200, 200}},
		{"chunked-then-folded", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nab\r\n \r\n0\r\nX-T: 1\r\n\r\n" + folded, []int{200, 400}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", m.entry)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.raw)
			br := bufio.NewReader(c)
			for i, want := range tc.codes {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Fatalf("response %d: %d %q, want %d", i, resp.StatusCode, b, want)
				}
				if want == 400 && !strings.Contains(string(b), "obsolete line folding") {
					t.Fatalf("the 400 does not say why: %q", b)
				}
			}
		})
	}
}

// TestHeaderLimitAcrossHop: a header block the outbound edge accepts is
// accepted by the next proxy too, and one it refuses is a 431 at the edge.
// A 60 KB block of small fields used to pass the edge (HTTP/1 counts
// bytes) and fail on the HTTP/2 hop (which counts 32 more per field) as a
// 502.
func TestHeaderLimitAcrossHop(t *testing.T) {
	leakcheck.Check(t)
	m := newMesh(t, 2)
	cases := []struct {
		name   string
		fields int
		size   int // bytes per value
		want   int
	}{
		{"one-large-field", 1, 60 << 10, 200},
		{"many-small-fields", 2000, 2, 431}, // ~30 KB as HTTP/1, ~100 KB as HTTP/2
		{"just-under", 1, maxHeaderListSize - 300, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			for i := range tc.fields {
				hdr.Set(fmt.Sprintf("X-F%d", i), strings.Repeat("v", tc.size))
			}
			for _, c := range []*http.Client{h1Client(t), h2cClient(t)} {
				req, _ := http.NewRequest("GET", "http://"+m.entry+"/", nil)
				req.Host, req.Header = svcHTTP, hdr
				resp, err := c.Do(req)
				if err != nil {
					// An HTTP/2 client does not even send a list over
					// the limit the edge advertises: refused at the edge.
					if tc.want == 431 && strings.Contains(err.Error(), "larger than peer's advertised limit") {
						continue
					}
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Fatalf("%s: %d %q, want %d", resp.Proto, resp.StatusCode, resp.Header.Get(ErrorHeader), tc.want)
				}
			}
		})
	}
}
