// Package detect tells, from the first bytes a client sends on a connection,
// whether it speaks HTTP/1, HTTP/2 (prior knowledge, h2c) or something else
// that the proxy must forward opaquely.
//
// [Classify] is a pure function of the bytes; [Detect] peeks them from a
// connection without consuming them, under a deadline, so the connection is
// then served from the same bufio.Reader as if nothing had been read.
package detect

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// Protocol is the outcome of detection. The zero value is [Unknown].
type Protocol uint8

// Protocols.
const (
	// Unknown means more bytes are needed to decide.
	Unknown Protocol = iota
	// HTTP1 is an HTTP/1.x request.
	HTTP1
	// HTTP2 is HTTP/2 with prior knowledge: the client connection preface.
	HTTP2
	// Opaque is anything else, forwarded as a byte stream.
	Opaque
	// TLS is a TLS handshake record (0x16, then major version 3): between
	// Skiff proxies, the start of mutual TLS. It was Opaque before.
	TLS
)

// String returns "unknown", "http1", "http2" or "opaque".
func (p Protocol) String() string {
	switch p {
	case Unknown:
		return "unknown"
	case HTTP1:
		return "http1"
	case HTTP2:
		return "http2"
	case Opaque:
		return "opaque"
	case TLS:
		return "tls"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// methods are the request-line openings recognised as HTTP/1 whatever
// follows: the methods of RFC 9110 §9 plus PATCH (RFC 5789), each followed
// by the space that ends the token. Methods are case-sensitive. "PRI" is
// reserved for the HTTP/2 preface and is never HTTP/1.
var methods = [...]string{
	"GET ", "HEAD ", "POST ", "PUT ", "DELETE ",
	"CONNECT ", "OPTIONS ", "TRACE ", "PATCH ",
}

// MaxExtensionMethod is the longest extension method (WebDAV's PROPFIND,
// MKCOL, VERSION-CONTROL…) recognised: "METHOD https://" must fit in
// MaxPeek bytes.
const MaxExtensionMethod = MaxPeek - len(" https://")

// MaxPeek is the largest number of bytes Classify ever needs: the length of
// the HTTP/2 preface, longer than any "METHOD " and than an extension
// method with the start of its target. Classify never returns Unknown for
// an input of MaxPeek bytes or more.
const MaxPeek = len(h2Preface) // 24

// Classify looks at the first bytes a client sent and returns [Unknown] when
// more bytes are needed to decide. It returns [HTTP2] when b starts with the
// whole preface; [HTTP1] when it starts with a known method and a space, or
// with an extension method (up to [MaxExtensionMethod] capital letters,
// '-' or '_') and a space followed by an origin-form ("/"), asterisk-form
// ("*") or absolute-form ("http://", "https://") request target; [TLS]
// when it starts with a TLS handshake record; and [Opaque] for anything
// else. Extension methods need the start of the target, so that a
// plain-text protocol of capitalised words ("SET key value" to Redis) is
// not taken for HTTP. Once decided for some b, the answer is the same for
// every extension of b. Bytes past MaxPeek are ignored. Classify does not
// allocate.
//
// Every HTTP/1 request a server would accept is HTTP1 here, so none can
// pass through the proxy as opaque bytes, past the HTTP layer and the
// headers it removes.
func Classify(b []byte) Protocol {
	if len(b) == 0 {
		return Unknown
	}
	if len(b) > MaxPeek {
		b = b[:MaxPeek]
	}
	if b[0] == 0x16 { // a TLS handshake record: ContentType 22, version 3.x
		if len(b) < 2 {
			return Unknown
		}
		if b[1] == 0x03 {
			return TLS
		}
		return Opaque
	}
	if b[0] < 'A' || b[0] > 'Z' {
		return Opaque // most non-HTTP traffic ends here
	}
	if b[0] == 'P' && len(b) >= 3 && string(b[:3]) == "PRI" {
		if len(b) > 3 && isMethodByte(b[3]) {
			// PRIX...: an ordinary token.
			return classifyRequestLine(b)
		}
		// The HTTP/2 preface, or nothing.
		if len(b) >= len(h2Preface) {
			if string(b[:len(h2Preface)]) == h2Preface {
				return HTTP2
			}
			return Opaque
		}
		if string(b) == h2Preface[:len(b)] {
			return Unknown
		}
		return Opaque
	}
	return classifyRequestLine(b)
}

// classifyRequestLine classifies b, which starts with a capital letter and
// is not the preface, as the start of a request line.
func classifyRequestLine(b []byte) Protocol {
	for _, m := range methods {
		if len(b) >= len(m) {
			if string(b[:len(m)]) == m {
				return HTTP1
			}
		}
	}
	i := 1
	for i < len(b) && isMethodByte(b[i]) {
		i++
	}
	if i > MaxExtensionMethod {
		return Opaque
	}
	if i == len(b) {
		return Unknown // the method may go on, then a space
	}
	if b[i] != ' ' {
		return Opaque
	}
	if i == 3 && string(b[:3]) == "PRI" {
		return Opaque
	}
	target := b[i+1:]
	if len(target) == 0 {
		return Unknown
	}
	switch target[0] {
	case '/', '*':
		return HTTP1
	case 'h':
		for _, scheme := range [...]string{"http://", "https://"} {
			if len(target) >= len(scheme) {
				if string(target[:len(scheme)]) == scheme {
					return HTTP1
				}
			} else if string(target) == scheme[:len(target)] {
				return Unknown
			}
		}
	}
	return Opaque
}

// isMethodByte reports whether c may appear in a recognised method name.
func isMethodByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c == '-' || c == '_'
}

// Reason says why Detect returned [Opaque]; it is [ReasonNone] for HTTP.
// The values are stable and meant for metric labels.
type Reason string

// Reasons.
const (
	// ReasonNone: the connection is HTTP.
	ReasonNone Reason = ""
	// ReasonNotHTTP: the first bytes are not an HTTP request.
	ReasonNotHTTP Reason = "not_http"
	// ReasonTimeout: the client sent nothing, or too little to decide,
	// before the timeout — typical of server-speaks-first protocols
	// (MySQL, SMTP). The connection is usable.
	ReasonTimeout Reason = "timeout"
	// ReasonEOF: the client closed (or half-closed) its side before
	// enough bytes arrived to decide. What it sent is still buffered.
	ReasonEOF Reason = "eof"
	// ReasonError: reading or setting the deadline failed; Detect returns
	// the error and the connection should be closed.
	ReasonError Reason = "error"
)

// DefaultTimeout is the detection timeout used when Detect is given zero,
// the same as Linkerd's protocol detection timeout.
const DefaultTimeout = 10 * time.Second

// Deadliner is the part of a connection Detect needs. net.Conn and
// *tls.Conn satisfy it.
type Deadliner interface {
	SetReadDeadline(t time.Time) error
}

var _ Deadliner = (net.Conn)(nil)

// errSmallBuffer reports a bufio.Reader that cannot hold MaxPeek bytes.
var errSmallBuffer = errors.New("detect: bufio.Reader buffer is smaller than detect.MaxPeek; create it with bufio.NewReaderSize")

// Detect classifies a connection from the bytes its client sends first. It
// peeks r, which must read from the connection, and never consumes a byte:
// the caller then serves the connection from r. It returns once [Classify]
// decides, or the client closes ([ReasonEOF]), or timeout passes
// ([ReasonTimeout]); a timeout of zero or less means [DefaultTimeout].
//
// conn is used only to bound the wait: Detect sets a read deadline on it and
// resets it to zero (no deadline) before returning. Failing to set or reset
// it is an error, except when the conn reports it is closed (net.ErrClosed,
// io.ErrClosedPipe) or, for the reset, after EOF: no read can then block or
// be cut short. Detect cannot outlast
// the timeout as long as conn honours read deadlines, as net.Conn does. A
// nil conn sets no deadline, so Detect may then block: use it only when r
// cannot block (an in-memory reader).
//
// err is non-nil only with [Opaque] and [ReasonError]: a read failed (other
// than by timeout or EOF), the deadline could not be set or cleared, or r
// was created with a buffer smaller than [MaxPeek]. The caller should then
// close the connection. Timeout and EOF are outcomes, not errors.
func Detect(r *bufio.Reader, conn Deadliner, timeout time.Duration) (p Protocol, why Reason, err error) {
	if r.Size() < MaxPeek {
		return Opaque, ReasonError, errSmallBuffer
	}
	if conn != nil {
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		// A conn that says it is closed needs no deadline: its reads
		// return at once. net.Pipe refuses deadlines as soon as the
		// peer closed, even with the peer's bytes still to be read.
		if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil && !isClosed(err) {
			return Opaque, ReasonError, fmt.Errorf("detect: set read deadline: %w", err)
		}
		defer func() {
			// A stale deadline would cut a later read short; it cannot
			// once the client's side reached EOF or the conn is closed.
			cerr := conn.SetReadDeadline(time.Time{})
			if cerr != nil && err == nil && why != ReasonEOF && !isClosed(cerr) {
				p, why, err = Opaque, ReasonError, fmt.Errorf("detect: clear read deadline: %w", cerr)
			}
		}()
	}
	return peek(r)
}

// peek runs the detection loop on r, which the caller has bounded in time.
func peek(r *bufio.Reader) (Protocol, Reason, error) {
	n := 1
	for {
		// Look at everything already buffered before waiting for more.
		n = max(n, min(r.Buffered(), MaxPeek))
		// Peek blocks until n bytes are buffered or the underlying read
		// fails; on failure it returns the shorter buffered prefix.
		b, err := r.Peek(n)
		switch Classify(b) {
		case HTTP1:
			return HTTP1, ReasonNone, nil
		case HTTP2:
			return HTTP2, ReasonNone, nil
		case TLS:
			return TLS, ReasonNone, nil
		case Opaque:
			return Opaque, ReasonNotHTTP, nil
		}
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				return Opaque, ReasonEOF, nil
			case isTimeout(err):
				return Opaque, ReasonTimeout, nil
			default:
				return Opaque, ReasonError, fmt.Errorf("detect: read: %w", err)
			}
		}
		// Unknown with len(b) == n < MaxPeek: Classify decides at MaxPeek.
		n = len(b) + 1
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
