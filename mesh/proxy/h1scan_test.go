package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// genRequests turns fuzz bytes into a stream of HTTP/1.1 requests whose
// folding is known: each request takes a few bytes (fold?, body kind,
// sizes) and body bytes that may contain the fold pattern.
func genRequests(data []byte) (stream []byte, folded []bool) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	var buf bytes.Buffer
	for n := 0; len(data) > 0 && n < 8; n++ {
		ctl := next()
		fold := ctl&1 == 1
		fmt.Fprintf(&buf, "POST /r%d HTTP/1.1\r\nHost: svc\r\n", n)
		if ctl&2 != 0 {
			buf.WriteString("content-length: 0\r\n") // lower case, and overridden below
		}
		if fold {
			sep := " "
			if ctl&4 != 0 {
				sep = "\t"
			}
			buf.WriteString("X-Folded: a\r\n" + sep + "b\r\n")
		}
		body := make([]byte, int(next()%40))
		for i := range body {
			body[i] = " \r\n\tGET /x:"[next()%10]
		}
		switch (ctl >> 3) % 3 {
		case 0: // no body (a "content-length: 0" said above or none)
		case 1:
			if ctl&2 != 0 {
				// Replace the zero length said above: net/http refuses
				// differing duplicates, so say it once.
				buf.Truncate(bytes.LastIndex(buf.Bytes(), []byte("content-length: 0\r\n")))
				if fold {
					buf.WriteString("X-Folded: a\r\n b\r\n")
				}
			}
			fmt.Fprintf(&buf, "Content-Length: %d\r\n\r\n", len(body))
			buf.Write(body)
			folded = append(folded, fold)
			continue
		case 2:
			if ctl&2 != 0 {
				buf.Truncate(bytes.LastIndex(buf.Bytes(), []byte("content-length: 0\r\n")))
				if fold {
					buf.WriteString("X-Folded: a\r\n b\r\n")
				}
			}
			buf.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			for len(body) > 0 {
				k := min(len(body), 1+int(next()%9))
				fmt.Fprintf(&buf, "%x", k)
				if next()&1 == 1 {
					buf.WriteString(";ext=\"v\"")
				}
				buf.WriteString("\r\n")
				buf.Write(body[:k])
				buf.WriteString("\r\n")
				body = body[k:]
			}
			buf.WriteString("0\r\n")
			if next()&1 == 1 {
				buf.WriteString("X-Trailer: t\r\n")
			}
			buf.WriteString("\r\n")
			folded = append(folded, fold)
			continue
		}
		buf.WriteString("\r\n")
		folded = append(folded, fold)
	}
	return buf.Bytes(), folded
}

// checkScanner feeds stream to a scanner in pieces of piece bytes while
// net/http parses the same stream, and checks that each request is
// refused exactly when its head was folded.
func checkScanner(t *testing.T, stream []byte, folded []bool, piece int) {
	s := new(h1Scanner)
	for p := stream; len(p) > 0; {
		k := min(len(p), piece)
		s.scan(p[:k])
		p = p[k:]
	}
	br := bufio.NewReader(bytes.NewReader(stream))
	for i, want := range folded {
		r, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("request %d: net/http: %v\n%q", i, err, stream)
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			t.Fatalf("request %d body: %v\n%q", i, err, stream)
		}
		err = s.claim(r)
		if want && !errors.Is(err, errFolded) || !want && err != nil {
			t.Fatalf("request %d (folded=%v): claim = %v\n%q", i, want, err, stream)
		}
	}
}

func TestH1Scanner(t *testing.T) {
	for _, seed := range h1Seeds() {
		stream, folded := genRequests(seed)
		for _, piece := range []int{1, 2, 3, 7, 64, 1 << 20} {
			checkScanner(t, stream, folded, piece)
		}
	}
}

func h1Seeds() [][]byte {
	return [][]byte{
		{0, 0},
		{1, 5},
		{2 | 8, 10, 1, 2, 3},
		{1 | 16, 30, 3, 3, 3, 3, 1, 0, 1},
		{3 | 8, 4, 0, 0, 0, 0, 1 | 4 | 16, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 1, 1},
		[]byte(strings.Repeat("\x11\x09\x02\x05", 8)),
	}
}

// FuzzH1Scanner: for generated request streams (folded or not, with no
// body, a Content-Length body or a chunked one with extensions and
// trailers, bodies full of CR, LF, spaces and tabs) scanned in pieces of
// any size, the scanner flags exactly the folded heads that net/http
// parses from the same bytes.
func FuzzH1Scanner(f *testing.F) {
	for _, s := range h1Seeds() {
		f.Add(s, uint8(1))
		f.Add(s, uint8(13))
	}
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		stream, folded := genRequests(data)
		checkScanner(t, stream, folded, max(int(piece), 1))
	})
}

// FuzzH1ScannerBytes: on any bytes at all, the scanner neither panics nor
// holds more than maxPendingHeads heads, and when net/http accepts the
// first request, the scanner refuses it if its head has a folded line.
func FuzzH1ScannerBytes(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n"), uint8(1))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), uint8(200))
	f.Add([]byte("GET / HTTP/1.1\r\nUpgrade: x\r\n\r\nGET / HTTP/1.1\r\n\r\n"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		s := new(h1Scanner)
		for p := data; len(p) > 0; {
			k := min(len(p), max(int(piece), 1))
			s.scan(p[:k])
			p = p[k:]
		}
		if len(s.heads) > maxPendingHeads {
			t.Fatalf("%d heads pending", len(s.heads))
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		head := data
		for _, end := range []string{"\n\n", "\n\r\n"} {
			if i := bytes.Index(head, []byte(end)); i >= 0 {
				head = head[:i]
			}
		}
		folded := bytes.Contains(head, []byte("\n ")) || bytes.Contains(head, []byte("\n\t"))
		if err := s.claim(r); folded && err == nil {
			t.Fatalf("a folded head was let through: %q", data)
		}
	})
}
