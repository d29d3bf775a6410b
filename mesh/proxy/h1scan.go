package proxy

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// h1Scanner follows the request stream of one HTTP/1.x client connection,
// head by head, and notes which heads contain obsolete line folding
// (obs-fold: a field line that starts with a space or a tab, continuing
// the previous one). RFC 9112 §5.2 lets a server reject such a request or
// unfold it; net/http unfolds silently, and offers no way to tell, so the
// proxy reads the bytes as they pass and rejects the request with 400.
//
// To find where each head starts, the scanner follows the message framing
// it reads in the head (Content-Length, or chunked), and ServeHTTP checks
// that net/http framed the request the same way: if they ever disagree,
// the connection's requests are refused rather than left unchecked.
//
// The scanner copies nothing: it looks at each byte of a head once, skips
// Content-Length bodies by counting, and reads only the size lines of
// chunked ones.
type h1Scanner struct {
	mu    sync.Mutex
	state uint8
	cur   h1Head    // the head being read
	line  [128]byte // the start of the current field line
	n     int       // bytes of the current line seen (may exceed len(line))
	left  int64     // body or chunk bytes still to skip
	heads []h1Head  // heads read and not yet claimed by a request, oldest first
}

// h1Head is what the scanner learned from one request head.
type h1Head struct {
	folded  bool
	length  int64 // Content-Length; -1 when absent
	chunked bool
	stop    bool // Upgrade or CONNECT: what follows may not be HTTP
	bad     bool // framing the scanner cannot follow (e.g. an odd Content-Length)
}

// Scanner states.
const (
	hsHeadStart    uint8 = iota // before a request line (blank lines are skipped)
	hsRequestLine               // inside the request line
	hsFieldStart                // at the start of a field line, or of the blank line
	hsField                     // inside a field line
	hsFieldCR                   // after a CR that may end the head
	hsBody                      // skipping a Content-Length body
	hsChunkSize                 // inside a chunk-size line
	hsChunkData                 // skipping chunk data
	hsChunkEnd                  // the CRLF after chunk data
	hsTrailerStart              // at the start of a trailer line, or of the blank line
	hsTrailer                   // inside a trailer line
	hsStopped                   // upgraded or lost: nothing more is checked
)

// maxPendingHeads bounds heads read ahead of the requests that claim them.
// net/http reads at most its 4 KiB buffer ahead, so only a connection that
// no longer speaks HTTP (or a client pipelining hundreds of tiny requests)
// gets near it.
const maxPendingHeads = 256

// scan follows p, the next bytes the client sent.
func (s *h1Scanner) scan(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch s.state {
		case hsHeadStart:
			if c == '\r' || c == '\n' {
				continue
			}
			s.cur = h1Head{length: -1}
			s.state = hsRequestLine
			s.n = 0
			s.keep(c)
		case hsRequestLine:
			if c == '\n' {
				s.requestLine()
				s.state = hsFieldStart
				continue
			}
			s.keep(c)
		case hsFieldStart:
			switch c {
			case '\n':
				s.endHead()
			case '\r':
				s.state = hsFieldCR
			case ' ', '\t':
				s.cur.folded = true
				s.state, s.n = hsField, 0
			default:
				s.state, s.n = hsField, 0
				s.keep(c)
			}
		case hsFieldCR:
			if c == '\n' {
				s.endHead()
				continue
			}
			// A CR that does not end the head: net/http rejects such a
			// line; follow it as a field line all the same.
			s.state, s.n = hsField, 0
			s.keep('\r')
			s.keep(c)
		case hsField:
			if c == '\n' {
				s.field()
				s.state = hsFieldStart
				continue
			}
			s.keep(c)
		case hsBody:
			skip := min(int64(len(p)-i), s.left)
			s.left -= skip
			i += int(skip) - 1
			if s.left == 0 {
				s.state = hsHeadStart
			}
		case hsChunkSize:
			if c == '\n' {
				// Only the start matters: the size comes first, and a
				// long line is long by its extensions.
				size, ok := chunkSize(s.line[:min(s.n, len(s.line))])
				switch {
				case !ok:
					s.lose()
				case size == 0:
					s.state = hsTrailerStart
				default:
					s.state, s.left = hsChunkData, size
				}
				s.n = 0
				continue
			}
			s.keep(c)
		case hsChunkData:
			skip := min(int64(len(p)-i), s.left)
			s.left -= skip
			i += int(skip) - 1
			if s.left == 0 {
				s.state, s.n = hsChunkEnd, 0
			}
		case hsChunkEnd:
			switch {
			case c == '\n':
				s.state, s.n = hsChunkSize, 0
			case c == '\r' && s.n == 0:
				s.n++
			default:
				s.lose()
			}
		case hsTrailerStart:
			switch c {
			case '\n':
				s.state = hsHeadStart
			case '\r':
			default:
				s.state = hsTrailer
			}
		case hsTrailer:
			if c == '\n' {
				s.state = hsTrailerStart
			}
		case hsStopped:
			return
		}
	}
}

// keep records c as the next byte of the current line.
func (s *h1Scanner) keep(c byte) {
	if s.n < len(s.line) {
		s.line[s.n] = c
	}
	s.n++
}

func (s *h1Scanner) lineText() (string, bool) {
	b := s.line[:min(s.n, len(s.line))]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return string(b), s.n <= len(s.line)
}

func (s *h1Scanner) requestLine() {
	text, _ := s.lineText()
	if strings.HasPrefix(text, "CONNECT ") {
		s.cur.stop = true
	}
}

// field reads the framing fields; every other field is only looked at for
// folding.
func (s *h1Scanner) field() {
	if s.n == 0 {
		return
	}
	switch s.line[0] {
	case 'C', 'c', 'T', 't', 'U', 'u':
	default:
		return
	}
	text, whole := s.lineText()
	name, value, ok := strings.Cut(text, ":")
	if !ok {
		return
	}
	value = strings.Trim(value, " \t")
	switch {
	case strings.EqualFold(name, "Content-Length"):
		n, err := strconv.ParseInt(value, 10, 63)
		if err != nil || !whole || s.cur.length >= 0 && s.cur.length != n {
			s.cur.bad = true
			return
		}
		s.cur.length = n
	case strings.EqualFold(name, "Transfer-Encoding"):
		if !whole || !strings.EqualFold(value, "chunked") || s.cur.chunked {
			s.cur.bad = true
			return
		}
		s.cur.chunked = true
	case strings.EqualFold(name, "Upgrade"):
		s.cur.stop = true
	}
}

// endHead files the head and follows its body, as net/http frames it: a
// chunked body ignores Content-Length.
func (s *h1Scanner) endHead() {
	h := s.cur
	if len(s.heads) >= maxPendingHeads {
		s.lose()
		return
	}
	s.heads = append(s.heads, h)
	switch {
	case h.bad || h.stop:
		s.state = hsStopped
	case h.chunked:
		s.state, s.n = hsChunkSize, 0
	case h.length > 0:
		s.state, s.left = hsBody, h.length
	default:
		s.state = hsHeadStart
	}
}

// lose stops the scan: the heads still to come cannot be checked, and the
// requests that would claim them are refused.
func (s *h1Scanner) lose() {
	s.state = hsStopped
	s.heads = append(s.heads[:0], h1Head{bad: true})
}

// chunkSize parses a chunk-size line: hex digits, then optional extensions.
func chunkSize(line []byte) (int64, bool) {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	var n int64
	digits := 0
	for _, c := range line {
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case c >= 'a' && c <= 'f':
			d = int64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = int64(c-'A') + 10
		case c == ';' || c == ' ' || c == '\t':
			return n, digits > 0
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | d
	}
	return n, digits > 0
}

// errFolded and errFraming are why claim refuses a request.
var (
	errFolded  = &requestError{http.StatusBadRequest, "obsolete line folding (a header line starting with a space or tab) is not accepted: send each field on one line (RFC 9112 §5.2)"}
	errFraming = &requestError{http.StatusBadRequest, "the request's framing could not be followed: send one Content-Length or Transfer-Encoding: chunked per request"}
)

// requestError is a request the proxy refuses, with the status to answer.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// claim takes the head of r, the next request net/http read, and says
// whether r may be served.
func (s *h1Scanner) claim(r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heads) == 0 {
		s.lose()
		return errFraming
	}
	h := s.heads[0]
	s.heads = s.heads[1:]
	if len(s.heads) == 0 {
		s.heads = s.heads[:0:0] // let a long-gone backing array go
	}
	chunked := len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
	length := r.ContentLength
	switch {
	case h.bad:
		s.lose()
		return errFraming
	case h.chunked != chunked, !chunked && max(h.length, 0) != max(length, 0):
		s.lose()
		return errFraming
	case h.folded:
		return errFolded
	}
	return nil
}

// resume restarts the scan after a request that might have switched
// protocols (Upgrade, CONNECT) did not: the connection still speaks HTTP.
func (s *h1Scanner) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == hsStopped && len(s.heads) == 0 {
		s.state = hsHeadStart
	}
}

// h1Conn is a client connection served by the HTTP/1 server, scanned as it
// is read.
type h1Conn struct {
	net.Conn // a *conn or a *tlsConn
	scan     *h1Scanner
}

func (c *h1Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.scan.scan(p[:n])
	}
	return n, err
}
