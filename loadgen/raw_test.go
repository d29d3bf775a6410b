package loadgen_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// startRawDemo runs skiff-demo with every listener the raw protocols use.
func startRawDemo(t *testing.T) *demo.Server {
	t.Helper()
	s, err := demo.New(demo.Config{Name: "raw-0", TCPAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", BannerAddr: "127.0.0.1:0", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRawProtocols: tcp, tls and banner requests against skiff-demo each
// open a connection and complete their exchange.
func TestRawProtocols(t *testing.T) {
	leakcheck.Check(t)
	s := startRawDemo(t)
	for _, c := range []struct {
		protocol, url, code string
		conns               func(demo.Stats) int64
	}{
		{loadgen.ProtocolTCP, s.TCPAddr(), loadgen.CodeTCPOK, func(st demo.Stats) int64 { return st.TCPConnections }},
		{loadgen.ProtocolTLS, s.TLSAddr(), loadgen.CodeTLSOK, func(st demo.Stats) int64 { return st.TLSConnections }},
		{loadgen.ProtocolBanner, s.BannerAddr(), loadgen.CodeBannerOK, func(st demo.Stats) int64 { return st.BannerConnections }},
	} {
		t.Run(c.protocol, func(t *testing.T) {
			before := c.conns(s.Stats())
			res := run(t, loadgen.Options{
				Target:   loadgen.Target{Protocol: c.protocol, URL: c.url, PayloadBytes: 1000, TLSCommonName: demo.TLSCommonName},
				Pacer:    loadgen.Constant(100),
				Duration: 300 * time.Millisecond,
			})
			if res.Requests < 20 || res.Success != res.Requests || res.StatusCodes[c.code] != res.Requests {
				t.Fatalf("%d of %d succeeded; codes %v, errors %v", res.Success, res.Requests, res.StatusCodes, res.Errors)
			}
			if n := c.conns(s.Stats()) - before; n != res.Requests {
				t.Errorf("the server saw %d connections for %d requests: one each", n, res.Requests)
			}
		})
	}
}

// TestRawFailures: an exchange that does not complete fails, and its
// message says which protocol and what went wrong.
func TestRawFailures(t *testing.T) {
	leakcheck.Check(t)
	s := startRawDemo(t)
	greeter := serve(t, func(c net.Conn) {
		io.WriteString(c, "554 no service here\r\n")
	})
	halfEcho := serve(t, func(c net.Conn) {
		buf := make([]byte, 10)
		io.ReadFull(c, buf)
		c.Write(buf[:5])
	})
	for _, c := range []struct {
		name string
		t    loadgen.Target
		want string
	}{
		{"another certificate", loadgen.Target{Protocol: loadgen.ProtocolTLS, URL: s.TLSAddr(), TLSCommonName: "skiff-proxy"}, "tls: handshake: "},
		{"tls to a plain echo", loadgen.Target{Protocol: loadgen.ProtocolTLS, URL: s.TCPAddr()}, "tls: handshake: "},
		{"refused greeting", loadgen.Target{Protocol: loadgen.ProtocolBanner, URL: greeter}, "banner: greeting 554, want 220"},
		{"echo cut short", loadgen.Target{Protocol: loadgen.ProtocolTCP, URL: halfEcho, PayloadBytes: 10}, "tcp: the echo ended early: 5 of 10 bytes"},
		{"nobody there", loadgen.Target{Protocol: loadgen.ProtocolTCP, URL: closedAddr(t)}, "tcp: dial tcp: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := run(t, loadgen.Options{Target: c.t, Pacer: loadgen.Constant(50), Duration: 200 * time.Millisecond, Timeout: 2 * time.Second})
			if res.Requests == 0 || res.Success != 0 || res.StatusCodes[loadgen.CodeNone] != res.Requests {
				t.Fatalf("%d of %d succeeded; codes %v", res.Success, res.Requests, res.StatusCodes)
			}
			for msg := range res.Errors {
				if !strings.HasPrefix(msg, c.want) {
					t.Errorf("error %q, want one starting %q", msg, c.want)
				}
			}
		})
	}
}

// serve accepts connections on a loopback port and hands each to h, which
// the connection is closed after; it returns the address.
func serve(t *testing.T, h func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			h(c)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestMixAcrossProtocols: a mix of HTTP/1.1, h2c, gRPC, tcp, tls and
// banner requests shares one schedule in proportion to the weights, each
// kind to its own address.
func TestMixAcrossProtocols(t *testing.T) {
	leakcheck.Check(t)
	s := startRawDemo(t)
	res := run(t, loadgen.Options{
		Target: loadgen.Target{URL: "http://" + s.Addr() + "/", TLSCommonName: demo.TLSCommonName},
		Mix: []loadgen.Share{
			{Protocol: loadgen.ProtocolHTTP1, Weight: 2},
			{Protocol: loadgen.ProtocolH2C},
			{Protocol: loadgen.ProtocolGRPC},
			{Protocol: loadgen.ProtocolTCP, URL: s.TCPAddr()},
			{Protocol: loadgen.ProtocolTLS, URL: s.TLSAddr()},
			{Protocol: loadgen.ProtocolBanner, URL: s.BannerAddr()},
		},
		Pacer:    loadgen.Constant(140),
		Duration: 500 * time.Millisecond,
	})
	if res.Success != res.Requests || res.Requests != 70 {
		t.Fatalf("%d of %d succeeded (70 due); codes %v, errors %v", res.Success, res.Requests, res.StatusCodes, res.Errors)
	}
	// 70 requests are ten turns of the 7-request cycle: the HTTP ones
	// (HTTP/1.1 twice a turn, h2c once) answer 200.
	for code, want := range map[string]int64{"200": 30, "grpc:OK": 10, loadgen.CodeTCPOK: 10, loadgen.CodeTLSOK: 10, loadgen.CodeBannerOK: 10} {
		if got := res.StatusCodes[code]; got != want {
			t.Errorf("%s: %d requests, want %d (codes %v)", code, got, want, res.StatusCodes)
		}
	}
	if res.Protocol != "http1+h2c+grpc+tcp+tls+banner" {
		t.Errorf("result protocol %q", res.Protocol)
	}
}

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		in   string
		code int
		err  error
	}{
		{"220 mail ready\r\n", 220, nil},
		{"221\r\n", 221, nil},
		{"250-first\r\n250-second\r\n250 last\r\n", 250, nil},
		{"250-first\r\n251 last\r\n", 0, loadgen.ErrBadReply},
		{"22 short\r\n", 0, loadgen.ErrBadReply},
		{"2x0 nope\r\n", 0, loadgen.ErrBadReply},
		{"120 too low\r\n", 0, loadgen.ErrBadReply},
		{"220_x\r\n", 0, loadgen.ErrBadReply},
		{"220 no end", 0, io.ErrUnexpectedEOF},
		{"", 0, io.EOF},
		{"220 " + strings.Repeat("x", loadgen.MaxReplyLine) + "\r\n", 0, loadgen.ErrBadReply},
		{strings.Repeat("250-x\r\n", 20), 0, loadgen.ErrBadReply},
	} {
		code, err := loadgen.ReadReply(bufio.NewReaderSize(strings.NewReader(c.in), loadgen.MaxReplyLine))
		if code != c.code || !errors.Is(err, c.err) {
			t.Errorf("ReadReply(%.40q) = %d, %v; want %d, %v", c.in, code, err, c.code, c.err)
		}
	}
}

// FuzzReadReply: whatever a server sends, ReadReply returns a code in
// 200..599 or an error, and never reads past its bound of lines.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"220 ready\r\n", "250-a\r\n250 b\r\n", "554\n", "\r\n", strings.Repeat("9", 600)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := strings.NewReader(string(data))
		code, err := loadgen.ReadReply(bufio.NewReaderSize(r, loadgen.MaxReplyLine))
		if err == nil && (code < 200 || code > 599) {
			t.Fatalf("code %d without an error", code)
		}
		if err != nil && code != 0 {
			t.Fatalf("code %d with error %v", code, err)
		}
	})
}
