package demo

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/internal/testwait"
)

// TestTLSEcho: the TLS echo presents its own certificate and echoes what
// the client sends until close_notify, then closes its side the same way.
func TestTLSEcho(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, Config{Name: "echo-3", TLSAddr: "127.0.0.1:0"})
	for _, size := range []int{1, 64 << 10} {
		c := dialTCP(t, s.TLSAddr())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // only recognised, below
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		leaf := tc.ConnectionState().PeerCertificates[0]
		if leaf.Subject.CommonName != TLSCommonName || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "echo-3" {
			t.Errorf("certificate for %q %v, want %q echo-3", leaf.Subject.CommonName, leaf.DNSNames, TLSCommonName)
		}
		want := bytes.Repeat([]byte("tls-echo"), size/8+1)[:size]
		errc := make(chan error, 1)
		go func() {
			_, err := tc.Write(want)
			if err == nil {
				err = tc.CloseWrite() // close_notify: the server echoes the rest, then closes
			}
			errc <- err
		}()
		got, err := io.ReadAll(tc)
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
	if st := s.Stats(); st.TLSConnections != 2 || st.EchoedBytes != 1+64<<10 {
		t.Errorf("stats %+v", st)
	}
}

// TestTLSEchoNotTLS: a client that does not speak TLS gets nothing, and
// the connection ends.
func TestTLSEchoNotTLS(t *testing.T) {
	s := startServer(t, Config{TLSAddr: "127.0.0.1:0"})
	c := dialTCP(t, s.TLSAddr())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	if bytes.Contains(b, []byte("GET")) {
		t.Errorf("plaintext echoed: %q", b)
	}
}

// TestBanner: the server speaks first, answers NOOP and unknown commands,
// and closes after QUIT; a line over MaxBannerLine ends the connection.
func TestBanner(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, Config{Name: "mail-1", BannerAddr: "127.0.0.1:0"})
	c := dialTCP(t, s.BannerAddr())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line := func() string {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", l, err)
		}
		return l
	}
	if got := line(); got != "220 mail-1 skiff-demo banner\r\n" {
		t.Fatalf("banner %q", got)
	}
	io.WriteString(c, "noop\r\nHELO x\nQUIT\r\n")
	for _, want := range []string{"250 OK\r\n", "500 command not recognized\r\n", "221 mail-1 closing\r\n"} {
		if got := line(); got != want {
			t.Fatalf("reply %q, want %q", got, want)
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after QUIT: %q, %v", rest, err)
	}

	c = dialTCP(t, s.BannerAddr())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br = bufio.NewReader(c)
	line()
	io.WriteString(c, strings.Repeat("A", MaxBannerLine)+"\r\n")
	if got := line(); got != "500 line too long\r\n" {
		t.Fatalf("reply to a long line %q", got)
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("after a long line: %q", rest)
	}
	testwait.For(t, "banner goroutines to finish", func() (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.raw) == 0, nil
	})
	if st := s.Stats(); st.BannerConnections != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestReadLine(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      error
	}{
		{"QUIT\r\n", "QUIT", nil},
		{"QUIT\n", "QUIT", nil},
		{"\r\n", "", nil},
		{"QU", "", io.ErrUnexpectedEOF},
		{"", "", io.EOF},
		{strings.Repeat("x", 10) + "\r\n", strings.Repeat("x", 10), nil},
		{strings.Repeat("x", 11) + "\r\n", "", errLineTooLong},
		{strings.Repeat("x", 100), "", errLineTooLong},
	} {
		got, err := readLine(bufio.NewReaderSize(strings.NewReader(c.in), 16), 12)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("readLine(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

// FuzzReadLine: whatever a client sends, a line never outgrows the bound,
// and a line within it comes back whole.
func FuzzReadLine(f *testing.F) {
	for _, s := range []string{"QUIT\r\n", "NOOP\nQUIT\n", "\r\r\n", strings.Repeat("y", 600), "a\x00b\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 64
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		rest := data
		for {
			line, err := readLine(br, limit)
			if err != nil {
				return
			}
			if len(line)+1 > limit {
				t.Fatalf("line of %d bytes over the bound %d", len(line), limit)
			}
			i := bytes.IndexByte(rest, '\n')
			if want := strings.TrimSuffix(string(rest[:i]), "\r"); line != want {
				t.Fatalf("line %q, want %q", line, want)
			}
			rest = rest[i+1:]
		}
	})
}
