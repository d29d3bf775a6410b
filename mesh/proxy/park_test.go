//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// parkedCount is how many connections the first listener's HTTP/1 server
// has parked.
func parkedCount(p *Proxy) int {
	pk := &p.listeners[0].h1.queue.park
	pk.mu.Lock()
	defer pk.mu.Unlock()
	return len(pk.conns)
}

// rawGet sends one GET on c and reads its response.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetDeadline(time.Now().Add(testwait.Timeout))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", svcHTTP)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	c.SetDeadline(time.Time{})
}

func waitParked(t *testing.T, p *Proxy, n int) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%d parked connections", n), func() (bool, error) {
		got := parkedCount(p)
		return got == n, fmt.Errorf("%d parked", got)
	})
}

// TestParkIdleHTTP1: a kept-alive plaintext HTTP/1 connection idle for
// parkAfter leaves net/http for the parker (no goroutine, no buffers),
// and comes back for each new request, on the same connection, with
// nothing written to it meanwhile.
func TestParkIdleHTTP1(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "b")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}})
	p := startProxy(t, Config{Endpoints: src})
	addr := p.Addr("outbound").String()

	t.Run("park-and-wake", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for range 3 {
			rawGet(t, c, br)
			waitParked(t, p, 1)
			// Parked quietly: net/http ended its wait with a timeout,
			// which it does not answer.
			c.SetReadDeadline(time.Now().Add(2 * parkAfter))
			if n, err := c.Read(make([]byte, 64)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %d bytes (%v) from a parked connection", n, err)
			}
		}
		rawGet(t, c, br)
		m := scrape(t, p)
		if !strings.Contains(m, `tcp_open_total{direction="outbound",peer="src",authority="",tls="disabled"} 1`) {
			t.Errorf("the requests did not all go over one connection:\n%s", grepLines(m, "tcp_open_total"))
		}
		c.Close()
		testwait.For(t, "the proxy to close its side", func() (bool, error) {
			return parkedCount(p) == 0 && p.listeners[0].conns.n.Load() == 0, nil
		})
	})

	t.Run("not-mid-request", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		rawGet(t, c, br)
		waitParked(t, p, 1)
		// Half a request wakes it; the rest comes later than parkAfter.
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHo")
		waitParked(t, p, 0)
		time.Sleep(3 * parkAfter) // the policy's delay, not a wait for an event
		if n := parkedCount(p); n != 0 {
			t.Fatalf("a connection holding half a request was parked")
		}
		c.SetDeadline(time.Now().Add(testwait.Timeout))
		fmt.Fprintf(c, "st: %s\r\n\r\n", svcHTTP)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the completed request: %v", err)
		}
		resp.Body.Close()
	})

	t.Run("closed-at-shutdown", func(t *testing.T) {
		q := startProxyManual(t, Config{Endpoints: src})
		c, err := net.Dial("tcp", q.p.Addr("outbound").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rawGet(t, c, bufio.NewReader(c))
		waitParked(t, q.p, 1)
		if err := q.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(testwait.Timeout))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("a parked connection outlived the proxy: %d bytes, %v", n, err)
		}
	})
}

// TestParkedEvicted: at the connection cap, a parked connection is the
// idle one that makes room.
func TestParkedEvicted(t *testing.T) {
	leakcheck.Check(t)
	backend := startDemo(t, "b")
	src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: backend.Addr()}}})
	p := startProxy(t, Config{Endpoints: src, MaxConnections: 1})
	addr := p.Addr("outbound").String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	rawGet(t, idle, bufio.NewReader(idle))
	waitParked(t, p, 1)
	time.Sleep(minEvictIdle) // the policy's age, not a wait for an event
	fresh, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	rawGet(t, fresh, bufio.NewReader(fresh))
	idle.SetReadDeadline(time.Now().Add(testwait.Timeout))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the parked connection was kept (%d bytes, %v)", n, err)
	}
	waitParked(t, p, 1) // the fresh one, now idle
}

// manualProxy is a proxy a test stops itself.
type manualProxy struct {
	p      *Proxy
	cancel context.CancelFunc
	done   chan error
}

func startProxyManual(t *testing.T, cfg Config) *manualProxy {
	t.Helper()
	cfg.OutboundAddr, cfg.InboundAddr, cfg.AdminAddr = "127.0.0.1:0", "-", "-"
	cfg.Logger = testLogger(t)
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &manualProxy{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- p.Run(ctx) }()
	t.Cleanup(func() { m.stop() })
	waitReady(t, p)
	return m
}

func (m *manualProxy) stop() error {
	m.cancel()
	err, ok := <-m.done
	if ok {
		close(m.done)
	}
	return err
}

// TestParkedErrorIsQuiet: net/http closes a connection whose read ends in
// errParked without writing to it, as it does at its own idle timeout,
// both between requests and at a request's first read (a parked
// connection woken with nothing to read). Any other read error at the
// first read gets a 400 written first.
func TestParkedErrorIsQuiet(t *testing.T) {
	leakcheck.Check(t)
	client, server := net.Pipe()
	defer client.Close()
	ln := &oneConnListener{c: &erringConn{Conn: server, err: errParked}, done: make(chan struct{})}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	client.SetReadDeadline(time.Now().Add(testwait.Timeout))
	b, err := io.ReadAll(client)
	if len(b) != 0 || err != nil {
		t.Errorf("net/http answered a parked read with %q (%v)", b, err)
	}
	srv.Close()
	<-served
}

// erringConn fails every read with err.
type erringConn struct {
	net.Conn
	err error
}

func (c *erringConn) Read([]byte) (int, error) { return 0, c.err }

// oneConnListener accepts c once, then blocks until closed.
type oneConnListener struct {
	c    net.Conn
	done chan struct{}
	once bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.once {
		l.once = true
		return l.c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }
