package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
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

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startProxy runs a proxy until the test ends and checks it drains cleanly.
func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.OutboundAddr == "" {
		cfg.OutboundAddr = "127.0.0.1:0"
	}
	if cfg.InboundAddr == "" {
		cfg.InboundAddr = "-"
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = "127.0.0.1:0"
	}
	if cfg.DetectTimeout == 0 {
		cfg.DetectTimeout = 300 * time.Millisecond
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy Run: %v", err)
		}
	})
	waitReady(t, p)
	return p
}

func waitReady(t testing.TB, p *Proxy) {
	t.Helper()
	for i := 0; i < 500 && !p.Ready(); i++ {
		time.Sleep(2 * time.Millisecond)
	}
	if !p.Ready() {
		t.Fatal("proxy never became ready")
	}
}

func startDemo(t testing.TB, name string) *demo.Server {
	t.Helper()
	s, err := demo.New(demo.Config{Name: name, TCPAddr: "127.0.0.1:0", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// mesh is a client-side proxy in front of a demo backend, either directly
// (one hop) or through the backend's own inbound proxy (two hops: the
// meshed path).
type mesh struct {
	backend  *demo.Server
	outbound *Proxy
	inbound  *Proxy // nil for one hop
	entry    string // where clients send HTTP and gRPC
	tcpAddr  string // where clients open TCP to the backend's echo port
}

const (
	svcHTTP = "echo.test.svc:80"
	svcTCP  = "echo-tcp.test.svc:9000"
)

func routeAddr(p *Proxy, authority string) string {
	for _, l := range p.listeners {
		if l.route == authority {
			return l.ln.Addr().String()
		}
	}
	return ""
}

func newMesh(t testing.TB, hops int) *mesh {
	t.Helper()
	m := &mesh{backend: startDemo(t, "echo-1")}
	httpEP := endpoint.Endpoint{Addr: m.backend.Addr()}
	tcpEP := endpoint.Endpoint{Addr: m.backend.TCPAddr()}
	if hops == 2 {
		m.inbound = startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: m.backend.Addr()})
		tcpIn := startProxy(t, Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", InboundForward: m.backend.TCPAddr()})
		httpEP = endpoint.Endpoint{Addr: m.inbound.Addr("inbound").String(), Meshed: true}
		tcpEP = endpoint.Endpoint{Addr: tcpIn.Addr("inbound").String(), Meshed: true}
	}
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {httpEP}, svcTCP: {tcpEP}})
	m.outbound = startProxy(t, Config{Endpoints: src, TCPRoutes: []TCPRoute{{Addr: "127.0.0.1:0", Authority: svcTCP}}})
	m.entry = m.outbound.Addr("outbound").String()
	m.tcpAddr = routeAddr(m.outbound, svcTCP)
	return m
}

func h1Client(t testing.TB) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func h2cClient(t testing.TB) *http.Client {
	tr := &http.Transport{DisableCompression: true, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func do(t testing.TB, c *http.Client, method, url, host string, body io.Reader, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

var hops = []struct {
	name string
	n    int
}{{"one-hop", 1}, {"two-hop", 2}}

// TestProtocolMatrix runs the proxying behaviours over every protocol, one
// hop and two hops (the meshed path). Transparent mode runs the same
// matrix inside a network namespace: see transparent_test.go.
func TestProtocolMatrix(t *testing.T) {
	for _, h := range hops {
		t.Run(h.name, func(t *testing.T) {
			leakcheck.Check(t)
			m := newMesh(t, h.n)
			t.Run("http1", func(t *testing.T) { testHTTP(t, m, h1Client(t), "HTTP/1.1") })
			t.Run("h2c", func(t *testing.T) { testHTTP(t, m, h2cClient(t), "HTTP/2.0") })
			t.Run("grpc", func(t *testing.T) { testGRPC(t, m.entry) })
			t.Run("tcp", func(t *testing.T) { testTCP(t, m.tcpAddr) })
			if h.n == 2 {
				// A fresh mesh: the upgrade test above rightly opened an
				// HTTP/1.1 connection of its own to the peer proxy.
				t.Run("one-connection-between-proxies", func(t *testing.T) { testMultiplexed(t, newMesh(t, 2)) })
			}
		})
	}
}

func testHTTP(t *testing.T, m *mesh, c *http.Client, wantProto string) {
	base := "http://" + m.entry

	t.Run("protocol-preserved", func(t *testing.T) {
		resp, body := do(t, c, "GET", base+"/", svcHTTP, nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), wantProto) {
			t.Fatalf("got %d %q; the backend should see %s", resp.StatusCode, body, wantProto)
		}
		if got := resp.Header.Get(demo.ReplicaHeader); got != "echo-1" {
			t.Errorf("replica header %q", got)
		}
	})
	t.Run("body-intact", func(t *testing.T) {
		payload := make([]byte, 300<<10)
		rand.Read(payload)
		resp, body := do(t, c, "POST", base+"/echo", svcHTTP, bytes.NewReader(payload), nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, payload) {
			t.Fatalf("status %d, echoed %d bytes, want the %d sent", resp.StatusCode, len(body), len(payload))
		}
	})
	t.Run("chunked-request", func(t *testing.T) {
		payload := strings.Repeat("chunk ", 5000)
		// io.MultiReader hides the length: the client streams it chunked.
		resp, body := do(t, c, "POST", base+"/echo", svcHTTP, io.MultiReader(strings.NewReader(payload)), nil)
		if resp.StatusCode != 200 || string(body) != payload {
			t.Fatalf("status %d, echoed %d bytes, want %d", resp.StatusCode, len(body), len(payload))
		}
	})
	t.Run("expect-continue", func(t *testing.T) {
		resp, body := do(t, c, "POST", base+"/echo", svcHTTP, strings.NewReader("after continue"), http.Header{"Expect": {"100-continue"}})
		if resp.StatusCode != 200 || string(body) != "after continue" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("trailers", func(t *testing.T) {
		resp, _ := do(t, c, "GET", base+"/trailers", svcHTTP, nil, nil)
		if got := resp.Trailer.Get(demo.TrailerName); got != "done" {
			t.Fatalf("trailer %s = %q, want done (trailers %v)", demo.TrailerName, got, resp.Trailer)
		}
	})
	t.Run("request-trailers", func(t *testing.T) {
		// A body of unknown length, so HTTP/1.1 sends it chunked, with
		// a trailer declared before and set after the body.
		req, err := http.NewRequest("POST", base+"/trailers", io.MultiReader(strings.NewReader("body before trailers")))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = svcHTTP
		req.Trailer = http.Header{"Skiff-Checksum": nil}
		req.Body = &trailerBody{Reader: strings.NewReader("body before trailers"), set: func() { req.Trailer.Set("Skiff-Checksum", "c0ffee") }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get(demo.RequestTrailerPrefix + "Skiff-Checksum"); got != "c0ffee" {
			t.Fatalf("the backend saw request trailer Skiff-Checksum = %q, want c0ffee (status %d)", got, resp.StatusCode)
		}
	})
	t.Run("streaming", func(t *testing.T) {
		resp, body := do(t, c, "GET", base+"/stream?n=4&interval=1ms", svcHTTP, nil, nil)
		if resp.StatusCode != 200 || strings.Count(string(body), "\n") < 4 {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("hop-by-hop-stripped", func(t *testing.T) {
		if wantProto != "HTTP/1.1" {
			t.Skip("Connection headers are HTTP/1.1 only")
		}
		hdr := http.Header{"Connection": {"X-Echo-Hop"}, "X-Echo-Hop": {"secret"}, "X-Echo-Keep": {"kept"}}
		resp, _ := do(t, c, "GET", base+"/", svcHTTP, nil, hdr)
		if resp.Header.Get("X-Echo-Hop") != "" {
			t.Error("a header named in Connection reached the backend")
		}
		if resp.Header.Get("X-Echo-Keep") != "kept" {
			t.Error("an end-to-end header was lost")
		}
	})
	t.Run("unknown-authority", func(t *testing.T) {
		resp, _ := do(t, c, "GET", base+"/", "nowhere.test.svc", nil, nil)
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ErrorHeader) == "" {
			t.Fatalf("status %d %s=%q; want 502 with a reason", resp.StatusCode, ErrorHeader, resp.Header.Get(ErrorHeader))
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		if wantProto != "HTTP/1.1" {
			t.Skip("HTTP Upgrade is HTTP/1.1 only")
		}
		testUpgrade(t, m.entry)
	})
}

// trailerBody calls set when its reader is exhausted: the way a client
// fills in a trailer it could only compute from the whole body.
type trailerBody struct {
	io.Reader
	set  func()
	once sync.Once
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		b.once.Do(b.set)
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

func testUpgrade(t *testing.T, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: skiff-echo\r\n\r\n", svcHTTP)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"hello", "upgraded world"} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, got, err)
		}
	}
}

func testGRPC(t *testing.T, addr string) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(svcHTTP))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got, err := demo.Echo(ctx, cc, []byte("ping"))
	if err != nil || string(got) != "ping" {
		t.Fatalf("unary: %q, %v", got, err)
	}
	msgs, err := demo.StreamEcho(ctx, cc, []byte("s"), 5)
	if err != nil || len(msgs) != 5 {
		t.Fatalf("server stream: %d messages, %v", len(msgs), err)
	}
	st, err := demo.Chat(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("m%d", i)
		if err := st.Send([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if got, err := st.Recv(); err != nil || string(got) != msg {
			t.Fatalf("bidi: %q, %v", got, err)
		}
	}
	st.CloseSend()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("bidi end: %v", err)
	}
	// Statuses travel in trailers and must come through.
	mctx := metadata.AppendToOutgoingContext(ctx, demo.MetadataGRPCStatusCode, "14")
	if _, err := demo.Echo(mctx, cc, []byte("x")); status.Code(err) != codes.Unavailable {
		t.Fatalf("injected status: %v, want Unavailable", err)
	}
}

func testTCP(t *testing.T, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	payload := bytes.Repeat([]byte("opaque bytes "), 20000)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite() // half-close: the echo finishes, then closes
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d of %d bytes, %v", len(got), len(payload), err)
	}
}

// testMultiplexed checks that HTTP/1.1 from many client connections shares
// one HTTP/2 connection between the two proxies.
func testMultiplexed(t *testing.T, m *mesh) {
	base := "http://" + m.entry
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for range 5 {
				req, _ := http.NewRequest("GET", base+"/", nil)
				req.Host = svcHTTP
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	in := m.inbound.Addr("inbound").String()
	text := scrape(t, m.outbound)
	want := fmt.Sprintf(`tcp_open_total{direction="outbound",peer="dst",authority="%s",tls="disabled"} 1`, in)
	if !strings.Contains(text, want) {
		t.Fatalf("want exactly one connection to the peer proxy:\n%s", grepLines(text, "tcp_open_total"))
	}
}

func scrape(t testing.TB, p *Proxy) string {
	t.Helper()
	resp, err := http.Get("http://" + p.Addr("admin").String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
