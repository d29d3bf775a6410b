package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// testH1 is an h1Transport dialling loopback with a plain dialer, its dials
// counted; its fallback records the requests it gets.
type testH1 struct {
	*h1Transport
	dials     atomic.Int64
	fallbacks atomic.Int64
}

func newTestH1(t testing.TB) *testH1 {
	th := &testH1{}
	var d net.Dialer
	th.h1Transport = newH1Transport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		th.dials.Add(1)
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &connectError{addr: addr, err: err}
		}
		return c, nil
	}, roundTripFunc(func(*http.Request) (*http.Response, error) {
		th.fallbacks.Add(1)
		return nil, errors.New("fallback")
	}))
	t.Cleanup(func() { th.closeIdle(time.Time{}) })
	return th
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (th *testH1) idleCount() int {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.nIdle
}

// get sends a request and returns its response and whole body.
func (th *testH1) get(t testing.TB, ctx context.Context, method, url string, body io.Reader) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := th.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// countingServer is an httptest server that counts the connections
// clients open to it.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func TestH1KeepAlive(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(w, "part one, ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/not-modified":
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, "hello")
		}
	}))
	th := newTestH1(t)
	ctx := context.Background()
	paths := []string{"/", "/chunked", "/empty", "/not-modified"}
	for i := range 20 {
		path := paths[i%len(paths)]
		method := http.MethodGet
		if i%5 == 4 {
			method = http.MethodHead
		}
		resp, body, err := th.get(t, ctx, method, s.URL+path, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		want := map[string]string{"/": "hello", "/chunked": "part one, part two"}[path]
		if method == http.MethodHead {
			want = ""
		}
		if body != want {
			t.Fatalf("%s %s: body %q, want %q", method, path, body, want)
		}
		if path == "/chunked" && method == http.MethodGet && len(resp.TransferEncoding) == 0 {
			t.Fatalf("GET /chunked: not chunked")
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests used %d upstream connections, want 1", n)
	}
	if th.idleCount() != 1 {
		t.Fatalf("idle connections: %d, want 1", th.idleCount())
	}
}

func TestH1RequestBodies(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Full duplex: the echo starts before the body is all read.
		http.NewResponseController(w).EnableFullDuplex()
		fmt.Fprintf(w, "len=%d te=%v trailer=%q\n", r.ContentLength, r.TransferEncoding, r.Header.Get("Trailer"))
		n, _ := io.Copy(w, r.Body)
		fmt.Fprintf(w, "\nread=%d x=%q", n, r.Trailer.Get("X-Sum"))
	}))
	th := newTestH1(t)
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB, beyond the socket buffers
	for _, tc := range []struct {
		name    string
		body    func() io.Reader
		length  int64
		trailer bool
		want    string
	}{
		{"content-length", func() io.Reader { return strings.NewReader("abc") }, 3, false, "len=3 te=[] trailer=\"\"\nabc\nread=3 x=\"\""},
		{"chunked", func() io.Reader { return io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")) }, -1, false, "len=-1 te=[chunked] trailer=\"\"\nabcd\nread=4 x=\"\""},
		{"chunked with trailer", func() io.Reader { return strings.NewReader("xyz") }, -1, true, "len=-1 te=[chunked] trailer=\"\"\nxyz\nread=3 x=\"42\""},
		{"large echo", func() io.Reader { return strings.NewReader(big) }, int64(len(big)), false, "len=1048576 te=[] trailer=\"\"\n" + big + "\nread=1048576 x=\"\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/", io.NopCloser(tc.body()))
			req.ContentLength = tc.length
			req.GetBody = nil
			if tc.trailer {
				req.Trailer = http.Header{"X-Sum": {"42"}}
			}
			resp, err := th.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("echo:\n%.200q\nwant\n%.200q", b, tc.want)
			}
		})
	}
	// The body's writer gives the connection back once it is done: a
	// request may start before it has, and open a second connection.
	testwait.For(t, "the connections back in the pool", func() (bool, error) {
		return int64(th.idleCount()) == conns.Load(), fmt.Errorf("%d idle of %d", th.idleCount(), conns.Load())
	})
	if n := conns.Load(); n > 2 {
		t.Fatalf("%d upstream connections for 4 sequential requests", n)
	}
}

// rawServer accepts connections on a loopback port and runs serve on each.
func rawServer(t *testing.T, serve func(n int, c net.Conn)) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(conns.Add(1))
			wg.Go(func() {
				defer c.Close()
				serve(n, c)
			})
		}
	})
	return "http://" + ln.Addr().String(), &conns
}

// readHead reads one request head from br.
func readHead(br *bufio.Reader) error {
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return err
}

func TestH1ResponseFraming(t *testing.T) {
	for _, tc := range []struct {
		name, response string
		body           string
		reused         bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", "abcde", true},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\nuntil the end", "until the end", false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok", false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", false},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "ok", true},
		{"early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, conns := rawServer(t, func(_ int, c net.Conn) {
				br := bufio.NewReader(c)
				for readHead(br) == nil {
					io.WriteString(c, tc.response)
					if !tc.reused {
						return
					}
				}
			})
			th := newTestH1(t)
			var hints []int
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { hints = append(hints, code); return nil },
			})
			for range 3 {
				_, body, err := th.get(t, ctx, http.MethodGet, url+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				if body != tc.body {
					t.Fatalf("body %q, want %q", body, tc.body)
				}
			}
			want := int64(1)
			if !tc.reused {
				want = 3
			}
			if n := conns.Load(); n != want {
				t.Fatalf("3 requests opened %d connections, want %d", n, want)
			}
			if strings.Contains(tc.name, "hints") && len(hints) != 3 {
				t.Fatalf("1xx responses seen: %v, want three 103s", hints)
			}
		})
	}
}

func TestH1BodyClosedEarly(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, big)
	}))
	th := newTestH1(t)
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	resp, err := th.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Fatal("a read after Close succeeded")
	}
	if th.idleCount() != 0 {
		t.Fatal("a connection whose response was not read to its end went back to the pool")
	}
	if _, body, err := th.get(t, context.Background(), http.MethodGet, s.URL, nil); err != nil || len(body) != len(big) {
		t.Fatalf("second request: %d bytes, %v", len(body), err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestH1ServerClosedIdle(t *testing.T) {
	t.Run("closed while idle", func(t *testing.T) {
		var closed atomic.Int64
		url, conns := rawServer(t, func(_ int, c net.Conn) {
			br := bufio.NewReader(c)
			if readHead(br) == nil {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
			c.Close() // as a server's keep-alive timeout does
			closed.Add(1)
		})
		th := newTestH1(t)
		for i := range 3 {
			if _, body, err := th.get(t, context.Background(), http.MethodGet, url, nil); err != nil || body != "ok" {
				t.Fatalf("request %d: %q, %v", i, body, err)
			}
			testwait.For(t, "the server to close the connection", func() (bool, error) {
				return closed.Load() == int64(i+1), nil
			})
		}
		if n := conns.Load(); n != 3 {
			t.Fatalf("%d connections, want 3", n)
		}
		if runtime.GOOS == "linux" && th.retried.Load() != 0 {
			t.Fatalf("%d requests retried: the peek at the idle connection did not see it closed", th.retried.Load())
		}
	})
	t.Run("closed on the request", func(t *testing.T) {
		// The race the peek cannot see: the server closes the connection
		// as the request arrives, unanswered.
		url, conns := rawServer(t, func(n int, c net.Conn) {
			br := bufio.NewReader(c)
			for i := 0; readHead(br) == nil; i++ {
				if n == 1 && i == 1 {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		th := newTestH1(t)
		for i := range 3 {
			if _, body, err := th.get(t, context.Background(), http.MethodGet, url, nil); err != nil || body != "ok" {
				t.Fatalf("request %d: %q, %v", i, body, err)
			}
		}
		if th.retried.Load() != 1 || conns.Load() != 2 {
			t.Fatalf("retried %d times on %d connections, want once on 2", th.retried.Load(), conns.Load())
		}
		// A request that may not be replayed is not: a POST whose body
		// is gone reports the closed connection.
		url, _ = rawServer(t, func(_ int, c net.Conn) {
			br := bufio.NewReader(c)
			if readHead(br) == nil {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
			readHead(br)
		})
		if _, _, err := th.get(t, context.Background(), http.MethodGet, url, nil); err != nil {
			t.Fatal(err)
		}
		_, _, err := th.get(t, context.Background(), http.MethodPost, url, io.NopCloser(strings.NewReader("once")))
		if !errors.Is(err, errServerClosed) || !connectionLost(err) {
			t.Fatalf("POST on a connection closed unanswered: %v, want errServerClosed", err)
		}
	})
}

func TestH1HostileUpstream(t *testing.T) {
	serve := func(response string, stall bool) string {
		url, _ := rawServer(t, func(_ int, c net.Conn) {
			if readHead(bufio.NewReader(c)) != nil {
				return
			}
			io.WriteString(c, response)
			if stall {
				io.Copy(io.Discard, c) // until the client gives up
			}
		})
		return url
	}
	th := newTestH1(t)
	ctx := context.Background()

	t.Run("head over the limit", func(t *testing.T) {
		url := serve("HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", DefaultMaxHeaderBytes)+"\r\n\r\n", true)
		_, _, err := th.get(t, ctx, http.MethodGet, url, nil)
		if err == nil || !strings.Contains(err.Error(), "exceeds 65536 bytes") {
			t.Fatalf("got %v, want the head limit named", err)
		}
	})
	t.Run("1xx responses over the limit", func(t *testing.T) {
		url := serve(strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", DefaultMaxHeaderBytes/40), true)
		_, _, err := th.get(t, ctx, http.MethodGet, url, nil)
		if err == nil || !strings.Contains(err.Error(), "exceeds") {
			t.Fatalf("got %v, want the head limit named", err)
		}
	})
	t.Run("never-ending head", func(t *testing.T) {
		url := serve("HTTP/1.1 200 OK\r\nX-Slow: ", true)
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, _, err := th.get(t, ctx, http.MethodGet, url, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the request's deadline", err)
		}
	})
	t.Run("bad chunk", func(t *testing.T) {
		url := serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n", true)
		_, body, err := th.get(t, ctx, http.MethodGet, url, nil)
		if err == nil {
			t.Fatalf("bad chunk read as %q", body)
		}
	})
	t.Run("switching protocols unasked", func(t *testing.T) {
		url := serve("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", true)
		if _, _, err := th.get(t, ctx, http.MethodGet, url, nil); err == nil {
			t.Fatal("a 101 to a plain request was accepted")
		}
	})
	t.Run("garbage", func(t *testing.T) {
		url := serve("SSH-2.0-OpenSSH\r\n\r\n", false)
		if _, _, err := th.get(t, ctx, http.MethodGet, url, nil); err == nil {
			t.Fatal("garbage read as a response")
		}
	})
	if th.idleCount() != 0 {
		t.Fatalf("%d connections of failed exchanges went back to the pool", th.idleCount())
	}
}

func TestH1CancelMidResponse(t *testing.T) {
	var serverSawClose atomic.Bool
	url, _ := rawServer(t, func(_ int, c net.Conn) {
		if readHead(bufio.NewReader(c)) != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst")
		io.Copy(io.Discard, c) // returns when the client closes
		serverSawClose.Store(true)
	})
	th := newTestH1(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := th.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		read <- err
	}()
	cancel()
	if err := <-read; !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	resp.Body.Close()
	testwait.For(t, "the upstream connection closed", func() (bool, error) { return serverSawClose.Load(), nil })
	if th.idleCount() != 0 {
		t.Fatal("a cancelled exchange's connection went back to the pool")
	}
}

func TestH1FallbackAndConnectError(t *testing.T) {
	th := newTestH1(t)
	for _, h := range []http.Header{
		{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}},
		{"Expect": {"100-continue"}},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
		req.Header = h
		if _, err := th.RoundTrip(req); err == nil || err.Error() != "fallback" {
			t.Fatalf("%v: %v, want net/http's transport", h, err)
		}
	}
	if th.fallbacks.Load() != 2 || th.dials.Load() != 0 {
		t.Fatalf("fallbacks %d, dials %d", th.fallbacks.Load(), th.dials.Load())
	}
	// A port nobody listens on: the balancer must see a connect error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, _, err = th.get(t, context.Background(), http.MethodGet, "http://"+addr+"/", nil)
	if !isConnectError(err) {
		t.Fatalf("dial failure: %v, want a connectError", err)
	}
}

// TestH1ThroughProxy checks the proxy's plaintext HTTP/1.1 upstream path
// keeps one upstream connection for sequential requests, and counts it.
func TestH1ThroughProxy(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host)
	}))
	addr := strings.TrimPrefix(s.URL, "http://")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: addr}}})
	p := startProxy(t, Config{Endpoints: src})
	c := h1Client(t)
	for range 10 {
		_, body := do(t, c, http.MethodGet, "http://"+p.Addr("outbound").String()+"/", svcHTTP, nil, nil)
		if string(body) != svcHTTP {
			t.Fatalf("upstream saw Host %q", body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections for 10 requests, want 1", n)
	}
	m := scrape(t, p)
	if got := grepLines(m, `tcp_open_total{direction="outbound",peer="dst",authority="`+addr+`"`); !strings.HasSuffix(strings.TrimSpace(got), " 1") {
		t.Fatalf("upstream tcp_open_total:\n%s\nin\n%s", got, grepLines(m, "tcp_open_total"))
	}
}

// FuzzH1Response feeds arbitrary upstream bytes to the response path: it
// must never panic, and a connection goes back to the pool only after a
// response read cleanly to its end.
func FuzzH1Response(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil the end",
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := &fuzzConn{r: bytes.NewReader(data)}
		th := newH1Transport(func(context.Context, string, string) (net.Conn, error) { return fc, nil }, nil)
		th.maxHeaderBytes = 4 << 10
		req, _ := http.NewRequest(http.MethodGet, "http://upstream:80/", nil)
		resp, err := th.RoundTrip(req)
		if err != nil {
			if !fc.closed.Load() || th.nIdle != 0 {
				t.Fatalf("failed exchange (%v): closed %v, idle %d", err, fc.closed.Load(), th.nIdle)
			}
			return
		}
		_, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if th.nIdle > 0 && (rerr != nil || fc.closed.Load()) {
			t.Fatalf("connection pooled after read error %v, closed %v", rerr, fc.closed.Load())
		}
		if th.nIdle == 0 && !fc.closed.Load() {
			t.Fatal("connection neither pooled nor closed")
		}
	})
}

// fuzzConn is a connection that answers with fixed bytes.
type fuzzConn struct {
	r      *bytes.Reader
	closed atomic.Bool
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}
func (c *fuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fuzzConn) Close() error                     { c.closed.Store(true); return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }
