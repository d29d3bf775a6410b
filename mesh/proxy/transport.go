package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/mesh/proxy/telemetry"
)

// This file holds the upstream side: the connection pools of each
// direction, plaintext and mutual TLS, and the dialers behind them.

// pools are the upstream connection pools of one direction. plain, the
// proxy's own HTTP/1.1 client (h1client.go), serves plaintext HTTP/1.1
// and hands what it does not handle to h1; the TLS pools have none.
type pools struct {
	h1, h2 *http.Transport
	plain  *h1Transport
}

// http1 is the pool of HTTP/1.1 requests.
func (ps pools) http1() http.RoundTripper {
	if ps.plain != nil {
		return ps.plain
	}
	return ps.h1
}

func (ps pools) closeIdle() {
	if ps.h1 == nil {
		return
	}
	ps.h1.CloseIdleConnections()
	ps.h2.CloseIdleConnections()
	ps.plain.closeIdle(time.Time{})
}

// newTLSTransport is a pool of mutual-TLS connections to meshed peers,
// negotiating alpn: "h2" multiplexes everything but upgrades, which go
// as "http/1.1". Requests must use the https scheme to reach DialTLSContext.
func (p *Proxy) newTLSTransport(alpn string) *http.Transport {
	t := p.newTransport(dirOutbound, alpn == "h2")
	t.DialContext = nil
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return p.dialTLS(ctx, network, addr, alpn)
	}
	t.Protocols = new(http.Protocols)
	if alpn == "h2" {
		t.Protocols.SetHTTP2(true)
	} else {
		t.Protocols.SetHTTP1(true)
	}
	return t
}

// dialTLS connects to a meshed peer and completes mutual TLS, checking the
// peer proves the identity discovery gave for its address. An endpoint
// whose identity cannot be used fails here, closed: it is never reached in
// plaintext instead. A failed handshake is a connectError: nothing was sent.
func (p *Proxy) dialTLS(ctx context.Context, network, addr, alpn string) (net.Conn, error) {
	id, err := p.peers.lookup(addr)
	if err != nil {
		p.identityErrors[identityErrorLabel(err)].Add(1)
		p.log.Debug("meshed endpoint not dialled: no usable identity", "addr", addr, "err", err)
		return nil, &connectError{addr: addr, err: err}
	}
	raw, err := p.dialLabelled(ctx, dirOutbound, network, addr, tlsTrue)
	if err != nil {
		return nil, err
	}
	cfg := p.cfg.Identity.ClientTLSConfig(id)
	if alpn != "" {
		cfg.NextProtos = []string{alpn}
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		p.log.Warn("mTLS handshake with a peer failed", "addr", addr, "expected", id.String(), "err", err)
		return nil, &connectError{addr: addr, err: fmt.Errorf("mTLS handshake: %w", err)}
	}
	return tc, nil
}

// mtlsTo reports whether an endpoint is reached over mutual TLS: every
// meshed endpoint discovery gives an identity for, usable or not (an
// unusable one fails in dialTLS).
func (p *Proxy) mtlsTo(ep *endpoint.Endpoint) bool {
	return p.cfg.Identity != nil && ep.Meshed && ep.Identity != "" && !plant.On(plant.MTLSOff)
}

// tlsLabel says whether traffic to ep is mutual TLS, or why not.
func (p *Proxy) tlsLabel(ep *endpoint.Endpoint) string {
	switch {
	case p.cfg.Identity == nil:
		return tlsDisabled
	case !ep.Meshed:
		return tlsNotMeshed
	case !p.mtlsTo(ep):
		return tlsNoIdentity
	default:
		return tlsTrue
	}
}

// newPools are the plaintext pools of one direction.
func (p *Proxy) newPools(dir string) pools {
	ps := pools{h1: p.newTransport(dir, false), h2: p.newTransport(dir, true)}
	ps.plain = newH1Transport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		return p.dial(ctx, dir, network, addr)
	}, ps.h1)
	return ps
}

func (p *Proxy) newTransport(dir string, h2 bool) *http.Transport {
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return p.dial(ctx, dir, network, addr)
		},
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        upstreamIdleTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: DefaultMaxHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		Protocols:              new(http.Protocols),
	}
	if h2 {
		// One multiplexed connection per peer: concurrent first requests
		// wait for it instead of each dialling their own.
		t.MaxConnsPerHost = 1
		t.Protocols.SetUnencryptedHTTP2(true)
		t.HTTP2 = &http.HTTP2Config{
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
			PingTimeout:                   15 * time.Second,
			SendPingTimeout:               30 * time.Second,
		}
	} else {
		t.Protocols.SetHTTP1(true)
	}
	return t
}

// h2ServerConfig bounds what one HTTP/2 client connection may make the
// proxy hold. net/http runs at most MaxConcurrentStreams handlers per
// connection and queues four times as many streams before it ends the
// connection (its rapid-reset defence), each stream holding a 4 KiB
// buffer from the start: at 128 streams (nginx's default) a connection
// costs up to about 4 MB. The receive windows bound the request bodies
// buffered for slow upstreams; inbound, where any pod may connect, they
// are smaller.
func h2ServerConfig(dir string) *http.HTTP2Config {
	if dir == dirInbound {
		return &http.HTTP2Config{
			MaxConcurrentStreams:          maxStreams,
			MaxReceiveBufferPerConnection: 1 << 20,
			MaxReceiveBufferPerStream:     256 << 10,
		}
	}
	return &http.HTTP2Config{
		MaxConcurrentStreams:          maxStreams,
		MaxReceiveBufferPerConnection: 4 << 20,
		MaxReceiveBufferPerStream:     1 << 20,
	}
}

// closeIdle closes the HTTP/2 client connections that have had no request
// in flight for idleTimeout (HTTP/1 ones time out in net/http), and the
// plaintext HTTP/1.1 upstream connections idle for upstreamIdleTimeout or
// closed by their server, every quarter of idleTimeout, until ctx is done.
func (p *Proxy) closeIdle(ctx context.Context) {
	t := time.NewTicker(idleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cutoff := now.Add(-idleTimeout).UnixNano()
			p.out.plain.closeIdle(now.Add(-upstreamIdleTimeout))
			p.in.plain.closeIdle(now.Add(-upstreamIdleTimeout))
			for _, l := range p.listeners {
				for _, c := range l.table.idle(cutoff) {
					c.Close()
				}
			}
		}
	}
}

// dial opens an upstream connection, counted as peer="dst". Failures are
// connectErrors: nothing was sent, so the caller may try elsewhere.
func (p *Proxy) dial(ctx context.Context, dir, network, addr string) (net.Conn, error) {
	return p.dialLabelled(ctx, dir, network, addr, tlsDisabled)
}

func (p *Proxy) dialLabelled(ctx context.Context, dir, network, addr, tlsLabel string) (net.Conn, error) {
	c, err := p.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &connectError{addr: addr, err: err}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	m := p.metrics.TCP(telemetry.TCPLabels{Direction: dir, Peer: "dst", Authority: addr, TLS: tlsLabel})
	m.Open()
	return &upstreamConn{Conn: c, metrics: m}, nil
}
