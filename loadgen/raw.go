package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// This file holds the protocols whose request is one connection of its
// own: ProtocolTCP and ProtocolTLS (an echo exchange) and ProtocolBanner
// (a server-speaks-first dialogue). A proxy detects the protocol of each
// connection once, at its start, so only fresh connections exercise it.

// DefaultEchoBytes is the payload of a tcp or tls request when
// Target.Payload and Target.PayloadBytes are both empty: an echo of
// nothing would prove little.
const DefaultEchoBytes = 64

// MaxReplyLine bounds a line of a banner server's reply, its CRLF
// included: SMTP's reply line limit (RFC 5321 §4.5.3.1.5).
const MaxReplyLine = 512

// maxReplyLines bounds the lines of one multi-line reply ("250-…" lines,
// then a last "250 …").
const maxReplyLines = 16

// Success codes of the raw protocols; a failed exchange is CodeNone with
// its error, whose message starts with the protocol's name, so that a
// mixed run tells the kinds apart in Result.Errors.
const (
	CodeTCPOK    = "tcp:OK"
	CodeTLSOK    = "tls:OK"
	CodeBannerOK = "banner:OK"
)

// rawClient makes one connection per request.
type rawClient struct {
	protocol string
	addr     string
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	payload  []byte
	tls      *tls.Config // ProtocolTLS only
}

var _ client = (*rawClient)(nil)

func newRawClient(o *Options, payload []byte) *rawClient {
	c := &rawClient{protocol: o.Target.Protocol, addr: o.Target.URL, dial: o.Dial, payload: payload}
	if c.dial == nil {
		c.dial = (&net.Dialer{Timeout: o.Timeout}).DialContext
	}
	if len(c.payload) == 0 {
		c.payload = bytes.Repeat([]byte{'x'}, DefaultEchoBytes)
	}
	if c.protocol == ProtocolTLS {
		want := o.Target.TLSCommonName
		c.tls = &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The workload's certificate is self-signed and nobody's CA
			// vouches for it: what counts is that it is the workload's,
			// not a proxy's, which its subject says (TLSCommonName).
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if want == "" || len(cs.PeerCertificates) == 0 {
					return nil
				}
				if got := cs.PeerCertificates[0].Subject.CommonName; got != want {
					return fmt.Errorf("the server's certificate is for %q, not %q: something between terminated the TLS", got, want)
				}
				return nil
			},
		}
	}
	return c
}

func (c *rawClient) close() {}

func (c *rawClient) call(ctx context.Context) outcome {
	conn, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return c.failed(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// The run's end (or a cancelled request) unblocks the exchange.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	switch c.protocol {
	case ProtocolTCP:
		err = echo(conn, c.payload)
	case ProtocolTLS:
		tc := tls.Client(conn, c.tls)
		if err = tc.HandshakeContext(ctx); err != nil {
			err = fmt.Errorf("handshake: %w", err)
		} else {
			err = echo(tc, c.payload)
		}
	case ProtocolBanner:
		err = banner(conn)
	}
	if err != nil {
		return c.failed(err)
	}
	return outcome{code: c.protocol + ":OK"}
}

// failed is the outcome of an exchange that failed with err. Its message
// is made here, the protocol first ("banner: timeout"): the recorder would
// name a wrapped timeout or socket error without it.
func (c *rawClient) failed(err error) outcome {
	return outcome{code: CodeNone, err: errors.New(c.protocol + ": " + transportError(err))}
}

// echo writes payload, closes its side and reads the echo to the end: it
// must be payload again, then the server's close. The write runs beside
// the read so that a payload larger than the buffers on the way cannot
// block both ends.
func echo(conn net.Conn, payload []byte) error {
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		if err == nil {
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite()
			}
		}
		werr <- err
	}()
	// One byte more than expected tells an echo that says too much.
	got, rerr := io.ReadAll(io.LimitReader(conn, int64(len(payload))+1))
	if rerr != nil {
		conn.Close() // unblocks the write
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	switch {
	case rerr != nil:
		return fmt.Errorf("read: %w", rerr)
	case len(got) < len(payload):
		return fmt.Errorf("the echo ended early: %d of %d bytes", len(got), len(payload))
	case len(got) > len(payload):
		return errors.New("the echo is longer than what was sent")
	case !bytes.Equal(got, payload):
		return errors.New("the echo differs from what was sent")
	}
	return nil
}

// banner waits for the server's greeting (220), says QUIT and wants the
// closing reply (221), then the server's close.
func banner(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, MaxReplyLine)
	code, err := ReadReply(br)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if code != 220 {
		return fmt.Errorf("greeting %d, want 220", code)
	}
	if _, err := io.WriteString(conn, "QUIT\r\n"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if code, err = ReadReply(br); err != nil {
		return fmt.Errorf("reply to QUIT: %w", err)
	}
	if code != 221 {
		return fmt.Errorf("reply to QUIT %d, want 221", code)
	}
	switch _, err := br.ReadByte(); {
	case err == nil:
		return errors.New("the server sent more after 221 instead of closing")
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("after 221: %w", err)
	}
	return nil
}

// ErrBadReply is a banner server's reply that is not "DDD text", "DDD-text"
// (a line of a multi-line reply) or "DDD" ended by CRLF (or LF), within
// MaxReplyLine bytes a line and maxReplyLines lines.
var ErrBadReply = errors.New("malformed reply")

// ReadReply reads one reply of an SMTP-shaped server from r, which should
// have a buffer of MaxReplyLine bytes or more, and returns its code: every
// line of a multi-line reply carries the same code, the last one followed
// by a space or nothing, the others by '-'. It reads at most
// maxReplyLines lines of at most MaxReplyLine bytes; beyond that, or for
// anything else malformed, it returns ErrBadReply. A reply cut short by
// the end of the stream is io.ErrUnexpectedEOF, and no reply at all
// io.EOF.
func ReadReply(r *bufio.Reader) (int, error) {
	code := 0
	for i := range maxReplyLines {
		line, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxReplyLine:
			return 0, fmt.Errorf("%w: a line over %d bytes", ErrBadReply, MaxReplyLine)
		case errors.Is(err, io.EOF) && i == 0 && len(line) == 0:
			return 0, io.EOF
		case errors.Is(err, io.EOF):
			return 0, io.ErrUnexpectedEOF
		case err != nil:
			return 0, err
		}
		c, last, ok := parseReplyLine(line)
		if !ok || (i > 0 && c != code) {
			return 0, ErrBadReply
		}
		code = c
		if last {
			return code, nil
		}
	}
	return 0, fmt.Errorf("%w: more than %d lines", ErrBadReply, maxReplyLines)
}

// parseReplyLine reads the code of one reply line, its ending included,
// and whether it is the last line of its reply.
func parseReplyLine(line []byte) (code int, last, ok bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
	if len(line) < 3 {
		return 0, false, false
	}
	for _, b := range line[:3] {
		if b < '0' || b > '9' {
			return 0, false, false
		}
	}
	code, _ = strconv.Atoi(string(line[:3]))
	if code < 200 || code > 599 {
		return 0, false, false
	}
	switch {
	case len(line) == 3 || line[3] == ' ':
		return code, true, true
	case line[3] == '-':
		return code, false, true
	}
	return 0, false, false
}
