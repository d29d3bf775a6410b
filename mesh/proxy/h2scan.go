package proxy

import (
	"errors"
	"net"
	"sync/atomic"
)

// A client that opens streams and resets them at once, over and over, is
// flooding the proxy (HTTP/2 rapid reset, CVE-2023-44487). net/http's own
// defence bounds the streams a connection holds, but it reads and sets up
// every stream a client sends before any handler runs: a few dozen such
// connections held tens of MB of stream state at once. So the proxy counts
// the frames as net/http reads them and ends the connection once the
// client has reset resetMin streams, at least half of those it opened;
// Envoy closes such connections too. A client cancelling its requests now
// and then never gets near.
const resetMin = 100

// errRapidReset is the read error that ends a flooding connection.
var errRapidReset = errors.New("client resets its streams as fast as it opens them (HTTP/2 rapid reset): connection closed")

// h2Scanner follows the frames of a client's HTTP/2 connection as they are
// read: it reads each 9-byte frame header and skips the payload, counting
// HEADERS and RST_STREAM frames. It copies nothing.
type h2Scanner struct {
	preface int // preface bytes still to skip
	hdr     [9]byte
	n       int    // bytes of hdr filled
	left    uint32 // payload bytes still to skip
	headers int64
	resets  int64
}

// HTTP/2 frame types (RFC 9113 §6).
const (
	frameHeaders   = 0x1
	frameRSTStream = 0x3
)

// scan follows p and reports whether the client is flooding resets.
func (s *h2Scanner) scan(p []byte) bool {
	for len(p) > 0 {
		switch {
		case s.preface < len(h2Preface):
			k := min(len(p), len(h2Preface)-s.preface)
			s.preface += k
			p = p[k:]
		case s.left > 0:
			k := min(uint32(len(p)), s.left)
			s.left -= k
			p = p[k:]
		default:
			k := copy(s.hdr[s.n:], p)
			s.n += k
			p = p[k:]
			if s.n < len(s.hdr) {
				return false
			}
			s.n = 0
			s.left = uint32(s.hdr[0])<<16 | uint32(s.hdr[1])<<8 | uint32(s.hdr[2])
			switch s.hdr[3] {
			case frameHeaders:
				s.headers++
			case frameRSTStream:
				s.resets++
				if s.resets >= resetMin && 2*s.resets >= s.headers {
					return true
				}
			}
		}
	}
	return false
}

// h2Preface is the client connection preface, which precedes the frames.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h2Conn is a client connection served by the HTTP/2 server, its frames
// followed as they are read.
type h2Conn struct {
	net.Conn // a *conn or a *tlsConn
	scan     h2Scanner
	base     *conn
	closed   *atomic.Uint64 // connections ended for rapid reset
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.scan.scan(p[:n]) {
		if !c.base.closed.Load() {
			c.closed.Add(1)
		}
		c.base.Close()
		return 0, errRapidReset
	}
	return n, err
}
