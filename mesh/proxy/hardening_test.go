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
	"sync"
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
// forgetting the least recently used, watches included; authorities
// discovery does not know keep no watch at all. The proxy used to keep
// every one: after 10,000, every new authority got 502, and each kept a
// watcher goroutine.
func TestAuthoritiesBounded(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "echo-1")
	const max = 64
	table := map[string][]endpoint.Endpoint{}
	for i := range 4 * max {
		table[fmt.Sprintf("svc-%d.test", i)] = []endpoint.Endpoint{{Addr: backend.Addr()}}
	}
	p := startProxy(t, Config{Endpoints: endpoint.NewStatic(table), MaxAuthorities: max})
	c := h2cClient(t)
	base := "http://" + p.Addr("outbound").String()
	for i := range 4 * max {
		if resp, _ := do(t, c, "GET", base+"/", fmt.Sprintf("svc-%d.test", i), nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("svc-%d: %d", i, resp.StatusCode)
		}
		if resp, _ := do(t, c, "GET", base+"/", fmt.Sprintf("random-%d.example", i), nil, nil); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("unknown authority: %d", resp.StatusCode)
		}
	}
	if n := p.destinations.len(); n > max {
		t.Fatalf("%d authorities watched, cap %d", n, max)
	}
	if m := scrape(t, p); !strings.Contains(m, "outbound_authorities_evicted_total ") || strings.Contains(m, "outbound_authorities_evicted_total 0") {
		t.Fatalf("evictions not counted:\n%s", grepLines(m, "authorities"))
	}
	// A forgotten authority is watched again when asked for.
	if resp, _ := do(t, c, "GET", base+"/", "svc-0.test", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("an evicted authority: %d %s", resp.StatusCode, resp.Header.Get(ErrorHeader))
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
		if evicted.Load() != 1 {
			t.Fatalf("evicted %d, want 1 (the unknown authority was never kept)", evicted.Load())
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

// TestBodyTimeout: a request that announces a body and stalls gets 408
// after the body timeout and gives its slot back. It used to hold the slot
// for as long as the client held the connection.
func TestBodyTimeout(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "echo-1")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}})
	p := startProxy(t, Config{Endpoints: src, BodyTimeout: 200 * time.Millisecond})
	for _, tc := range []struct {
		name string
		send func(c net.Conn)
	}{
		{"http1", func(c net.Conn) {
			// /trailers reads the whole body before it answers.
			fmt.Fprintf(c, "POST /trailers HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\nabc", svcHTTP)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.Addr("outbound").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testwait.Timeout))
			tc.send(c)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no response to a stalled body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d %q, want 408", resp.StatusCode, resp.Header.Get(ErrorHeader))
			}
			testwait.For(t, "the slot to be given back", func() (bool, error) { return p.listeners[0].inflight.n.Load() == 0, nil })
		})
	}
	t.Run("h2c", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write([]byte("abc")) // then nothing
		req, _ := http.NewRequest("POST", "http://"+p.Addr("outbound").String()+"/trailers", pr)
		req.Host, req.ContentLength = svcHTTP, 100
		resp, err := h2cClient(t).Do(req)
		if err != nil {
			t.Fatalf("no response to a stalled body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("status %d %q, want 408", resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
		testwait.For(t, "the slot to be given back", func() (bool, error) { return p.listeners[0].inflight.n.Load() == 0, nil })
	})
	// A body that keeps coming, each gap shorter than the timeout but the
	// whole longer, is not cut; nor is one whose response began first
	// (/echo answers at once and streams the body back).
	pr, pw := io.Pipe()
	go func() {
		for range 4 {
			time.Sleep(150 * time.Millisecond) // the client's own pace is the behaviour under test
			pw.Write([]byte("part "))
		}
		pw.Close()
	}()
	resp, body := do(t, h1Client(t), "POST", "http://"+p.Addr("outbound").String()+"/echo", svcHTTP, pr, nil)
	if resp.StatusCode != 200 || string(body) != strings.Repeat("part ", 4) {
		t.Fatalf("a slow but steady body: %d %q", resp.StatusCode, body)
	}
}

// TestShares: past half the in-flight cap, a connection (and inbound, a
// client) holding its share gets 503 while another client is served.
func TestShares(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "slow")
	p := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: backend.Addr(), MaxInFlight: 16})
	addr := "http://" + p.Addr("inbound").String()
	// One h2c connection: its client opens 12 slow requests; the share
	// of a connection is 16/8 = 2 once 8 are in flight.
	greedy := h2cClient(t)
	var wg sync.WaitGroup
	codes := make(chan int, 12)
	for range 12 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", addr+"/?delay=500ms", nil)
			resp, err := greedy.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	var ok, refused int
	for c := range codes {
		switch c {
		case 200:
			ok++
		case 503:
			refused++
		}
	}
	if refused == 0 || ok == 0 {
		t.Fatalf("greedy connection: %d served, %d refused; want both", ok, refused)
	}
	if m := scrape(t, p); !strings.Contains(m, `request_rejected_total{direction="inbound",reason="connection_share"}`) {
		t.Fatalf("share refusals not counted:\n%s", grepLines(m, "request_rejected_total"))
	}
}

// TestH2ScannerRapidReset: the frame scanner sees a client reset its
// streams as fast as it opens them, whatever the read sizes, and a client
// that cancels now and then is left alone.
func TestH2ScannerRapidReset(t *testing.T) {
	frame := func(typ byte, stream uint32, payload int) []byte {
		b := []byte{byte(payload >> 16), byte(payload >> 8), byte(payload), typ, 0, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
		return append(b, make([]byte, payload)...)
	}
	stream := func(resetEvery int, n int) []byte {
		b := []byte(h2Preface)
		b = append(b, frame(0x4, 0, 6)...) // SETTINGS
		for i := range n {
			id := uint32(2*i + 1)
			b = append(b, frame(frameHeaders, id, 20)...)
			b = append(b, frame(0x0, id, 100)...) // DATA
			if i%resetEvery == 0 {
				b = append(b, frame(frameRSTStream, id, 4)...)
			}
		}
		return b
	}
	for _, piece := range []int{1, 7, 4096} {
		var s h2Scanner
		flood := false
		for b := stream(1, 2*resetMin); len(b) > 0 && !flood; {
			k := min(piece, len(b))
			flood = s.scan(b[:k])
			b = b[k:]
		}
		if !flood {
			t.Errorf("piece %d: a rapid reset went unnoticed (%d resets of %d streams)", piece, s.resets, s.headers)
		}
		s = h2Scanner{}
		for b := stream(4, 10*resetMin); len(b) > 0; {
			k := min(piece, len(b))
			if s.scan(b[:k]) {
				t.Fatalf("piece %d: a client resetting a quarter of its streams was taken for a flood", piece)
			}
			b = b[k:]
		}
	}
}

// FuzzH2Scanner: on any bytes the scanner neither panics nor counts more
// frames than the bytes could hold.
func FuzzH2Scanner(f *testing.F) {
	f.Add([]byte(h2Preface+"\x00\x00\x00\x03\x00\x00\x00\x00\x01"), uint8(3))
	f.Add([]byte(h2Preface+"\x00\x00\x04\x01\x04\x00\x00\x00\x01abcd"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		var s h2Scanner
		for b := data; len(b) > 0; {
			k := min(max(int(piece), 1), len(b))
			s.scan(b[:k])
			b = b[k:]
		}
		if frames := s.headers + s.resets; frames*9 > int64(len(data)) {
			t.Fatalf("%d frames counted in %d bytes", frames, len(data))
		}
	})
}

// TestOverloadSheds: near the budget the proxy sheds load, closes the
// connections holding the most requests, and stops once memory is back.
func TestOverloadSheds(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "slow")
	p := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: backend.Addr(), MaxInFlight: 128})
	var rss atomic.Uint64
	p.overload.measure = rss.Load
	budget := uint64(p.cfg.MemoryBudget)

	// A connection with many requests in flight, one with one.
	busy, calm := h2cClient(t), h1Client(t)
	addr := "http://" + p.Addr("inbound").String()
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", addr+"/?delay=2s", nil)
			if resp, err := busy.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	testwait.For(t, "the busy connection's requests", func() (bool, error) { return p.active.Load() >= 40, nil })
	calmDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", addr+"/?delay=300ms", nil)
		resp, err := calm.Do(req)
		if err != nil {
			calmDone <- 0
			return
		}
		resp.Body.Close()
		calmDone <- resp.StatusCode
	}()
	testwait.For(t, "the calm request", func() (bool, error) { return p.active.Load() >= 41, nil })

	rss.Store(budget * 6 / 10)
	p.overload.check(p)
	if p.overload.shedding.Load() {
		t.Fatal("shedding at 60% of the budget")
	}
	rss.Store(budget * 9 / 10)
	p.overload.check(p)
	if !p.overload.shedding.Load() {
		t.Fatal("not shedding at 90% of the budget")
	}
	wg.Wait() // the busy connection was closed: its requests end now
	if code := <-calmDone; code != 200 {
		t.Fatalf("the calm client's request: %d, want 200", code)
	}
	if n := p.overload.closed.Load(); n != 1 {
		t.Fatalf("%d connections closed, want the busy one", n)
	}
	rss.Store(budget / 2)
	p.overload.check(p)
	if p.overload.shedding.Load() {
		t.Fatal("still shedding at 50% of the budget")
	}
}

// TestLatencyOfUnansweredRequest: a request whose client left before any
// answer is recorded with its own duration. A pooled recorder used to
// keep the previous request's response time, so such requests were
// recorded with a negative duration (a huge response_latency_ms_sum).
func TestLatencyOfUnansweredRequest(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "slow")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}})
	p := startProxy(t, Config{Endpoints: src})
	base := "http://" + p.Addr("outbound").String()
	c := h1Client(t)
	do(t, c, "GET", base+"/", svcHTTP, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/?delay=2s", nil)
	req.Host = svcHTTP
	if _, err := c.Do(req); err == nil {
		t.Fatal("the slow request was answered before the client gave up")
	}
	testwait.For(t, "the unanswered request to be recorded", func() (bool, error) {
		m := scrape(t, p)
		line := grepLines(m, `response_latency_ms_sum{direction="outbound",authority="`+svcHTTP+`",tls="disabled",status_code="0"`)
		if line == "" {
			return false, nil
		}
		var v float64
		fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		if v < 0 || v > 60000 {
			return false, fmt.Errorf("recorded %v ms for a request of about 100 ms", v)
		}
		return true, nil
	})
}
