package demo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
)

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

func TestTCPEchoHalfClose(t *testing.T) {
	s := startServer(t, Config{TCPAddr: "127.0.0.1:0"})
	for _, size := range []int{5, 512 << 10} {
		c := dialTCP(t, s.TCPAddr())
		want := bytes.Repeat([]byte("tcp-echo"), size/8+1)[:size]
		errc := make(chan error, 1)
		go func() {
			// Write everything, then half-close: the server must still
			// echo what is in flight before closing its side.
			_, err := c.Write(want)
			if err == nil {
				err = c.CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("size %d: echoed %d bytes, not the same", size, len(got))
		}
	}
	testwait.For(t, "echo goroutines to finish", func() (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.raw) == 0, nil
	})
	if st := s.Stats(); st.TCPConnections != 2 || st.EchoedBytes != 5+512<<10 {
		t.Errorf("stats %+v", st)
	}
}

func TestTCPReset(t *testing.T) {
	s := startServer(t, Config{TCPAddr: "127.0.0.1:0", Behaviour: Behaviour{ResetRate: 1}})
	var d net.Dialer
	// On loopback the reset can even beat the end of connect.
	if c, err := d.DialContext(t.Context(), "tcp", s.TCPAddr()); err == nil {
		defer c.Close()
		_, _ = c.Write([]byte("x"))
		if b, err := io.ReadAll(c); len(b) != 0 {
			t.Errorf("reset connection echoed %q (%v)", b, err)
		}
	}
	testwait.For(t, "the reset to be counted", func() (bool, error) { return s.Stats().Resets >= 1, nil })
	if st := s.Stats(); st.Resets != 1 {
		t.Errorf("resets %d, want 1", st.Resets)
	}
}

// TestTCPCloseWithOpenConn checks that shutdown ends an idle echo
// connection once its deadline passes.
func TestTCPCloseWithOpenConn(t *testing.T) {
	leakcheck.Check(t)
	s, err := New(Config{TCPAddr: "127.0.0.1:0", ShutdownTimeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, s.TCPAddr())
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err == nil {
		t.Error("Close with a busy connection and no time left returned nil")
	}
	if _, err := io.ReadAll(c); err != nil {
		t.Logf("read after shutdown: %v", err)
	}
}

func upgradeRequest(proto, extra string) string {
	return "GET /ws HTTP/1.1\r\nHost: demo\r\nConnection: keep-alive, Upgrade\r\nUpgrade: " + proto +
		"\r\nX-Echo-Id: 9\r\n\r\n" + extra
}

func TestUpgradeEcho(t *testing.T) {
	s := startServer(t, Config{Name: "ws-1"})
	for _, proto := range []string{"skiff-echo", "websocket"} {
		c := dialTCP(t, s.Addr())
		// Bytes sent right behind the request land in the server's
		// buffered reader and must be echoed too.
		if _, err := io.WriteString(c, upgradeRequest(proto, "early|")); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != proto ||
			resp.Header.Get(ReplicaHeader) != "ws-1" || resp.Header.Get("X-Echo-Id") != "9" {
			t.Fatalf("%s: response %d %v", proto, resp.StatusCode, resp.Header)
		}
		if _, err := io.WriteString(c, "late"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len("early|late"))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "early|late" {
			t.Fatalf("%s: echoed %q, %v", proto, buf, err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Fatalf("%s: after half-close read %q, %v", proto, rest, err)
		}
	}
	// The server counts an upgraded exchange when its handler returns,
	// which may be just after the client has read everything: wait for it.
	testwait.For(t, "two 101s in the stats", func() (bool, error) {
		st := s.Stats()
		return st.HTTP[101] == 2, fmt.Errorf("stats %+v", st)
	})
	if st := s.Stats(); st.HTTP[101] != 2 {
		t.Errorf("stats %+v, want two 101s", st)
	}
}

// TestUpgradeEchoHTTPClient upgrades through net/http's client, which hands
// back the connection as the response body.
func TestUpgradeEchoHTTPClient(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t, s, protos[0])
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.base+"/ws?delay=1us", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "skiff-echo")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		t.Fatalf("status %d, body %T", resp.StatusCode, resp.Body)
	}
	defer rwc.Close()
	if _, err := io.WriteString(rwc, "over the upgrade"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("over the upgrade"))
	if _, err := io.ReadFull(rwc, buf); err != nil || !strings.HasPrefix(string(buf), "over") {
		t.Fatalf("echo %q, %v", buf, err)
	}
}
