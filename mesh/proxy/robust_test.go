package proxy

import (
	"bufio"
	"context"
	"fmt"
	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// rawExchange writes raw bytes on a fresh connection and returns what
// comes back until the proxy closes it.
func rawExchange(t *testing.T, addr string, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, raw)
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestBadInput sends malformed requests and checks that each gets a clean
// error on its own connection while a well-behaved client keeps working.
func TestBadInput(t *testing.T) {
	leakcheck.Check(t)
	m := newMesh(t, 2)
	addr := m.outbound.Addr("outbound").String()
	good := h1Client(t)
	check := func(t *testing.T) {
		t.Helper()
		resp, _ := do(t, good, "GET", "http://"+addr+"/", svcHTTP, nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("a well-behaved client got %d", resp.StatusCode)
		}
	}
	check(t)
	cases := []struct {
		name, raw, want string
	}{
		{"malformed-request-line", "GET /\r\n\r\n", "400 Bad Request"},
		{"bad-version", "GET / HTTP/9.x\r\nHost: a\r\n\r\n", "400 Bad Request"},
		{"header-without-colon", "GET / HTTP/1.1\r\nHost: " + svcHTTP + "\r\nno colon here\r\n\r\n", "400 Bad Request"},
		{"oversized-headers", "GET / HTTP/1.1\r\nHost: " + svcHTTP + "\r\nX-Big: " + strings.Repeat("a", DefaultMaxHeaderBytes+4096) + "\r\n\r\n", "431"},
		{"invalid-h2-frames", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x04\xff\x00\x00\x00\x00\x01garbage-frame-bytes", "\x07"}, // a GOAWAY frame (type 7) comes back
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, addr, tc.raw)
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want it to contain %q", trim(got), tc.want)
			}
			check(t)
		})
	}
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// TestInFlightLimit fills the in-flight bound and checks that requests
// beyond it are refused at once (503, gRPC RESOURCE_EXHAUSTED), not queued.
func TestInFlightLimit(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "slow")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}})
	p := startProxy(t, Config{Endpoints: src, MaxInFlight: 2})
	base := "http://" + p.Addr("outbound").String()
	c := h1Client(t)

	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", base+"/?delay=400ms:100", nil)
			req.Host = svcHTTP
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			<-release
		})
	}
	// Wait until both slow requests hold their slots.
	for i := 0; i < 200 && p.listeners[0].inflight.n.Load() < 2; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	resp, _ := do(t, h1Client(t), "GET", base+"/", svcHTTP, nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get(ErrorHeader), "in-flight") {
		t.Fatalf("beyond the limit: %d %q", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	cc, err := grpc.NewClient("passthrough:///"+p.Addr("outbound").String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(svcHTTP))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = demo.Echo(context.Background(), cc, []byte("x"))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("gRPC beyond the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	close(release)
	wg.Wait()
	if !strings.Contains(scrape(t, p), `request_rejected_total{direction="outbound",reason="in_flight_limit"} 2`) {
		t.Error("rejections not counted")
	}
}

// TestConnectionLimit: at the connection cap, the connection longest
// without a request in flight is closed to make room for a new one; when
// every connection is busy, the new one is closed at once.
func TestConnectionLimit(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "b")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}})
	// A silent client waits for detection as long as it likes.
	p := startProxy(t, Config{Endpoints: src, MaxConnections: 1, DetectTimeout: time.Hour})
	addr := p.Addr("outbound").String()
	open := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		testwait.For(t, "the proxy to count the connection", func() (bool, error) { return p.listeners[0].conns.n.Load() == 1, nil })
		return c
	}
	get := func(c net.Conn, path string) (*http.Response, error) {
		c.SetDeadline(time.Now().Add(testwait.Timeout))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, svcHTTP)
		return http.ReadResponse(bufio.NewReader(c), nil)
	}
	t.Run("busy-connection-kept", func(t *testing.T) {
		busy := open()
		fmt.Fprintf(busy, "GET /?delay=1s HTTP/1.1\r\nHost: %s\r\n\r\n", svcHTTP)
		testwait.For(t, "the request to be in flight", func() (bool, error) { return p.listeners[0].inflight.n.Load() == 1, nil })
		// The proxy closes the new connection with a reset, which may
		// arrive before the dial returns: either way it is not served.
		if second, err := net.Dial("tcp", addr); err == nil {
			defer second.Close()
			if resp, err := get(second, "/"); err == nil {
				t.Fatalf("a connection beyond the cap was served: %d", resp.StatusCode)
			}
		}
		resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the busy connection: %v", err)
		}
		resp.Body.Close()
		busy.Close()
		testwait.For(t, "the slot to be free", func() (bool, error) { return p.listeners[0].conns.n.Load() == 0, nil })
	})
	t.Run("idle-connection-evicted", func(t *testing.T) {
		idle := open() // sends nothing: a slowloris, or a kept-alive client
		// Only a connection idle this long may be closed for another;
		// the policy's age, not a wait for an event.
		time.Sleep(minEvictIdle)
		fresh, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		resp, err := get(fresh, "/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the new connection was not served: %v", err)
		}
		resp.Body.Close()
		idle.SetReadDeadline(time.Now().Add(testwait.Timeout))
		if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("the idle connection was kept (%d bytes, %v)", n, err)
		}
		if !strings.Contains(scrape(t, p), `tcp_evicted_total{direction="outbound",reason="connection_limit"} 1`) {
			t.Errorf("the eviction was not counted:\n%s", grepLines(scrape(t, p), "tcp_evicted_total"))
		}
	})
}

// TestConnectFailureRetried: an endpoint that refuses connections costs
// nothing visible; requests go to the live one.
func TestConnectFailureRetried(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "alive")
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now: connection refused
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: deadAddr}, {Addr: backend.Addr()}}})
	p := startProxy(t, Config{Endpoints: src})
	c := h1Client(t)
	for i := range 30 {
		// Bodies too: nothing was sent to the dead endpoint, so they are
		// safe to send elsewhere.
		resp, body := do(t, c, "POST", "http://"+p.Addr("outbound").String()+"/echo", svcHTTP, strings.NewReader(fmt.Sprint("req ", i)), nil)
		if resp.StatusCode != 200 || string(body) != fmt.Sprint("req ", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if strings.Contains(scrape(t, p), "outbound_connect_retries_total 0") {
		t.Error("no connection failure was retried: was the dead endpoint ever picked?")
	}
}

// TestNoEndpoints: a known service without ready endpoints answers 503.
func TestNoEndpoints(t *testing.T) {
	leakcheck.Check(t)
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {}})
	p := startProxy(t, Config{Endpoints: src})
	resp, _ := do(t, h1Client(t), "GET", "http://"+p.Addr("outbound").String()+"/", svcHTTP, nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

// TestDetectionFallback: a client that sends nothing (the server speaks
// first) is served as opaque TCP after the detection timeout, and the
// fallback is counted with its reason; a declared-opaque port skips the
// wait.
func TestDetectionFallback(t *testing.T) {
	leakcheck.Check(t)
	greeter, _ := net.Listen("tcp", "127.0.0.1:0")
	defer greeter.Close()
	go func() {
		for {
			c, err := greeter.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 hello from a server-first protocol\r\n")
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(greeter.Addr().String())
	for _, declared := range []bool{false, true} {
		t.Run(fmt.Sprint("declared-opaque=", declared), func(t *testing.T) {
			cfg := Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: greeter.Addr().String(), DetectTimeout: 200 * time.Millisecond}
			if declared {
				var n uint16
				fmt.Sscan(port, &n)
				cfg.OpaquePorts = []uint16{n}
				cfg.DetectTimeout = time.Hour // never reached: detection is skipped
			}
			p := startProxy(t, cfg)
			c, err := net.Dial("tcp", p.Addr("inbound").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "220 ") {
				t.Fatalf("greeting %q, %v", line, err)
			}
			got := strings.Contains(scrape(t, p), `protocol_detect_opaque_total{direction="inbound",reason="timeout"} 1`)
			if got == declared {
				t.Errorf("timeout fallback counted=%v, want %v", got, !declared)
			}
		})
	}
}

// TestDrain: on shutdown the proxy turns not-ready, stops accepting, lets
// the in-flight request finish, and Run returns nil.
func TestDrain(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "b")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}})
	p, err := New(Config{OutboundAddr: "127.0.0.1:0", InboundAddr: "-", AdminAddr: "127.0.0.1:0", Endpoints: src, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitReady(t, p)
	addr := p.Addr("outbound").String()
	c := h1Client(t)
	var status atomic.Int32
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		req, _ := http.NewRequest("GET", "http://"+addr+"/?delay=300ms:100", nil)
		req.Host = svcHTTP
		resp, err := c.Do(req)
		if err != nil {
			t.Error("in-flight request during drain:", err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status.Store(int32(resp.StatusCode))
	}()
	for i := 0; i < 200 && p.listeners[0].inflight.n.Load() < 1; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	for i := 0; i < 200 && p.Ready(); i++ {
		time.Sleep(time.Millisecond)
	}
	if p.Ready() {
		t.Fatal("still ready while draining")
	}
	<-slow
	if status.Load() != 200 {
		t.Fatalf("in-flight request ended with %d", status.Load())
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting after drain")
	}
}

// TestConfigErrors: bad configuration is refused with a message naming it.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{OutboundAddr: "nonsense"}, `outbound address "nonsense"`},
		{Config{InboundAddr: "127.0.0.1:0"}, "needs an application address"},
		{Config{TCPRoutes: []TCPRoute{{Addr: "127.0.0.1:0"}}}, "want LISTEN_ADDR=AUTHORITY"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

var _ = metadata.Pairs

// TestFailover: when the primary service has no ready endpoint, or its
// endpoints refuse connections, requests go to the fallback service, with
// no error and nothing sent twice.
func TestFailover(t *testing.T) {
	leakcheck.Check(t)
	backup := startDemo(t, "backup-0")
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	const primary, fallback = "primary.test.svc:80", "backup.test.svc:80"
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{primary: {{Addr: deadAddr}}, fallback: {{Addr: backup.Addr()}}})
	p := startProxy(t, Config{Endpoints: src, Failover: map[string][]string{primary: {fallback}}})
	c := h1Client(t)
	check := func() {
		t.Helper()
		resp, body := do(t, c, "POST", "http://"+p.Addr("outbound").String()+"/echo", primary, strings.NewReader("payload"), nil)
		if resp.StatusCode != 200 || string(body) != "payload" || resp.Header.Get(demo.ReplicaHeader) != "backup-0" {
			t.Fatalf("got %d %q from %q, want the backup's echo", resp.StatusCode, body, resp.Header.Get(demo.ReplicaHeader))
		}
	}
	for range 5 {
		check() // the primary's endpoint refuses
	}
	src.Set(map[string][]endpoint.Endpoint{primary: {}, fallback: {{Addr: backup.Addr()}}})
	for i := 0; ; i++ { // wait for the watch to deliver the change
		p.destinations.mu.RLock()
		n := p.destinations.m[primary].bal.Len()
		p.destinations.mu.RUnlock()
		if n == 0 {
			break
		}
		if i > 500 {
			t.Fatal("the primary's endpoints never went away")
		}
		time.Sleep(2 * time.Millisecond)
	}
	for range 5 {
		check() // the primary has no endpoint at all
	}
	if !strings.Contains(scrape(t, p), "outbound_failover_total 10") {
		t.Errorf("failovers not counted:\n%s", grepLines(scrape(t, p), "failover"))
	}
}
