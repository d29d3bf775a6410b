package demo

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"time"
)

// The banner server speaks first, as SMTP, MySQL or PostgreSQL servers do:
// a client that waits for the server cannot be told apart by its first
// bytes, so a proxy's protocol detection must give up on it and pass the
// connection through as opaque TCP. Its dialogue is SMTP's shape, with
// SMTP's reply codes:
//
//	S: 220 <replica> skiff-demo banner
//	C: NOOP            S: 250 OK
//	C: QUIT            S: 221 <replica> closing   (then the server closes)
//	C: anything else   S: 500 command not recognized
//
// A line longer than MaxBannerLine gets "500 line too long" and the
// connection is closed; so is one idle for longer than bannerIdle.

// MaxBannerLine bounds a command line, its CRLF included: SMTP's limit
// (RFC 5321 §4.5.3.1.4).
const MaxBannerLine = 512

// bannerIdle is how long the banner server waits for a client's next line.
const bannerIdle = 30 * time.Second

// errLineTooLong is a command line over MaxBannerLine.
var errLineTooLong = errors.New("demo: line too long")

// readLine reads one line of at most limit bytes, its ending
// included, from r and returns it without its ending ("\r\n" or "\n"). It
// returns errLineTooLong once limit bytes passed without an end of line,
// and io.ErrUnexpectedEOF for a last line without one. It never buffers
// more than r does.
func readLine(r *bufio.Reader, limit int) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > limit {
			return "", errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
			return string(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return "", io.ErrUnexpectedEOF
		default:
			return "", err
		}
	}
}

// serveBanner serves one banner connection. With the behaviour's
// ResetRate it is reset (RST) at once; its latency delays the banner.
func (s *Server) serveBanner(c net.Conn) {
	defer func() { _ = c.Close() }()
	s.stats.bannerConns.Add(1)
	rnd := s.rng.derive()
	if s.resetAtAccept(c, rnd) {
		return
	}
	b := s.behaviour.Load()
	if d := b.PickLatency(rnd); d > 0 && !sleep(s.ctx, d) {
		return
	}
	if _, err := io.WriteString(c, "220 "+s.cfg.Name+" skiff-demo banner\r\n"); err != nil {
		return
	}
	br := bufio.NewReaderSize(c, MaxBannerLine)
	for {
		_ = c.SetReadDeadline(time.Now().Add(bannerIdle))
		line, err := readLine(br, MaxBannerLine)
		if errors.Is(err, errLineTooLong) {
			_, _ = io.WriteString(c, "500 line too long\r\n")
			return
		}
		if err != nil {
			return
		}
		var reply string
		switch strings.ToUpper(line) {
		case "QUIT":
			_, _ = io.WriteString(c, "221 "+s.cfg.Name+" closing\r\n")
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return
		case "NOOP":
			reply = "250 OK\r\n"
		default:
			reply = "500 command not recognized\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}
