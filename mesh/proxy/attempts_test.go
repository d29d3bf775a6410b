package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// routedProxy runs a proxy whose authority svcHTTP goes to the given
// backends under route r.
func routedProxy(t *testing.T, r route.Route, backends ...string) *Proxy {
	t.Helper()
	var eps []endpoint.Endpoint
	for _, b := range backends {
		eps = append(eps, endpoint.Endpoint{Addr: b})
	}
	r.Authority = svcHTTP
	if r.Name == "" {
		r.Name = "test-route"
	}
	var tb route.Table
	tb.Seed(1)
	if err := tb.Replace([]route.Route{r}); err != nil {
		t.Fatal(err)
	}
	return startProxy(t, Config{Endpoints: endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: eps}), Routes: &tb})
}

// stall is a backend that answers only when the test ends.
func stall(t *testing.T) string {
	done := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true) // for gRPC
	srv.Start()
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.Listener.Addr().String()
}

// metric is the value of the sample line that starts with name+labels.
func metric(t *testing.T, p *Proxy, series string) string {
	t.Helper()
	for _, l := range strings.Split(scrape(t, p), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return "absent"
}

// TestRequestTimeout: a request to a backend that never answers ends at
// the route's timeouts.request with a 504 that says the proxy gave up and
// why; a gRPC one with DEADLINE_EXCEEDED; the client's own grpc-timeout
// is honoured when it is the shorter.
func TestRequestTimeout(t *testing.T) {
	leakcheck.Check(t)
	p := routedProxy(t, route.Route{Timeouts: timeout.Route{Request: 200 * time.Millisecond}}, stall(t))
	url := "http://" + p.Addr("outbound").String() + "/"
	resp, body := do(t, h1Client(t), "GET", url, svcHTTP, nil, nil)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(resp.Header.Get(ErrorHeader), "timeouts.request 200ms expired") {
		t.Fatalf("got %d %q (%s: %q), want 504 naming timeouts.request", resp.StatusCode, body, ErrorHeader, resp.Header.Get(ErrorHeader))
	}
	grpcHdr := http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}, "Grpc-Timeout": {"50m"}}
	resp, _ = do(t, h2cClient(t), "POST", url, svcHTTP, bytes.NewReader([]byte{0, 0, 0, 0, 0}), grpcHdr)
	if got := resp.Header.Get("Grpc-Status"); got != "4" || !strings.Contains(resp.Header.Get(ErrorHeader), "grpc-timeout 50ms expired") {
		t.Fatalf("gRPC: grpc-status %q (%s: %q), want 4 DEADLINE_EXCEEDED from grpc-timeout", got, ErrorHeader, resp.Header.Get(ErrorHeader))
	}
	grpcHdr.Set("Grpc-Timeout", "soon")
	resp, _ = do(t, h2cClient(t), "POST", url, svcHTTP, bytes.NewReader([]byte{0, 0, 0, 0, 0}), grpcHdr)
	if got := resp.Header.Get("Grpc-Status"); got != "13" || !strings.Contains(resp.Header.Get(ErrorHeader), "invalid grpc-timeout") {
		t.Fatalf("malformed grpc-timeout: grpc-status %q (%q), want 13 INTERNAL naming it", got, resp.Header.Get(ErrorHeader))
	}
	if v := metric(t, p, `outbound_http_route_timeouts_total{route_name="test-route",timeout="request"}`); v != "2" {
		t.Errorf("request timeouts counted: %s, want 2 (the route's and the client's)", v)
	}
}

// flaky answers 503 to every other request it gets.
func flaky(t *testing.T, hits *atomic.Int64) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if hits.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestRetriesOnStatus: with a route that retries 503 every GET succeeds
// though half the backend's answers are 503s; a POST is not retried unless
// the route says so; the retries are counted under Linkerd's names.
func TestRetriesOnStatus(t *testing.T) {
	leakcheck.Check(t)
	var hits atomic.Int64
	all := 100 // every request may be retried: the budget is TestRetryBudget's
	p := routedProxy(t, route.Route{Retry: retry.Policy{Attempts: 2, Codes: []int{503}}, Budget: retry.BudgetConfig{Percent: &all}}, flaky(t, &hits))
	url := "http://" + p.Addr("outbound").String() + "/"
	c := h1Client(t)
	const n = 20
	for i := range n {
		if resp, body := do(t, c, "GET", url, svcHTTP, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if hits.Load() != 2*n {
		t.Errorf("backend saw %d attempts for %d requests, want %d", hits.Load(), n, 2*n)
	}
	if v := metric(t, p, `outbound_http_route_retry_requests_total{route_name="test-route"}`); v != fmt.Sprint(n) {
		t.Errorf("retries counted: %s, want %d", v, n)
	}
	if v := metric(t, p, `outbound_http_route_retry_successes_total{route_name="test-route"}`); v != fmt.Sprint(n) {
		t.Errorf("successes after retry counted: %s, want %d", v, n)
	}
	var posts503 int
	for range 4 {
		if resp, _ := do(t, c, "POST", url, svcHTTP, strings.NewReader("x"), nil); resp.StatusCode == 503 {
			posts503++
		}
	}
	if posts503 != 2 {
		t.Errorf("%d of 4 POSTs got 503, want 2: a POST must not be retried on a status by default", posts503)
	}
}

// digestBackend answers 503 to the first attempt of each body at once,
// without reading it (a retry then starts before the body has fully
// arrived), and checks the body of every later attempt against the
// digest the client sent.
type digestBackend struct {
	mu    sync.Mutex
	seen  map[string]int // digest -> attempts
	bad   []string
	bytes atomic.Int64
}

func (b *digestBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	want := r.Header.Get("Body-Digest")
	b.mu.Lock()
	b.seen[want]++
	first := b.seen[want] == 1
	b.mu.Unlock()
	if first && r.Header.Get("Fail-First") != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	b.bytes.Add(n)
	if got := hex.EncodeToString(h.Sum(nil)); err != nil || got != want {
		b.mu.Lock()
		b.bad = append(b.bad, fmt.Sprintf("%d bytes, digest %s, want %s (err %v)", n, got[:8], want[:8], err))
		b.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	io.WriteString(w, "intact")
}

// slowBody delivers data in pieces with pauses, without a length: sent
// chunked.
type slowBody struct {
	data  []byte
	piece int
}

func (s *slowBody) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(2 * time.Millisecond)
	n := copy(p[:min(len(p), s.piece)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// TestRetriedBodiesIntact: POST bodies, with a length and chunked, are
// replayed whole on a retry that starts before the body has arrived; a
// body over the route's bound streams through once, with no retry.
func TestRetriedBodiesIntact(t *testing.T) {
	leakcheck.Check(t)
	be := &digestBackend{seen: map[string]int{}}
	srv := httptest.NewServer(be)
	t.Cleanup(srv.Close)
	p := routedProxy(t, route.Route{Retry: retry.Policy{Attempts: 1, Codes: []int{503}, NonIdempotent: true, MaxBodyBytes: 64 << 10}}, srv.Listener.Addr().String())
	url := "http://" + p.Addr("outbound").String() + "/"
	for _, c := range []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"empty", 0, false, 200},
		{"small", 100, false, 200},
		{"small chunked", 100, true, 200},
		{"at the bound", 64 << 10, false, 200},
		{"at the bound chunked", 64 << 10, true, 200},
		{"over the bound", 100 << 10, false, 503},
		// Retried when the 503 comes before the bound was passed (the
		// retry then streams on), not when after: either way intact.
		{"over the bound chunked", 100 << 10, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := bytes.Repeat([]byte(c.name+" "), c.size/len(c.name+" ")+1)[:c.size]
			sum := sha256.Sum256(data)
			var body io.Reader = bytes.NewReader(data)
			if c.chunked {
				body = &slowBody{data: data, piece: 4096}
			}
			req, _ := http.NewRequest("POST", url, body)
			req.Host = svcHTTP
			req.Header.Set("Body-Digest", hex.EncodeToString(sum[:]))
			req.Header.Set("Fail-First", "1")
			resp, err := h1Client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if c.want != 0 && resp.StatusCode != c.want || resp.StatusCode != 200 && resp.StatusCode != 503 {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, got, c.want)
			}
		})
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.bad) > 0 {
		t.Fatalf("bodies that arrived damaged: %q", be.bad)
	}
}

// TestAttemptTimeoutRetried: one endpoint never answers; with a per-try
// timeout and 504 retried, every request is answered by the other.
func TestAttemptTimeoutRetried(t *testing.T) {
	leakcheck.Check(t)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(ok.Close)
	p := routedProxy(t, route.Route{
		Timeouts: timeout.Route{BackendRequest: 100 * time.Millisecond},
		Retry:    retry.Policy{Attempts: 1, Codes: []int{504}},
	}, stall(t), ok.Listener.Addr().String())
	url := "http://" + p.Addr("outbound").String() + "/"
	for i := range 10 {
		if resp, body := do(t, h1Client(t), "GET", url, svcHTTP, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

// TestRetryBudget: against a backend that always fails, retries stop at
// the budget (here no percentage and a floor of 3 per minute) and the
// rest are counted as overflow: no retry storm.
func TestRetryBudget(t *testing.T) {
	leakcheck.Check(t)
	var hits atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	zero, three := 0, 3
	p := routedProxy(t, route.Route{
		Retry:  retry.Policy{Attempts: 3, Codes: []int{503}},
		Budget: retry.BudgetConfig{Percent: &zero, MinRetries: &three, MinInterval: time.Minute},
	}, down.Listener.Addr().String())
	url := "http://" + p.Addr("outbound").String() + "/"
	const n = 20
	for range n {
		if resp, _ := do(t, h1Client(t), "GET", url, svcHTTP, nil, nil); resp.StatusCode != 503 {
			t.Fatalf("status %d, want the backend's 503", resp.StatusCode)
		}
	}
	if hits.Load() != n+3 {
		t.Errorf("backend saw %d attempts, want %d requests + 3 budgeted retries", hits.Load(), n)
	}
	if v := metric(t, p, `outbound_http_route_retry_overflow_total{route_name="test-route"}`); v != fmt.Sprint(n-1) {
		// The first request retried 3 times and then hit the limit of
		// attempts, not the budget; each later one overflowed once.
		t.Errorf("overflow counted: %s, want %d", v, n-1)
	}
}

// counting is a backend that answers status to every request and counts
// them.
func counting(t *testing.T, status int, hdr http.Header, hits *atomic.Int64) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func balancersPage(t *testing.T, p *Proxy) string {
	t.Helper()
	resp, err := http.Get("http://" + p.Addr("admin").String() + "/debug/balancer")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestBreakerEjects: an endpoint that fails fast is ejected after the
// configured consecutive failures and gets nothing more while ejected;
// when every endpoint is ejected, requests fail fast with 503 rather than
// going to a broken one.
func TestBreakerEjects(t *testing.T) {
	leakcheck.Check(t)
	var bad, good atomic.Int64
	badAddr := counting(t, http.StatusInternalServerError, nil, &bad)
	goodAddr := counting(t, http.StatusOK, nil, &good)
	br := &breaker.Config{ConsecutiveFailures: 2, BaseEjection: time.Minute, MaxEjection: time.Minute}
	// One failure ejects here: the balancer's failure bias alone already
	// keeps a second request away from the failing endpoint.
	br1 := &breaker.Config{ConsecutiveFailures: 1, BaseEjection: time.Minute, MaxEjection: time.Minute}
	p := routedProxy(t, route.Route{Breaker: br1, Retry: retry.Policy{Attempts: 1, Codes: []int{500}}}, badAddr, goodAddr)
	url := "http://" + p.Addr("outbound").String() + "/"
	for i := range 40 {
		if resp, _ := do(t, h1Client(t), "GET", url, svcHTTP, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d, want 200 (a retry goes to the good endpoint)", i, resp.StatusCode)
		}
	}
	if n := bad.Load(); n != 1 {
		t.Errorf("the failing endpoint got %d requests; ejected at its first failure, it should get no more", n)
	}
	if page := balancersPage(t, p); !strings.Contains(grepLines(page, badAddr), "breaker=open") {
		t.Errorf("admin page does not show the breaker open:\n%s", page)
	}
	auth := `authority="` + svcHTTP + `"`
	for series, want := range map[string]string{
		`outbound_http_balancer_endpoints{` + auth + `,endpoint_state="ejected"}`:               "1",
		`outbound_http_balancer_endpoints{` + auth + `,endpoint_state="ready"}`:                 "1",
		`outbound_http_endpoint_state{` + auth + `,endpoint="` + badAddr + `",state="ejected"}`: "1",
	} {
		if v := metric(t, p, series); v != want {
			t.Errorf("%s = %s, want %s", series, v, want)
		}
	}

	var only atomic.Int64
	p2 := routedProxy(t, route.Route{Breaker: br}, counting(t, http.StatusInternalServerError, nil, &only))
	url2 := "http://" + p2.Addr("outbound").String() + "/"
	var codes []int
	for range 6 {
		resp, _ := do(t, h1Client(t), "GET", url2, svcHTTP, nil, nil)
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 503 && !strings.Contains(resp.Header.Get(ErrorHeader), "circuit breaker") {
			t.Errorf("503 without saying why: %q", resp.Header.Get(ErrorHeader))
		}
	}
	if fmt.Sprint(codes) != "[500 500 503 503 503 503]" || only.Load() != 2 {
		t.Errorf("statuses %v with %d reaching the endpoint, want two 500s from it and then fast 503s", codes, only.Load())
	}
	if v := metric(t, p2, `outbound_http_route_breaker_ejections_total{route_name="test-route"}`); v != "1" {
		t.Errorf("ejections counted: %s, want 1", v)
	}
}

// TestBackpressureSteers: an endpoint that answers 429 with Retry-After is
// left alone for that long, without being ejected or penalized as failing.
func TestBackpressureSteers(t *testing.T) {
	leakcheck.Check(t)
	var limited, ok atomic.Int64
	limitedAddr := counting(t, http.StatusTooManyRequests, http.Header{"Retry-After": {"60"}}, &limited)
	okAddr := counting(t, http.StatusOK, nil, &ok)
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: limitedAddr}, {Addr: okAddr}}})
	p := startProxy(t, Config{Endpoints: src}) // no route: backpressure is always honoured
	url := "http://" + p.Addr("outbound").String() + "/"
	var got429 int
	for range 40 {
		if resp, _ := do(t, h1Client(t), "GET", url, svcHTTP, nil, nil); resp.StatusCode == 429 {
			got429++
		}
	}
	if limited.Load() > 1 || got429 != int(limited.Load()) {
		t.Errorf("the endpoint that asked for 60 s of backpressure got %d requests (%d 429s passed on), want at most 1", limited.Load(), got429)
	}
	if page := balancersPage(t, p); limited.Load() == 1 && !strings.Contains(grepLines(page, limitedAddr), "breaker=throttled") {
		t.Errorf("admin page does not show the backpressure:\n%s", page)
	}
}

// resetter is an endpoint that reads what a request sends and then resets
// the connection without answering: a replica killed with a call in
// flight. It counts the connections it took.
func resetter(t *testing.T, conns *atomic.Int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				buf := make([]byte, 4096)
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				for {
					if _, err := c.Read(buf); err != nil {
						break // the whole request is in, or the client gave up
					}
				}
				c.(*net.TCPConn).SetLinger(0) // close with a reset
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestGRPCRetriedAfterConnectionLoss: a gRPC call whose connection is reset
// after it went out is UNAVAILABLE, so a route that retries code 14 sends
// it again, to another endpoint; without the route the client gets
// UNAVAILABLE, not INTERNAL.
func TestGRPCRetriedAfterConnectionLoss(t *testing.T) {
	leakcheck.Check(t)
	var resets atomic.Int64
	ok := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "0")
	}))
	ok.Config.Protocols = new(http.Protocols)
	ok.Config.Protocols.SetUnencryptedHTTP2(true)
	ok.Start()
	t.Cleanup(ok.Close)
	bad := resetter(t, &resets)
	call := func(p *Proxy) string {
		hdr := http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}}
		resp, _ := do(t, h2cClient(t), "POST", "http://"+p.Addr("outbound").String()+"/skiff.demo.v1.Echo/Echo", svcHTTP, bytes.NewReader([]byte{0, 0, 0, 0, 0}), hdr)
		if v := resp.Header.Get("Grpc-Status"); v != "" {
			return v
		}
		return resp.Trailer.Get("Grpc-Status")
	}

	p := routedProxy(t, route.Route{Retry: retry.Policy{Attempts: 1, GRPCCodes: []int{14}, NonIdempotent: true}}, bad, ok.Listener.Addr().String())
	for i := 0; resets.Load() == 0; i++ {
		if i == 50 {
			t.Fatal("50 calls and none reached the resetting endpoint")
		}
		if got := call(p); got != "0" {
			t.Fatalf("call %d: grpc-status %s, want 0: a call lost with its connection is retried", i, got)
		}
	}
	if v := metric(t, p, `outbound_http_route_retry_requests_total{route_name="test-route"}`); v == "absent" || v == "0" {
		t.Errorf("retries counted: %s", v)
	}

	alone := routedProxy(t, route.Route{Timeouts: timeout.Route{Request: time.Minute}}, bad)
	if got := call(alone); got != "14" {
		t.Errorf("without a retry, grpc-status %s, want 14 UNAVAILABLE", got)
	}
}
