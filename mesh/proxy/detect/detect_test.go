package detect

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var tlsClientHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

func TestClassify(t *testing.T) {
	tests := []struct {
		in   string
		want Protocol
	}{
		{"", Unknown},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP1},
		{"HEAD /x HTTP/1.0\r\n", HTTP1},
		{"POST ", HTTP1},
		{"CONNECT example.com:443 HTTP/1.1\r\n", HTTP1},
		{"OPTIONS * HTTP/1.1\r\n", HTTP1},
		{h2Preface, HTTP2},
		{h2Preface + "\x00\x00\x12\x04\x00\x00\x00\x00\x00", HTTP2},
		{"P", Unknown},    // PUT, POST, PATCH or the preface
		{"PRI", Unknown},  // only the preface is left
		{"PRI ", Unknown}, // PRI is not an HTTP/1 method
		{"PRI / HTTP/1.1\r\n", Opaque},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r", Unknown},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\rX", Opaque},
		{"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n", Opaque},
		{"PROPFIND / HTTP/1.1\r\n", HTTP1}, // extension methods are HTTP
		{"MKCOL /dav/x HTTP/1.1\r\n", HTTP1},
		{"VERSION-CONTROL * HTTP/1.1", HTTP1},
		{"M-SEARCH http://h/ HTTP/1.1", HTTP1},
		{"PURGE https://h/", HTTP1},
		{"PURGE htt", Unknown},
		{"PURGE htx", Opaque},
		{"PURGE ", Unknown},
		{"SET key value\r\n", Opaque}, // Redis inline: capitalised words, no target
		{"EHLO mail.example\r\n", Opaque},
		{"PRIX / HTTP/1.1", HTTP1},
		{"PRI-", Unknown},
		{"BASELINE-CONTROL / HTTP/1.1", Opaque}, // longer than MaxExtensionMethod
		{"ABCDEFGHIJKLMNO ", Unknown},
		{"ABCDEFGHIJKLMNOP", Opaque},
		{"get / HTTP/1.1\r\n", Opaque}, // methods are case-sensitive
		{"GET\t/ HTTP/1.1\r\n", Opaque},
		{"GET/", Opaque},
		{"GETS ", Unknown},
		{"GETS /", HTTP1},
		{"HEADS", Unknown},
		{"HEADS\r\n", Opaque},
		{"C", Unknown},
		{"CONNEC", Unknown},
		{"CONNECTX", Unknown},
		{"CONNECTX host:443 HTTP/1.1", Opaque},
		{" GET /", Opaque},
		{"\r\nGET /", Opaque},
		{string(tlsClientHello), TLS},
		{"\x16\x03", TLS},
		{"\x00", Opaque},
		{"\xff\xfe\xfd", Opaque},
		{"SSH-2.0-OpenSSH_9.6\r\n", Opaque},
		{strings.Repeat("P", 100), Opaque},
		{"GET " + strings.Repeat("\x00", 100), HTTP1},
	}
	for _, tt := range tests {
		if got := Classify([]byte(tt.in)); got != tt.want {
			t.Errorf("Classify(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestClassifyPrefixes feeds every request opening byte by byte: each
// strict prefix needs more, the whole decides.
func TestClassifyPrefixes(t *testing.T) {
	openings := map[string]Protocol{h2Preface: HTTP2}
	for _, m := range methods {
		openings[m] = HTTP1
	}
	for s, want := range openings {
		for k := range len(s) {
			if got := Classify([]byte(s[:k])); got != Unknown {
				t.Errorf("Classify(%q) = %v, want unknown (prefix of %q)", s[:k], got, s)
			}
		}
		if got := Classify([]byte(s)); got != want {
			t.Errorf("Classify(%q) = %v, want %v", s, got, want)
		}
		if len(s) > MaxPeek {
			t.Errorf("MaxPeek = %d, but %q needs %d bytes", MaxPeek, s, len(s))
		}
	}
}

func TestProtocolString(t *testing.T) {
	for p, want := range map[Protocol]string{Unknown: "unknown", HTTP1: "http1", HTTP2: "http2", Opaque: "opaque", 9: "Protocol(9)"} {
		if got := p.String(); got != want {
			t.Errorf("Protocol(%d).String() = %q, want %q", p, got, want)
		}
	}
}

// pipe returns the server side of a net.Pipe wrapped in a bufio.Reader,
// and the client side. Both are closed when the test ends.
func pipe(t *testing.T) (*bufio.Reader, net.Conn, net.Conn) {
	t.Helper()
	srv, cli := net.Pipe()
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return bufio.NewReader(srv), srv, cli
}

// writeChunks writes each chunk to c, pausing 1ms (of bubble time) between.
func writeChunks(c net.Conn, chunks ...string) {
	for i, ch := range chunks {
		if i > 0 {
			time.Sleep(time.Millisecond)
		}
		if _, err := c.Write([]byte(ch)); err != nil {
			return
		}
	}
}

func TestDetectHTTP1InSmallWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, srv, cli := pipe(t)
		go writeChunks(cli, "G", "E", "T /pa", "th HTTP/1.1\r\nHost: a\r\n", "\r\n")

		p, why, err := Detect(r, srv, 50*time.Millisecond)
		if p != HTTP1 || why != ReasonNone || err != nil {
			t.Fatalf("Detect = %v, %q, %v; want http1", p, why, err)
		}
		// Nothing was consumed: the request parses from the start.
		req, err := http.ReadRequest(r)
		if err != nil {
			t.Fatalf("reading the request after Detect: %v", err)
		}
		if req.Method != "GET" || req.URL.Path != "/path" || req.Host != "a" {
			t.Errorf("request after Detect = %s %s host %s", req.Method, req.URL, req.Host)
		}
	})
}

func TestDetectHTTP2ByteByByte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, srv, cli := pipe(t)
		chunks := make([]string, len(h2Preface))
		for i := range h2Preface {
			chunks[i] = h2Preface[i : i+1]
		}
		go writeChunks(cli, chunks...)
		p, why, err := Detect(r, srv, time.Second)
		if p != HTTP2 || why != ReasonNone || err != nil {
			t.Fatalf("Detect = %v, %q, %v; want http2", p, why, err)
		}
		got := make([]byte, len(h2Preface))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != h2Preface {
			t.Errorf("after Detect read %q, %v; want the preface", got, err)
		}
	})
}

func TestDetectTLS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, srv, cli := pipe(t)
		go cli.Write(tlsClientHello)
		p, why, err := Detect(r, srv, time.Second)
		if p != TLS || why != ReasonNone || err != nil {
			t.Fatalf("Detect = %v, %q, %v; want tls", p, why, err)
		}
		got := make([]byte, len(tlsClientHello))
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, tlsClientHello) {
			t.Errorf("after Detect read %x, %v; want the ClientHello", got, err)
		}
	})
}

// A server-speaks-first client sends nothing: Detect gives up after the
// timeout, and the connection is then usable without a deadline.
func TestDetectSilentClientTimesOut(t *testing.T) {
	for _, tt := range []struct {
		name    string
		timeout time.Duration
		want    time.Duration
		sent    string
	}{
		{"silent", 50 * time.Millisecond, 50 * time.Millisecond, ""},
		{"too little", 50 * time.Millisecond, 50 * time.Millisecond, "PRI * HTTP/2.0"},
		{"default timeout", 0, DefaultTimeout, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r, srv, cli := pipe(t)
				if tt.sent != "" {
					go cli.Write([]byte(tt.sent))
				}
				start := time.Now() // bubble time: deterministic
				p, why, err := Detect(r, srv, tt.timeout)
				if p != Opaque || why != ReasonTimeout || err != nil {
					t.Fatalf("Detect = %v, %q, %v; want opaque timeout", p, why, err)
				}
				if d := time.Since(start); d != tt.want {
					t.Errorf("Detect returned after %v of bubble time, want %v", d, tt.want)
				}
				// The deadline was cleared: a byte sent an hour later
				// is read normally.
				go func() {
					time.Sleep(time.Hour)
					cli.Write([]byte("!"))
				}()
				want := tt.sent + "!"
				got := make([]byte, len(want))
				if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
					t.Errorf("after Detect read %q, %v; want %q", got, err, want)
				}
			})
		})
	}
}

func TestDetectClientClosesEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, srv, cli := pipe(t)
		go func() {
			writeChunks(cli, "G", "E")
			cli.Close()
		}()
		p, why, err := Detect(r, srv, time.Second)
		if p != Opaque || why != ReasonEOF || err != nil {
			t.Fatalf("Detect = %v, %q, %v; want opaque eof", p, why, err)
		}
		if got, err := io.ReadAll(r); err != nil || string(got) != "GE" {
			t.Errorf("after Detect read %q, %v; want \"GE\"", got, err)
		}
	})
}

// TestDetectLoopbackTCP runs over a real socket, whose timeout error is an
// *net.OpError rather than net.Pipe's.
func TestDetectLoopbackTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("needs a loopback TCP listener: %v", err)
	}
	defer ln.Close()

	dial := func(t *testing.T) (net.Conn, net.Conn) {
		t.Helper()
		cli, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close(); srv.Close() })
		return srv, cli
	}

	t.Run("http1", func(t *testing.T) {
		srv, cli := dial(t)
		go func() {
			for _, s := range []string{"PO", "ST /x HTTP/1.1\r\n", "Host: h\r\nContent-Length: 0\r\n\r\n"} {
				cli.Write([]byte(s))
			}
		}()
		r := bufio.NewReader(srv)
		if p, why, err := Detect(r, srv, 5*time.Second); p != HTTP1 || why != ReasonNone || err != nil {
			t.Fatalf("Detect = %v, %q, %v; want http1", p, why, err)
		}
		req, err := http.ReadRequest(r)
		if err != nil || req.Method != "POST" {
			t.Fatalf("request after Detect: %v, %v", req, err)
		}
	})
	t.Run("silent", func(t *testing.T) {
		srv, cli := dial(t)
		r := bufio.NewReader(srv)
		if p, why, err := Detect(r, srv, 50*time.Millisecond); p != Opaque || why != ReasonTimeout || err != nil {
			t.Fatalf("Detect = %v, %q, %v; want opaque timeout", p, why, err)
		}
		// No deadline left behind: a read that waits past the old
		// deadline succeeds once the client speaks.
		go cli.Write([]byte("hello"))
		got := make([]byte, 5)
		if _, err := io.ReadFull(r, got); err != nil || string(got) != "hello" {
			t.Errorf("after Detect read %q, %v", got, err)
		}
	})
	t.Run("eof", func(t *testing.T) {
		srv, cli := dial(t)
		cli.Write([]byte("OPT"))
		cli.Close()
		r := bufio.NewReader(srv)
		if p, why, err := Detect(r, srv, 5*time.Second); p != Opaque || why != ReasonEOF || err != nil {
			t.Fatalf("Detect = %v, %q, %v; want opaque eof", p, why, err)
		}
	})
}

// fakeConn is an in-memory reader with a recorded read deadline. Reads
// return the data, then err.
type fakeConn struct {
	data      []byte
	err       error
	deadlines []time.Time
	setErr    error // returned by SetReadDeadline
	clearErr  error // returned by SetReadDeadline(time.Time{})
}

var _ Deadliner = (*fakeConn)(nil)

func (c *fakeConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p, c.data[:1]) // one byte at a time
	c.data = c.data[n:]
	return n, nil
}

func (c *fakeConn) SetReadDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	if t.IsZero() {
		return c.clearErr
	}
	return c.setErr
}

func TestDetectDeadlineIsSetThenCleared(t *testing.T) {
	c := &fakeConn{data: []byte("DELETE /x HTTP/1.1\r\n")}
	if p, _, err := Detect(bufio.NewReader(c), c, time.Minute); p != HTTP1 || err != nil {
		t.Fatalf("Detect = %v, %v", p, err)
	}
	if len(c.deadlines) != 2 || c.deadlines[0].IsZero() || !c.deadlines[1].IsZero() {
		t.Errorf("deadlines set = %v, want one deadline then zero", c.deadlines)
	}
}

func TestDetectErrors(t *testing.T) {
	reset := errors.New("connection reset by peer")
	tests := []struct {
		name string
		conn *fakeConn
		size int
		want error
	}{
		{"read error", &fakeConn{data: []byte("GE"), err: reset}, 4096, reset},
		{"set deadline", &fakeConn{data: []byte("GET "), setErr: reset}, 4096, reset},
		{"clear deadline", &fakeConn{data: []byte("GET "), clearErr: reset}, 4096, reset},
		{"no progress", &fakeConn{}, 4096, io.ErrNoProgress},
		{"small buffer", &fakeConn{data: []byte(h2Preface)}, 16, errSmallBuffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, why, err := Detect(bufio.NewReaderSize(tt.conn, tt.size), tt.conn, time.Minute)
			if p != Opaque || why != ReasonError || !errors.Is(err, tt.want) {
				t.Errorf("Detect = %v, %q, %v; want opaque error wrapping %v", p, why, err, tt.want)
			}
		})
	}
}

func TestDetectEOFIgnoresClearError(t *testing.T) {
	c := &fakeConn{data: []byte("GE"), err: io.EOF, clearErr: io.ErrClosedPipe}
	if p, why, err := Detect(bufio.NewReader(c), c, time.Minute); p != Opaque || why != ReasonEOF || err != nil {
		t.Fatalf("Detect = %v, %q, %v; want opaque eof and no error", p, why, err)
	}
}

func TestDetectClosedConnNeedsNoDeadline(t *testing.T) {
	// A client that sent a whole request and closed: net.Pipe refuses
	// deadlines from then on, yet the request is there to serve.
	c := &fakeConn{data: []byte("GET / HTTP/1.1\r\n"), err: io.EOF, setErr: io.ErrClosedPipe, clearErr: io.ErrClosedPipe}
	if p, why, err := Detect(bufio.NewReader(c), c, time.Minute); p != HTTP1 || why != ReasonNone || err != nil {
		t.Fatalf("Detect = %v, %q, %v; want http1 and no error", p, why, err)
	}
	synctest.Test(t, func(t *testing.T) {
		r, srv, cli := pipe(t)
		go func() {
			cli.Write([]byte("HEAD / HTTP/1.1\r\n"))
			cli.Close()
		}()
		synctest.Wait() // blocked in Write until Detect reads
		if p, why, err := Detect(r, srv, time.Second); p != HTTP1 || why != ReasonNone || err != nil {
			t.Fatalf("Detect over a pipe closed by the client = %v, %q, %v; want http1", p, why, err)
		}
	})
}

func TestDetectNilConn(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("PUT /k HTTP/1.1\r\n"))
	if p, why, err := Detect(r, nil, 0); p != HTTP1 || why != ReasonNone || err != nil {
		t.Fatalf("Detect = %v, %q, %v; want http1", p, why, err)
	}
	r = bufio.NewReader(strings.NewReader("HEA"))
	if p, why, err := Detect(r, nil, 0); p != Opaque || why != ReasonEOF || err != nil {
		t.Fatalf("Detect = %v, %q, %v; want opaque eof", p, why, err)
	}
}

func TestClassifyNoAllocs(t *testing.T) {
	for _, in := range [][]byte{[]byte("GET / HTTP/1.1\r\n"), []byte(h2Preface), tlsClientHello, []byte("PRI * ")} {
		if a := testing.AllocsPerRun(100, func() { Classify(in) }); a != 0 {
			t.Errorf("Classify(%q) allocates %v times", in, a)
		}
	}
}

// checkStable verifies Classify's contract on one input: every decided
// prefix agrees with the whole, and MaxPeek bytes always decide.
func checkStable(t *testing.T, data []byte) Protocol {
	t.Helper()
	p := Classify(data)
	if p > TLS {
		t.Fatalf("Classify(%q) = %v: out of range", data, p)
	}
	if len(data) >= MaxPeek && p == Unknown {
		t.Fatalf("Classify(%q) = unknown with %d bytes >= MaxPeek", data, len(data))
	}
	if len(data) == 0 && p != Unknown {
		t.Fatalf("Classify(empty) = %v", p)
	}
	for k := range min(len(data), MaxPeek) {
		if pk := Classify(data[:k]); pk != Unknown && pk != p {
			t.Fatalf("Classify(%q) = %v but its prefix %q gives %v", data, p, data[:k], pk)
		}
	}
	switch p {
	case HTTP2:
		if !bytes.HasPrefix(data, []byte(h2Preface)) {
			t.Fatalf("Classify(%q) = http2 without the preface", data)
		}
	case HTTP1:
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			t.Fatalf("Classify(%q) = http1 without a method", data)
		}
		if !isMethod(string(data[:sp+1])) && !isExtensionRequest(data, sp) {
			t.Fatalf("Classify(%q) = http1 without a known method or an extension method and target", data)
		}
	}
	return p
}

// isExtensionRequest: data[:sp] is an extension method and a request
// target starts after the space.
func isExtensionRequest(data []byte, sp int) bool {
	if sp == 0 || sp > MaxExtensionMethod || string(data[:sp]) == "PRI" {
		return false
	}
	for _, c := range data[:sp] {
		if !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	t := data[sp+1:]
	return bytes.HasPrefix(t, []byte("/")) || bytes.HasPrefix(t, []byte("*")) ||
		bytes.HasPrefix(t, []byte("http://")) || bytes.HasPrefix(t, []byte("https://"))
}

func isMethod(s string) bool {
	for _, m := range methods {
		if s == m {
			return true
		}
	}
	return false
}

func addSeeds(f *testing.F) {
	for _, s := range []string{
		"", "G", "GET / HTTP/1.1\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00",
		"PRI * HTTP/2.0", "PATCH ", "OPTIONS", string(tlsClientHello), "\x00\x01\x02",
		"SSH-2.0-x\r\n", "CONNECT h:1 HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
}

func FuzzClassify(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStable(t, data)
	})
}

// FuzzDetect writes the input over a net.Pipe in chunks of a fuzzed size,
// then keeps the connection open or closes it, and checks that Detect
// agrees with Classify, times out or sees EOF as it should, and leaves
// every byte readable. It runs in a synctest bubble, so the timeout costs
// no wall-clock time and a hang is reported as a deadlock.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{"", "GE", "GET / HTTP/1.1\r\n\r\n", h2Preface, "PRI * HT", string(tlsClientHello)} {
		f.Add([]byte(s), uint8(1), false)
		f.Add([]byte(s), uint8(3), true)
	}
	f.Fuzz(checkDetect)
}

// checkDetect is the body of FuzzDetect.
func checkDetect(t *testing.T, data []byte, chunk uint8, closeAfter bool) {
	if len(data) > 128 { // decided within MaxPeek; the rest only tests readability
		data = data[:128]
	}
	size := max(int(chunk%32), 1)
	want := Classify(data)
	synctest.Test(t, func(t *testing.T) {
		srv, cli := net.Pipe()
		defer srv.Close()
		done := make(chan struct{})
		go func() {
			// net.Pipe is unbuffered: each Write is delivered to
			// one Read of its own, so chunks arrive separately.
			for rest := data; len(rest) > 0; {
				n := min(size, len(rest))
				if _, err := cli.Write(rest[:n]); err != nil {
					return
				}
				rest = rest[n:]
			}
			// The close may come before, during or after Detect's
			// deadline calls, which net.Pipe then refuses.
			if !closeAfter {
				<-done
			}
			cli.Close()
		}()
		defer close(done)

		r := bufio.NewReader(srv)
		p, why, err := Detect(r, srv, 50*time.Millisecond)
		if err != nil {
			t.Fatalf("Detect(%q) error: %v", data, err)
		}
		switch {
		case want != Unknown:
			if p != want {
				t.Fatalf("Detect(%q) = %v, Classify says %v", data, p, want)
			}
			if (p == Opaque) != (why == ReasonNotHTTP) {
				t.Fatalf("Detect(%q) = %v with reason %q", data, p, why)
			}
		case closeAfter:
			if p != Opaque || why != ReasonEOF {
				t.Fatalf("Detect(%q) then close = %v, %q; want opaque eof", data, p, why)
			}
		default:
			if p != Opaque || why != ReasonTimeout {
				t.Fatalf("Detect(%q) then silence = %v, %q; want opaque timeout", data, p, why)
			}
		}
		got := make([]byte, len(data))
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after Detect read %q, %v; want %q", got, err, data)
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"http1", []byte("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")},
		{"http2", []byte(h2Preface + "\x00\x00\x12\x04")},
		{"opaque", tlsClientHello},
		{"unknown", []byte("PRI * HTTP/2.0\r\n")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Classify(bc.in)
			}
		})
	}
}

func TestClassifyTLS(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want Protocol
	}{
		{[]byte{0x16}, Unknown},
		{[]byte{0x16, 0x03, 0x01, 0x02, 0x00}, TLS},
		{[]byte{0x16, 0x03}, TLS},
		{[]byte{0x16, 0x02}, Opaque},
		{[]byte{0x17, 0x03}, Opaque},
	} {
		if got := Classify(tc.in); got != tc.want {
			t.Errorf("Classify(% x) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
