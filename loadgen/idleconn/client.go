package idleconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// maxFrames bounds the frames read for one HTTP/2 exchange: the server's
// SETTINGS and its ACK, a WINDOW_UPDATE or two, HEADERS and DATA.
const maxFrames = 64

// openHTTP1 dials addr and makes one keep-alive request; it returns the
// socket once the whole response has been read.
func openHTTP1(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := exchangeHTTP1(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func exchangeHTTP1(ctx context.Context, c net.Conn) error {
	setDeadline(ctx, c)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+Authority+"\r\nUser-Agent: skiff-idleconn\r\n\r\n"); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("reading the response: %w", err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %s (Skiff-Error: %q)", resp.Status, resp.Header.Get("Skiff-Error"))
	case resp.Close:
		return errors.New("the proxy closes the connection after a request: it is not kept alive")
	case br.Buffered() > 0:
		return fmt.Errorf("%d bytes after the response", br.Buffered())
	}
	return c.SetDeadline(time.Time{})
}

// openH2MTLS dials addr, completes mutual TLS with cfg (ALPN h2) and makes
// one request on stream 1; it returns the socket under the TLS stream once
// the response has ended. The client's TLS and HTTP/2 state are dropped:
// the proxy's side of the connection stays as a peer's idle one would.
func openH2MTLS(ctx context.Context, d *net.Dialer, addr string, cfg *tls.Config) (net.Conn, error) {
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	setDeadline(ctx, raw)
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mTLS handshake: %w", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		raw.Close()
		return nil, fmt.Errorf("ALPN: the proxy chose %q, want h2", p)
	}
	if err := exchangeH2(tc); err != nil {
		raw.Close()
		return nil, err
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		raw.Close()
		return nil, err
	}
	return raw, nil
}

// exchangeH2 speaks HTTP/2 on c as Go's HTTP/2 transport does (a peer
// proxy's): the preface and its SETTINGS, a connection window update, one
// GET on stream 1; it answers the server's SETTINGS and PINGs and returns
// once the response has ended.
func exchangeH2(c net.Conn) error {
	bw := bufio.NewWriter(c)
	bw.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(bw, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 10 << 20},
	)
	fr.WriteWindowUpdate(0, 4<<20)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", Authority}, {":path", "/"}, {"user-agent", "skiff-idleconn"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	if err := bw.Flush(); err != nil {
		return err
	}
	status := ""
	for range maxFrames {
		f, err := fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("HTTP/2: %w", err)
		}
		ended := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 && status == "" {
				status = f.PseudoValue("status")
			}
			ended = f.StreamID == 1 && f.StreamEnded()
		case *http2.DataFrame:
			ended = f.StreamID == 1 && f.StreamEnded()
		case *http2.GoAwayFrame:
			return fmt.Errorf("HTTP/2: GOAWAY %v: %q", f.ErrCode, f.DebugData())
		case *http2.RSTStreamFrame:
			return fmt.Errorf("HTTP/2: stream reset: %v", f.ErrCode)
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if ended {
			if status != "200" {
				return fmt.Errorf("HTTP/2: status %q", status)
			}
			return nil
		}
	}
	return fmt.Errorf("HTTP/2: no end of the response in %d frames", maxFrames)
}

// setDeadline bounds c's set-up by ctx's deadline.
func setDeadline(ctx context.Context, c net.Conn) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
}
