package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/telemetry"
)

// This file holds opaque TCP: connections the proxy forwards as bytes,
// where it dials them, and how they end when the proxy drains.

// drainTCP waits for opaque connections to end, then closes the rest.
func (p *Proxy) drainTCP(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		p.tcpMu.Lock()
		n := len(p.tcpConns)
		if n == 0 || ctx.Err() != nil {
			for c := range p.tcpConns {
				c.Close()
			}
			p.tcpMu.Unlock()
			return
		}
		p.tcpMu.Unlock()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// serveTCP forwards an opaque connection; client is c itself, or the
// mutual-TLS stream over it.
func (l *listener) serveTCP(c *conn, client net.Conn) {
	p := l.p
	p.tcpMu.Lock()
	p.tcpConns[c] = struct{}{}
	p.tcpMu.Unlock()
	defer func() {
		p.tcpMu.Lock()
		delete(p.tcpConns, c)
		p.tcpMu.Unlock()
		c.Close()
	}()
	up, authority, err := l.dialOpaque(c)
	if err != nil {
		c.failed.Store(true)
		p.log.Debug("opaque connection not forwarded", "direction", l.dir, "err", err)
		p.metrics.Counter(l.dir+"_tcp_errors_total", `error="`+tcpErrorLabel(err)+`"`).Add(1)
		return
	}
	label := tlsDisabled
	if _, ok := up.(*tls.Conn); ok {
		label = tlsTrue
	}
	m := p.metrics.TCP(telemetry.TCPLabels{Direction: l.dir, Peer: "dst", Authority: authority, TLS: label})
	m.Open()
	var upRead, upWritten int64
	var upFailed bool
	defer func() { m.Close(uint64(upRead), uint64(upWritten), upFailed) }()

	// Bytes peeked during detection go first (a TLS client already
	// consumed them in the handshake).
	if br := c.br; client == net.Conn(c) && br != nil && br.Buffered() > 0 {
		b, _ := br.Peek(br.Buffered())
		n, err := up.Write(b)
		upWritten += int64(n)
		if err != nil {
			up.Close()
			return
		}
		br.Discard(n)
	}
	// Raw sockets on both sides let the kernel splice without a buffer;
	// a TLS stream is copied through one.
	var src io.Reader = c.TCPConn
	var dst io.Writer = c.TCPConn
	if client != net.Conn(c) {
		src, dst = client, client
	}
	c.br = nil
	done := make(chan int64, 1)
	go func() {
		n, err := io.Copy(up, src)
		if client == net.Conn(c) {
			c.read.Add(uint64(n))
		}
		if err != nil {
			c.failed.Store(true)
		}
		closeWrite(up)
		done <- n
	}()
	n, err := io.Copy(dst, up)
	if client == net.Conn(c) {
		c.written.Add(uint64(n))
	}
	upRead = n
	if err != nil {
		upFailed = true
		// The upstream broke: unblock the other direction.
		c.TCPConn.SetLinger(0)
		c.TCPConn.Close()
	} else {
		closeWrite(client)
	}
	upWritten += <-done
	up.Close()
}

// closeWrite half-closes c: a TLS stream with close_notify, a socket with
// shutdown(SHUT_WR).
func closeWrite(c net.Conn) {
	switch v := c.(type) {
	case *tls.Conn:
		v.CloseWrite()
	case *tlsConn:
		v.tc.CloseWrite()
	case *conn:
		v.TCPConn.CloseWrite()
	case interface{ CloseWrite() error }:
		v.CloseWrite()
	}
}

func tcpErrorLabel(err error) string {
	switch {
	case errors.Is(err, errNoTarget):
		return "no_target"
	case errors.Is(err, errUnknownAuthority):
		return "unknown_authority"
	case errors.Is(err, errNoEndpoints):
		return "no_endpoints"
	case isConnectError(err):
		return "connect"
	default:
		return "other"
	}
}

// dialOpaque finds and connects the upstream of an opaque connection.
func (l *listener) dialOpaque(c *conn) (net.Conn, string, error) {
	p := l.p
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout*maxConnectAttempts+time.Second)
	defer cancel()
	dialRaw := func(addr string) (*net.TCPConn, error) {
		up, err := p.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, &connectError{addr: addr, err: err}
		}
		tc := up.(*net.TCPConn)
		tc.SetNoDelay(true)
		return tc, nil
	}
	if l.dir == dirInbound {
		target := p.cfg.InboundForward
		if c.redirect {
			target = c.origDst.String()
		}
		if target == "" {
			return nil, "", errNoTarget
		}
		up, err := dialRaw(target)
		if err != nil {
			return nil, target, err
		}
		return up, target, nil
	}
	authority := l.route
	if authority == "" && c.redirect {
		authority = c.origDst.String()
	}
	if authority == "" {
		return nil, "", errNoTarget
	}
	d, err := p.destinations.get(ctx, authority)
	if err != nil {
		return nil, authority, err
	}
	if d == nil {
		if c.redirect && l.route == "" {
			up, err := dialRaw(authority)
			if err != nil {
				return nil, authority, err
			}
			return up, authority, nil
		}
		return nil, authority, errUnknownAuthority
	}
	dialAny := func(d *destination) (net.Conn, error) {
		var triedBuf [maxConnectAttempts]*balance.Node
		tried := triedBuf[:0]
		var lastErr error = errNoEndpoints
		for len(tried) < maxConnectAttempts {
			n, ok := d.bal.Pick(tried)
			if !ok {
				break
			}
			start := n.Start()
			ep := n.Endpoint()
			var up net.Conn
			var err error
			if p.mtlsTo(ep) {
				up, err = p.dialTLS(ctx, "tcp", ep.Addr, "")
			} else {
				up, err = dialRaw(ep.Addr)
			}
			n.Finish(start, err != nil)
			if err == nil {
				return up, nil
			}
			lastErr = err
			if plant.On(plant.TCPNoFailover) {
				break
			}
			tried = append(tried, n)
			p.connectRetries.Add(1)
		}
		return nil, lastErr
	}
	up, err := dialAny(d)
	for _, fb := range p.cfg.Failover[authority] {
		if err == nil {
			break
		}
		if fd, ferr := p.destinations.get(ctx, fb); ferr == nil && fd != nil {
			p.failovers.Add(1)
			up, err = dialAny(fd)
		}
	}
	return up, authority, err
}
